"""Speed of the video app's decode-and-sample pipeline and of its training, over UCF101-like files.

    python -m benchmarks.video_decode [--clips 24 --frames 64 --workers 0 1 2 --json]

Writes ``--clips`` rendered videos of ``--frames`` frames at 320x240 into a temporary class-per-folder set (AVI
with MPEG-4 part 2 as UCF101's XviD files, or H.264 MP4 with ``--codec h264``), then, for each DataLoader worker
count, iterates the training loader (TSN sampling of ``--num-frames`` frames, resized to ``--frame-size``, normalised
float batches) for ``--epochs`` epochs after one untimed warm-up epoch (which also starts the persistent workers),
and prints clips per second and sampled frames per second; then the same for training steps (forward, backward,
Adam) of configs/video/default.yaml's model with its clip length, frame size and batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from apps.common.cli import CONFIG_DIR
from apps.video.data import GENERATED_CLASSES, VideoDataModule, clip_state, render_clip, write_video
from apps.video.model import VideoModel
from benchmarks.cells import _cpu_name

CODECS = {  # name: (suffix, codec, pixel format, options)
    "mpeg4": (".avi", "mpeg4", "yuv420p", {"qscale": "4"}),
    "h264": (".mp4", "libx264", "yuv420p", {"crf": "23", "preset": "veryfast"}),
}


def write_videos(folder: Path, clips: int, frames: int, width: int, height: int, codec: str) -> Path:
    """``clips`` rendered videos, classes taking turns, as ``folder/<class>/<class>_<i><suffix>``."""
    suffix, name, pixel_format, options = CODECS[codec]
    for i in range(clips):
        label = GENERATED_CLASSES[i % len(GENERATED_CLASSES)]
        rng = np.random.default_rng([7, i])
        pixels = render_clip(clip_state(label, rng, frames, width, height), width, height, rng)
        (folder / label).mkdir(parents=True, exist_ok=True)
        write_video(folder / label / f"{label}_{i}{suffix}", pixels, codec=name, pixel_format=pixel_format,
                    options=options)
    return folder


def decode_rows(folder: Path, args: argparse.Namespace) -> list[dict]:
    """One row per worker count: the training loader's clips and sampled frames per second."""
    rows = []
    for workers in args.workers:
        data = VideoDataModule(dataset="folder", path=str(folder), num_frames=args.num_frames,
                               frame_size=args.frame_size, val_fraction=0.0, test_fraction=0.0,
                               batch_size=args.batch_size, num_workers=workers, cache_dir=str(folder / ".cache"))
        data.splits.update(data.make_splits(("train",)))  # the training loader alone: no validation split
        loader = data.train_dataloader()
        for _ in loader:  # warm-up: workers start, files enter the page cache
            pass
        clips = 0
        start = time.perf_counter()
        for _ in range(args.epochs):
            for batch in loader:
                clips += batch["frames"].shape[0]
        seconds = time.perf_counter() - start
        rows.append(_row("decode+sample (train loader)", workers, clips, seconds, args.num_frames))
        del loader, data  # ends the persistent workers before the next row starts its own
    return rows


def training_rows(folder: Path, args: argparse.Namespace) -> list[dict]:
    """One row per worker count: training steps (forward, backward, Adam) of configs/video/default.yaml's model, its
    clip length, frame size and batch size, over the same files (decoded and resized as the app does)."""
    config = yaml.safe_load((CONFIG_DIR / "video" / "default.yaml").read_text())
    rows = []
    for workers in args.workers:
        data = VideoDataModule(dataset="folder", path=str(folder), val_fraction=0.0, test_fraction=0.0,
                               num_workers=workers, cache_dir=str(folder / ".cache"),
                               **{k: config["data"][k] for k in ("num_frames", "frame_size", "batch_size")})
        data.splits.update(data.make_splits(("train",)))
        torch.manual_seed(0)
        model = VideoModel(**config["model"]).train()
        model.adopt(data.artefacts())
        optimizer = model.configure_optimizers()
        model.on_train_epoch_start()
        loader = data.train_dataloader()
        clips, seconds = 0, 0.0
        for epoch in range(args.epochs + 1):  # the first pass warms up, untimed
            start = time.perf_counter()
            for batch in loader:
                optimizer.zero_grad()
                model.compute_loss(batch).backward()
                optimizer.step()
                clips += batch["frames"].shape[0] if epoch else 0
            seconds += time.perf_counter() - start if epoch else 0.0
        rows.append(_row("training step (default config)", workers, clips, seconds, config["data"]["num_frames"]))
        del loader, data
    return rows


def _row(measure: str, workers: int, clips: int, seconds: float, num_frames: int) -> dict:
    return {"measure": measure, "num_workers": workers, "clips": clips, "seconds": round(seconds, 3),
            "clips_per_s": round(clips / seconds, 1), "frames_per_s": round(clips * num_frames / seconds, 1)}


def _table(rows: list[dict]) -> str:
    header = f"{'measure':<32}{'workers':>8}{'clips/s':>10}{'frames/s':>11}"
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['measure']:<32}{r['num_workers']:>8}{r['clips_per_s']:>10.1f}{r['frames_per_s']:>11.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=24, help="videos written")
    parser.add_argument("--frames", type=int, default=64, help="frames per video")
    parser.add_argument("--width", type=int, default=320, help="video width")
    parser.add_argument("--height", type=int, default=240, help="video height")
    parser.add_argument("--codec", choices=sorted(CODECS), default="mpeg4", help="how the videos are encoded")
    parser.add_argument("--num-frames", type=int, default=16, help="frames T sampled per clip")
    parser.add_argument("--frame-size", type=int, default=112, help="side of the resized frames")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per batch")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--epochs", type=int, default=2, help="timed passes over the videos per row")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    meta = {"clips": args.clips, "frames": args.frames, "size": f"{args.width}x{args.height}", "codec": args.codec,
            "num_frames": args.num_frames, "frame_size": args.frame_size, "batch_size": args.batch_size,
            "epochs": args.epochs, "torch_threads": args.threads, "machine": _cpu_name(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="video-decode-") as tmp:
        folder = write_videos(Path(tmp) / "videos", args.clips, args.frames, args.width, args.height, args.codec)
        rows = decode_rows(folder, args) + training_rows(folder, args)
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
    else:
        print(f"{args.clips} videos of {args.frames} frames at {meta['size']} ({args.codec}); T={args.num_frames} "
              f"frames at {args.frame_size}x{args.frame_size}, batch {args.batch_size}; {args.epochs} timed epochs "
              f"after 1 warm-up; torch threads {args.threads}; {meta['machine']} ({meta['cpus_usable']} usable)")
        print(_table(rows))
    return rows


if __name__ == "__main__":
    main()
