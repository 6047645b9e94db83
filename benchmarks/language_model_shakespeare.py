"""Character-level tiny-shakespeare with the shipped configs/language_model/shakespeare.yaml, for a time budget, beside
published figures.

    python -m benchmarks.language_model_shakespeare --data PATH [--minutes 30] [--json] [--model.X=... ...]

Trains the shakespeare config (nanoGPT's split: the first 90% of the characters train, the last 10% validate) until
the time budget is spent, validates the final weights on the whole validation text, and prints the validation loss
in nats per character, bits per character, the wall time, training tokens per second and a generated sample. Any
other option goes to the app's fit command after the config (``--model.hidden_size=768``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from apps.language_model import main as language_model

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "language_model" / "shakespeare.yaml"
#: (model, validation loss in nats per character, how long, on what); published, not measured here
PUBLISHED = [
    ("nanoGPT, char Transformer 6 x 384 (10.7M)", 1.4697, "about 3 min on one A100 GPU"),
    ("nanoGPT, CPU recipe 4 x 128, 2,000 iters", 1.88, "about 3 min on a laptop CPU"),
]


def run(data: str, minutes: float, output: str, sample_tokens: int, options: list[str]) -> dict:
    common = ["--config", str(CONFIG), f"--data.path={data}", f"--trainer.default_root_dir={output}", *options]
    start = time.perf_counter()
    fitted = language_model(["fit", *common, "--trainer.max_epochs=-1",
                             f"--trainer.max_time={json.dumps({'seconds': round(minutes * 60)})}"])
    train_seconds = time.perf_counter() - start
    trainer, model, data = fitted.trainer, fitted.model, fitted.datamodule
    # the weights at the end of the budget, on the whole validation text
    (metrics,) = trainer.validate(model, datamodule=data, verbose=False)
    model.max_new_tokens, model.temperature = sample_tokens, 0.8
    (sample,) = model.generate([model.tokenizer.encode("\n").ids], [(0,)])
    # a slight overcount: an epoch's last chunk is shorter
    tokens = trainer.global_step * data.hparams.batch_size * data.hparams.bptt
    best = trainer.checkpoint_callback.best_model_score
    return {"val_loss": metrics["val_loss"], "val_bpc": metrics["val_bpc"], "train_minutes": train_seconds / 60,
            "best_val_loss": None if best is None else float(best), "tokens": tokens,
            "tokens_per_second": tokens / train_seconds, "steps": trainer.global_step,
            "model": {k: model.hparams[k] for k in ("cell", "num_layers", "hidden_size", "output_dropout")},
            "sample": model.tokenizer.decode(sample), "checkpoints": str(trainer.checkpoint_callback.dirpath)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="tiny-shakespeare input.txt: a local file or URL")
    parser.add_argument("--minutes", type=float, default=30.0, help="training time budget")
    parser.add_argument("--output", default="outputs/benchmarks/language_model_shakespeare", help="run folder")
    parser.add_argument("--sample_tokens", type=int, default=400, help="characters of the generated sample")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    args, options = parser.parse_known_args()
    result = run(args.data, args.minutes, args.output, args.sample_tokens, options)
    if args.json:
        print(json.dumps(result))
        return
    m = result["model"]
    print(f"\ntiny-shakespeare, characters: {CONFIG.name}, {m['cell']} {m['num_layers']} x {m['hidden_size']}, "
          f"{args.minutes:g} min budget: {result['steps']} steps, {result['tokens'] / 1e6:.1f}M training characters")
    print(f"{'model':<44}{'val nats/char':>14}{'bpc':>7}{'wall':>10}{'tokens/s':>10}")
    print(f"{'this run':<44}{result['val_loss']:>14.4f}{result['val_bpc']:>7.3f}"
          f"{result['train_minutes']:>7.1f} min{result['tokens_per_second']:>10,.0f}")
    for name, loss, when in PUBLISHED:
        print(f"{name:<44}{loss:>14.4f}{loss / math.log(2):>7.3f}  {when}")
    if result["best_val_loss"] is not None:
        print(f"best validation during training: {result['best_val_loss']:.4f} nats/char")
    print(f"\nsample (temperature 0.8):\n{result['sample']}\n\ncheckpoints: {result['checkpoints']}")


if __name__ == "__main__":
    main()
