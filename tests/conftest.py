"""Shared helpers for the app tests: generated CSV files and running an app in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# One thread per test process, for the tests and the apps they start: `make test` runs one process per core, and the
# tiny models gain nothing from more threads.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

ETT_COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
#: tiny model and few batches: every CLI run in the tests takes seconds
FAST = ["--trainer.enable_progress_bar=false", "--data.length=1500", "--data.batch_size=16", "--model.hidden_size=16"]


def write_series_csv(path: Path, rows: int, columns: list[str], freq: str = "h", seed: int = 0) -> Path:
    """A CSV like ETT's: a ``date`` column and random-walk value columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(columns))).cumsum(0).round(3), columns=columns)
    frame.insert(0, "date", pd.date_range("2016-07-01", periods=rows, freq=freq).strftime("%Y-%m-%d %H:%M:%S"))
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def ett_csv(tmp_path) -> Path:
    """An hourly file named like ETTh1 with a few rows more than the 20 months the ETT split uses."""
    return write_series_csv(tmp_path / "ETTh1.csv", 14400 + 50, ETT_COLUMNS)


def run_app(args: list[str], cwd: Path, env: dict | None = None, check: bool = True, timeout: int = 300,
            app: str = "forecasting", stdin: str | None = None,
            python_path: list[Path] = ()) -> subprocess.CompletedProcess:
    """``python -m apps.<app> *args`` in ``cwd``, reading ``stdin`` (or nothing), with the project and
    ``python_path`` importable; on failure (when ``check``) the output is in the error."""
    paths = [str(ROOT), *map(str, python_path), *filter(None, [os.environ.get("PYTHONPATH")])]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), **(env or {})}
    done = subprocess.run([sys.executable, "-m", f"apps.{app}", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout, input=stdin or "")
    if check and done.returncode != 0:
        raise AssertionError(f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def metrics_csv(folder: Path) -> pd.DataFrame:
    """The metrics.csv of the only CSVLogger version under ``folder``."""
    (path,) = folder.rglob("metrics.csv")
    return pd.read_csv(path)
