"""The checks of the video data's options, run when the data module is built: a value out of range, or one the chosen
dataset does not read (it would be silently ignored), is a UserError naming its ``--data`` option."""

from __future__ import annotations

from pathlib import Path

from apps.common.errors import UserError

DATASETS = ("generated", "ucf101", "hmdb51", "folder")
#: the options that must be at least 1, and those that must be at least 0
#: (batch_size and num_workers: apps.common.data checks them for every app)
POSITIVE = ("num_frames", "frame_size", "test_clips", "index_workers")
NOT_NEGATIVE = ("decode_threads",)


def check_video_options(options: dict, defaults: dict) -> None:
    """Raises a UserError for the first wrong option of ``options`` (the data module's arguments); ``defaults`` are
    their defaults: an option the dataset does not read is wrong only when set to something else."""
    dataset = options["dataset"]
    if dataset not in DATASETS:
        raise UserError(f"--data.dataset {dataset!r} is unknown; expected one of {', '.join(DATASETS)}")
    if options["on_bad_video"] not in ("skip", "error"):
        raise UserError(f"--data.on_bad_video must be skip or error, got {options['on_bad_video']!r}")
    for name in POSITIVE:
        if not isinstance(options[name], int) or options[name] < 1:
            raise UserError(f"--data.{name} must be a positive whole number, got {options[name]!r}")
    for name in NOT_NEGATIVE:
        if not isinstance(options[name], int) or options[name] < 0:
            raise UserError(f"--data.{name} must be 0 or more, got {options[name]!r}")
    val, test = options["val_fraction"], options["test_fraction"]
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise UserError(f"--data.val_fraction and --data.test_fraction must be in [0, 1) with a sum below 1, got "
                        f"{val} and {test}")
    if dataset == "generated":
        _check_generated(options, defaults)
    elif not options["path"]:
        raise UserError(f"--data.dataset {dataset} needs --data.path: the folder of <class>/<video> files")
    if dataset in ("ucf101", "hmdb51"):
        if options["fold"] not in (1, 2, 3):
            raise UserError(f"--data.fold must be 1, 2 or 3 (the official splits of {dataset}), got {options['fold']}")
        _not_read(options, defaults, "test_fraction", f"the test videos of {dataset} are those of its official "
                                                      "split (--data.fold)")
    else:
        _not_read(options, defaults, "fold", f"it chooses an official split of ucf101 or hmdb51; --data.dataset "
                                             f"{dataset} has none")
    if dataset == "folder" and options["split_path"]:
        split_dir = Path(options["split_path"]).expanduser()
        _not_read(options, defaults, "test_fraction", f"test.txt in {split_dir} (--data.split_path) lists the test "
                                                      "videos")
        if (split_dir / "val.txt").is_file():
            _not_read(options, defaults, "val_fraction", f"val.txt in {split_dir} (--data.split_path) lists the "
                                                         "validation videos")


def _check_generated(options: dict, defaults: dict) -> None:
    """The options of the rendered set: three clip counts, frames large enough to draw in, no data folder."""
    for name in ("path", "split_path"):
        if options[name]:
            raise UserError(f"--data.{name} is not read by --data.dataset generated, which renders its own clips; "
                            "pass --data.dataset folder, ucf101 or hmdb51 to read videos from files")
    for name in ("val_fraction", "test_fraction"):
        _not_read(options, defaults, name, "the generated set's splits have the sizes of --data.generated_sizes")
    sizes = options["generated_sizes"]
    if len(sizes) != 3 or any(not isinstance(n, int) or n < 0 for n in sizes) or sizes[0] < 1:
        raise UserError(f"--data.generated_sizes must be three clip counts (train at least 1, val, test), got "
                        f"{list(sizes)}")
    if options["frame_size"] < 16:
        raise UserError(f"--data.frame_size must be at least 16 for the generated clips, got {options['frame_size']}")


def _not_read(options: dict, defaults: dict, name: str, why: str) -> None:
    if options[name] != defaults[name]:
        raise UserError(f"--data.{name} {options[name]} does not apply to --data.dataset {options['dataset']}: {why}")
