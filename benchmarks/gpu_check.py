"""One check to run once on a machine with one or more GPUs: parity, speed and mixed precision, as tables.

    python -m benchmarks.gpu_check [--steps 300 --repeats 20]

1. Parity: the fused backend against cuDNN (backend "torch") for the standard cells and against the loop for the
   others, in float32 and under autocast (float16, and bfloat16 where the GPU has it): the largest error of the
   outputs and final states, and of all gradients, relative to the float32 reference's largest value. Under
   autocast the reference backend's own error is shown beside the fused one's.
2. Speed: every cell and backend's forward+backward at T=100, batch 64, input = hidden = 256 against cuDNN's LSTM
   (benchmarks.cells), in float32 and under autocast.
3. Apps: each app's default config for --steps training steps on one GPU in float32 and in mixed precision (bf16,
   or 16-mixed on GPUs without bfloat16): training steps per second (the steps alone, after warm-up) and peak
   memory; with two or more GPUs, mixed precision again with DDP on all of them.

Without CUDA it says so and exits 0. It exits 1 when a fused parity check or an app run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

from benchmarks import cells
from rnn_core import CELLS, Recurrent

ROOT = Path(__file__).resolve().parents[1]
#: relative error a fused row may reach: float32 round-off, and tests/test_autocast.py's bound under autocast
LIMITS = {"float32": 1e-5, "float16": 3e-2, "bfloat16": 3e-2}
PARITY_SHAPE = {"input_size": 128, "hidden_size": 128, "num_layers": 2, "bidirectional": True}
PARITY_STEPS, PARITY_BATCH = 50, 32
#: the line prefix StepTimer prints its record after, in every process of a run
MARK = "gpu_check: "


class StepTimer(Callback):
    """Times each training step after the first ``warmup`` (synchronised, so the GPU's work counts) and prints steps
    per second and the peak memory of its process as one JSON line."""

    def __init__(self, warmup: int = 10) -> None:
        self.warmup, self.seconds, self.start = warmup, [], 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        torch.cuda.synchronize(pl_module.device)
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        torch.cuda.synchronize(pl_module.device)
        self.seconds.append(time.perf_counter() - self.start)

    def on_train_end(self, trainer, pl_module) -> None:
        timed = self.seconds[self.warmup :]
        record = {"rank": trainer.global_rank, "steps_per_second": len(timed) / sum(timed),
                  "peak_mib": torch.cuda.max_memory_allocated(pl_module.device) / 2**20}
        print(MARK + json.dumps(record), flush=True)


def _run(module: Recurrent, x: torch.Tensor, lengths: torch.Tensor, autocast: torch.dtype | None):
    """(outputs and final states, gradients of x and every parameter) of one forward and backward."""
    x = x.clone().requires_grad_()
    with torch.autocast("cuda", dtype=autocast, enabled=autocast is not None):
        out, final = module(x, lengths)
    final = final if isinstance(final, tuple) else (final,)
    gen = torch.Generator(device="cuda").manual_seed(2)  # weights every element differently, so no gradient hides
    sum((t.float() * torch.randn(t.shape, generator=gen, device="cuda")).sum() for t in (out, *final)).backward()
    grads = [x.grad, *(p.grad.clone() for p in module.parameters())]
    module.zero_grad()
    return [out, *final], grads


def _error(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    return max(((a.float() - e).abs().max() / e.abs().max()).item() for a, e in zip(actual, expected, strict=True))


def parity(autocasts: dict[str, torch.dtype]) -> list[dict]:
    rows = []
    for cell, kind in CELLS.items():
        against = "torch" if kind.torch_kernel else "loop"
        torch.manual_seed(0)
        reference = Recurrent(cell, backend=against, **PARITY_SHAPE).cuda()
        fused = Recurrent(cell, backend="fused", **PARITY_SHAPE).cuda()
        fused.load_state_dict(reference.state_dict())
        x = torch.randn(PARITY_BATCH, PARITY_STEPS, PARITY_SHAPE["input_size"], device="cuda")
        lengths = torch.randint(1, PARITY_STEPS + 1, (PARITY_BATCH,))
        lengths[0] = PARITY_STEPS
        # float32 means float32 here: cuDNN would otherwise use TF32 on Ampere and newer
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            expected = _run(reference, x, lengths, None)
            runs = [("float32", None, "fused", fused)]
            runs += [(name, dtype, backend, module) for name, dtype in autocasts.items()
                     for backend, module in (("fused", fused), (against, reference))]
            for precision, dtype, backend, module in runs:
                forward, backward = _run(module, x, lengths, dtype)
                errors = _error(forward, expected[0]), _error(backward, expected[1])
                ok = max(errors) <= LIMITS[precision] if backend == "fused" else None
                rows.append({"cell": cell, "precision": precision, "backend": backend, "against": f"{against} float32",
                             "forward": errors[0], "backward": errors[1], "ok": ok})
    return rows


def _fit(app: str, precision: str, steps: int, devices: int) -> dict:
    """One app's default config for ``steps`` training steps, in a process of its own (DDP starts more)."""
    row = {"app": app, "precision": precision, "devices": devices}
    configs = ["--config", str(ROOT / "configs/trainer/gpu.yaml")]
    if devices > 1:
        configs += ["--config", str(ROOT / "configs/trainer/ddp.yaml")]
    paths = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the apps and StepTimer
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            [sys.executable, "-m", f"apps.{app}", "fit", *configs, f"--trainer.devices={devices}",
             f"--trainer.precision={precision}", f"--trainer.max_steps={steps}", "--trainer.max_epochs=-1",
             "--trainer.limit_val_batches=2", "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
             f"--trainer.default_root_dir={folder}", "--trainer.callbacks+=benchmarks.gpu_check.StepTimer"],
            cwd=folder, env={**os.environ, "PYTHONPATH": paths}, capture_output=True, text=True)
    records = [json.loads(line[len(MARK) :]) for line in done.stdout.splitlines() if line.startswith(MARK)]
    if done.returncode or not records:
        return row | {"error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    first = next(r for r in records if r["rank"] == 0)
    return row | {"steps_per_second": first["steps_per_second"], "peak_mib": max(r["peak_mib"] for r in records)}


def _parity_table(rows: list[dict]) -> str:
    header = f"{'cell':<15}{'precision':<11}{'backend':<8}{'against':<15}{'outputs':>10}{'gradients':>11}  ok"
    lines = [header, "-" * len(header)]
    for r in rows:
        ok = "-" if r["ok"] is None else ("yes" if r["ok"] else "NO")
        lines.append(f"{r['cell']:<15}{r['precision']:<11}{r['backend']:<8}{r['against']:<15}"
                     f"{r['forward']:>10.1e}{r['backward']:>11.1e}  {ok}")
    return "\n".join(lines)


def _apps_table(rows: list[dict]) -> str:
    header = f"{'app':<16}{'precision':<12}{'GPUs':>5}{'steps/s':>10}{'peak MiB':>10}"
    lines = [header, "-" * len(header)]
    for r in rows:
        start = f"{r['app']:<16}{r['precision']:<12}{r['devices']:>5}"
        lines.append(start + (f"  FAILED: {r['error']}" if "error" in r
                              else f"{r['steps_per_second']:>10.1f}{r['peak_mib']:>10.0f}"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps per app run")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per speed row (the median is shown)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA GPU on this machine (torch.cuda.is_available() is False): nothing to check.")
        return 0
    gpus = torch.cuda.device_count()
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    autocasts = {"float16": torch.float16} | ({"bfloat16": torch.bfloat16} if bf16 else {})
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(gpus))
    print(f"{gpus} GPU(s): {names}; torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"cuDNN {torch.backends.cudnn.version()}\n")

    rows = parity(autocasts)
    print(f"Parity: T={PARITY_STEPS}, batch {PARITY_BATCH}, {PARITY_SHAPE}, random lengths; largest error relative "
          "to the reference's largest value, outputs and final states / all gradients")
    print(_parity_table(rows) + "\n")

    for precision, dtype in {"float32": None, **autocasts}.items():
        print(f"Speed in {precision}: T=100, batch 64, input = hidden = 256; median of {args.repeats} after 3 warm-up")
        print(cells._table(cells.run(100, 64, 256, args.repeats, 3, ["cuda"], dtype)) + "\n")

    mixed = "bf16-mixed" if bf16 else "16-mixed"
    apps = sorted(path.parent.name for path in (ROOT / "configs").glob("*/default.yaml"))
    runs = [(app, precision, 1) for app in apps for precision in ("32-true", mixed)]
    runs += [(app, mixed, gpus) for app in apps] if gpus > 1 else []
    fits = [_fit(app, precision, args.steps, devices) for app, precision, devices in runs]
    print(f"Apps: default config, {args.steps} training steps; steps per second of the training steps alone")
    print(_apps_table(fits))
    failed = any(r["ok"] is False for r in rows) or any("error" in r for r in fits)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
