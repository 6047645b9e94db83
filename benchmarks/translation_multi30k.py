"""Multi30k German -> English with configs/translation/multi30k.yaml: trains, then decodes the validation set.

    python -m benchmarks.translation_multi30k --data ../shared/data/multi30k [--epochs N] [-- extra CLI flags]

Prints validation sacreBLEU with greedy decoding (the best epoch's val_bleu) and with beam search (beam 5, the
best checkpoint's test run on the validation files), chrF, the lowercased BLEU tutorials print, training tokens
per second and wall time, beside the published anchors.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from apps.translation import main as translation

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = [
    ("bentrevett seq2seq tutorial 3: BiGRU + Bahdanau attention", "test BLEU 28.3 (lowercased, tokenised)"),
    ("bentrevett seq2seq tutorial 6: Transformer", "test BLEU 36.5 (lowercased, tokenised)"),
]


def run(data: str, output: str, epochs: int | None, extra: list[str]) -> dict:
    common = ["--config", str(ROOT / "configs/translation/multi30k.yaml"), f"--data.path={data}",
              f"--trainer.default_root_dir={output}", *extra]
    if epochs is not None:
        common.append(f"--trainer.max_epochs={epochs}")
    start = time.perf_counter()
    fit = translation(["fit", *common])
    fit_seconds = time.perf_counter() - start
    checkpoint = fit.trainer.checkpoint_callback
    train = fit.datamodule.splits["train"]
    target_tokens = sum(len(t) + 1 for t in train.target) * fit.trainer.current_epoch
    test = translation(["test", *common, f"--ckpt_path={checkpoint.best_model_path}", "--data.test_split=val"])
    beam = {k: float(v) for k, v in test.trainer.callback_metrics.items()}
    return {
        "epochs": fit.trainer.current_epoch,
        "best_checkpoint": checkpoint.best_model_path,
        "val_bleu_greedy": float(checkpoint.best_model_score),
        "val_bleu_beam5": beam["test_bleu"],
        "val_chrf_beam5": beam["test_chrf"],
        "val_bleu_tutorial_beam5": beam["test_bleu_tutorial"],
        "val_loss": beam["test_loss"],
        "train_tokens_per_second": round(target_tokens / fit_seconds),
        "fit_minutes": round(fit_seconds / 60, 1),
        "wall_minutes": round((time.perf_counter() - start) / 60, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with train.{de,en}.gz and val.{de,en}.gz")
    parser.add_argument("--output", default="outputs/benchmark-translation", help="run folder")
    parser.add_argument("--epochs", type=int, help="override the config's max_epochs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("extra", nargs="*", help="more flags for the app, after --")
    args = parser.parse_args(argv)
    result = run(args.data, args.output, args.epochs, args.extra)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"\nMulti30k de->en, validation set (1,014 sentences), {result['epochs']} epochs")
    print(f"{'metric':<44}{'value':>10}")
    print("-" * 54)
    rows = [
        ("sacreBLEU, greedy (best epoch)", result["val_bleu_greedy"]),
        ("sacreBLEU, beam 5", result["val_bleu_beam5"]),
        ("chrF, beam 5", result["val_chrf_beam5"]),
        ("lowercased BLEU (tutorials' measure), beam 5", result["val_bleu_tutorial_beam5"]),
        ("training target tokens per second", result["train_tokens_per_second"]),
        ("fit wall time, minutes", result["fit_minutes"]),
        ("total wall time, minutes", result["wall_minutes"]),
    ]
    for name, value in rows:
        print(f"{name:<44}{value:>10.1f}")
    print("\nanchors (published, on the test set):")
    for name, figure in ANCHORS:
        print(f"  {name}: {figure}")


if __name__ == "__main__":
    main()
