"""ETTh1 multivariate forecasting with the shipped configs/forecasting/etth1.yaml, beside published figures.

    python -m benchmarks.forecasting_ett --data ../shared/data/ett/ETTh1.csv [--horizon 96|192|336|720]

Trains with the forecasting app's own command line (fit, then test on the best checkpoint by validation MSE) under
the Informer protocol (12/4/4 months, z-score with training statistics, input 96, all 7 columns in and out), and
prints test MSE and MAE on the standardised values, the wall time, and the published figures.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from apps.forecasting import main as forecasting
from apps.forecasting.data import ETTH1_URL

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "forecasting" / "etth1.yaml"
#: (model, horizon, MSE, MAE, source); ETTh1 multivariate, input 96 unless said
PUBLISHED = [
    ("LSTMa", 24, 0.650, 0.624, "Informer paper (Zhou et al. 2021), Table 2"),
    ("Informer", 24, 0.577, 0.549, "Informer paper (Zhou et al. 2021), Table 2"),
    ("SegRNN", 96, 0.368, None, "segment-wise GRU (Lin et al. 2023)"),
]


def run(data: str, horizon: int, epochs: int | None, output: str) -> dict:
    common = ["--config", str(CONFIG), f"--data.path={data}", f"--data.horizon={horizon}",
              f"--trainer.default_root_dir={output}"]
    if epochs is not None:
        common.append(f"--trainer.max_epochs={epochs}")
    start = time.perf_counter()
    fitted = forecasting(["fit", *common])
    best = fitted.trainer.checkpoint_callback.best_model_path
    tested = forecasting(["test", *common, f"--ckpt_path={best}"])
    seconds = time.perf_counter() - start
    metrics = {k: float(v) for k, v in tested.trainer.callback_metrics.items()}
    return {"horizon": horizon, "test_mse": metrics["test_mse"], "test_mae": metrics["test_mae"],
            "epochs": fitted.trainer.current_epoch, "wall_seconds": seconds, "checkpoint": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=ETTH1_URL, help="ETTh1.csv: a local file or URL (default: the public URL)")
    parser.add_argument("--horizon", type=int, default=96, choices=[24, 48, 96, 192, 336, 720])
    parser.add_argument("--epochs", type=int, default=None, help="override the config's trainer.max_epochs")
    parser.add_argument("--output", default="outputs/benchmarks/forecasting_ett", help="run folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args = parser.parse_args()
    result = run(args.data, args.horizon, args.epochs, args.output)
    if args.json:
        print(json.dumps(result))
        return
    print(f"\nETTh1 multivariate, input 96, horizon {args.horizon}: {CONFIG.name}, {result['epochs']} epochs, "
          f"{result['wall_seconds'] / 60:.1f} min wall")
    print(f"{'model':<28}{'horizon':>8}{'MSE':>8}{'MAE':>8}  source")
    print(f"{'this run (GRU, segments)':<28}{args.horizon:>8}{result['test_mse']:>8.3f}{result['test_mae']:>8.3f}"
          f"  {result['checkpoint']}")
    for name, horizon, mse, mae, source in PUBLISHED:
        print(f"{name:<28}{horizon:>8}{mse:>8.3f}{'-' if mae is None else f'{mae:.3f}':>8}  {source}")


if __name__ == "__main__":
    main()
