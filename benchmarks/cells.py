"""Speed of every cell and backend against torch.nn.LSTM at the same shape.

    python -m benchmarks.cells [--steps 100 --batch 64 --size 256 --repeats 20 --json]

For each device (CPU, and CUDA when present), cell and backend: forward milliseconds (inference, no autograd
graph) and forward+backward milliseconds (training), each the median of the repeats after warm-up, and each
row's ratio to torch.nn.LSTM measured in the same run. benchmarks.gpu_check times the CUDA rows under autocast too.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from rnn_core import CELLS, Recurrent


def _forward(module: torch.nn.Module, x: torch.Tensor, autocast: torch.dtype | None = None) -> Callable[[], None]:
    def run():
        with torch.no_grad(), torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
            module(x)

    return run


def _forward_backward(module: torch.nn.Module, x: torch.Tensor,
                      autocast: torch.dtype | None = None) -> Callable[[], None]:
    def run():
        with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
            out, _ = module(x)
        out.float().sum().backward()

    return run


def _interleaved_medians(fns: list[Callable[[], None]], device, warmup: int, repeats: int) -> list[float]:
    """Median milliseconds of each function; the repeats go round-robin over all functions, so a slow spell of
    the machine hits every row alike instead of one row wholly."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, kept in zip(fns, times, strict=True):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            kept.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(kept) for kept in times]


def run(steps: int, batch: int, size: int, repeats: int, warmup: int, devices: list[str],
        autocast: torch.dtype | None = None) -> list[dict]:
    """Rows per device, cell and backend; with ``autocast``, every row (torch.nn.LSTM's too) runs under it."""
    rows = []
    for device_name in devices:
        device = torch.device(device_name)
        torch.manual_seed(0)
        x = torch.randn(batch, steps, size, device=device, requires_grad=True)
        modules = {("torch.nn.LSTM", "-"): torch.nn.LSTM(size, size, batch_first=True).to(device)}
        for cell, cell_type in CELLS.items():
            for backend in ("torch", "fused", "loop"):
                if backend != "torch" or cell_type.torch_kernel is not None:
                    modules[cell, backend] = Recurrent(cell, size, size, backend=backend).to(device)
        forward = _interleaved_medians([_forward(m, x, autocast) for m in modules.values()], device, warmup, repeats)
        both = _interleaved_medians([_forward_backward(m, x, autocast) for m in modules.values()], device, warmup,
                                    repeats)
        for (cell, backend), fwd, fb in zip(modules, forward, both, strict=True):
            rows.append(_row(device_name, cell, backend, fwd, fb, forward[0], both[0]))
    return rows


def _row(device, cell, backend, fwd, fb, ref_fwd, ref_fb) -> dict:
    return {
        "device": device,
        "cell": cell,
        "backend": backend,
        # four significant digits: a ratio rounded to two decimals read 0.0 when the reference had a slow spell
        "forward_ms": float(f"{fwd:.4g}"),
        "forward_backward_ms": float(f"{fb:.4g}"),
        "forward_ratio_to_nn_lstm": float(f"{fwd / ref_fwd:.4g}"),
        "forward_backward_ratio_to_nn_lstm": float(f"{fb / ref_fb:.4g}"),
    }


def _table(rows: list[dict]) -> str:
    header = f"{'device':<7}{'cell':<15}{'backend':<8}{'fwd ms':>9}{'x LSTM':>8}{'fwd+bwd ms':>12}{'x LSTM':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['device']:<7}{r['cell']:<15}{r['backend']:<8}{r['forward_ms']:>9.2f}"
            f"{r['forward_ratio_to_nn_lstm']:>8.2f}{r['forward_backward_ms']:>12.2f}"
            f"{r['forward_backward_ratio_to_nn_lstm']:>8.2f}"
        )
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
    except OSError:
        names = []
    return f"{names[0]}, {len(names)} cores" if names else platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--batch", type=int, default=64, help="batch size")
    parser.add_argument("--size", type=int, default=256, help="input and hidden size")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per row (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--device", action="append", help="cpu or cuda; repeatable (default: cpu, and cuda if present)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = run(args.steps, args.batch, args.size, args.repeats, args.warmup, devices)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": _cpu_name(),
        "shape": {"steps": args.steps, "batch": args.batch, "input": args.size, "hidden": args.size},
    }
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
    else:
        print(
            f"T={args.steps}, batch {args.batch}, input = hidden = {args.size}; median of {args.repeats} after "
            f"{args.warmup} warm-up; torch {meta['torch']}, {meta['threads']} threads; {meta['machine']}"
        )
        print(_table(rows))


if __name__ == "__main__":
    main()
