"""Work over many files, as rendering clips and probing videos are: a forked process pool when it pays, and a
progress bar on rank zero."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

#: items from which a process pool is used (fewer are done faster than a pool starts)
POOL_THRESHOLD = 64


@contextmanager
def in_processes(function: Callable, items: list, workers: int) -> Iterator[Iterator]:
    """``function`` over ``items``, results in order: in up to ``workers`` processes (one per core at most) when
    there are enough items, else in this one; unfinished work is cancelled when the context closes."""
    workers = min(workers, os.cpu_count() or 1)
    if workers < 2 or len(items) < POOL_THRESHOLD or "fork" not in multiprocessing.get_all_start_methods():
        yield map(function, items)
        return
    # forked (not spawned) so that no child imports the program's __main__ again; all children start here,
    # before the progress bar's thread does
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        yield pool.map(function, items, chunksize=max(1, min(64, len(items) // (8 * workers))))
    finally:
        pool.shutdown(cancel_futures=True)


@contextmanager
def progress(note: str, label: str, total: int) -> Iterator[Callable[[], None]]:
    """A note (on rank zero) of what is done, then a rich progress bar labelled ``label`` while it is; the context
    gives ``advance()``, to call once per item."""
    rank_zero_info(f"video data: {note}")
    if rank_zero_only.rank != 0 or total <= 0:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import Progress

    bar = Progress(console=Console(stderr=True), transient=True)
    bar.start()
    try:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
    finally:
        bar.stop()
