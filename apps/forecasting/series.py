"""A multivariate time series: read from a CSV with a date column (every error names the file, line and column),
or generated; calendar covariates and the sampling step of its timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MISSING = {"", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"}
NUM_CALENDAR_FEATURES = 4


@dataclass
class Series:
    """A multivariate series: timestamps (N,) datetime64[ns], values (N, C) float64, column names, and its source."""

    dates: np.ndarray
    values: np.ndarray
    columns: list[str]
    source: str


def read_csv_series(path: Path, date_column: str, columns: list[str] | None, nan_policy: str) -> Series:
    """Reads a CSV with a date column; every error names the file, the line (header = line 1) and the column."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; expected a header with {date_column!r}") from None
    if date_column not in frame.columns:
        raise ValueError(f"{path}: no date column {date_column!r}; the header has {list(frame.columns)} "
                         "(choose it with --data.date_column)")
    columns = columns or [c for c in frame.columns if c != date_column]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {missing[0]!r}; the header has {list(frame.columns)}")
    if not columns:
        raise ValueError(f"{path}: no value column besides {date_column!r}")
    raw_dates = frame[date_column].str.strip()
    dates = pd.to_datetime(raw_dates, errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        row = int(bad[0])
        raise ValueError(f"{path}: line {row + 2}, column {date_column!r}: {frame[date_column].iloc[row]!r} is not "
                         "a date")
    dates = dates.to_numpy(dtype="datetime64[ns]")
    step = np.diff(dates).astype(np.int64)
    if (step <= 0).any():
        row = int(np.flatnonzero(step <= 0)[0]) + 1
        what = "repeats the date of" if step[row - 1] == 0 else "is earlier than"
        raise ValueError(f"{path}: line {row + 2}, column {date_column!r}: {raw_dates.iloc[row]!r} {what} line "
                         f"{row + 1} ({raw_dates.iloc[row - 1]!r}); dates must be sorted and unique")
    values = np.empty((len(frame), len(columns)))
    for j, column in enumerate(columns):
        text = frame[column].str.strip()
        numbers = pd.to_numeric(text.where(~text.isin(MISSING)), errors="coerce").to_numpy(dtype=float)
        not_number = np.flatnonzero(np.isnan(numbers) & ~text.isin(MISSING).to_numpy())
        if len(not_number):
            row = int(not_number[0])
            raise ValueError(f"{path}: line {row + 2}, column {column!r}: {frame[column].iloc[row]!r} is not a number")
        values[:, j] = numbers
    holes = np.argwhere(np.isnan(values))
    if len(holes):
        if nan_policy == "error":
            row, j = holes[0]
            raise ValueError(f"{path}: line {row + 2}, column {columns[j]!r}: missing value ({len(holes)} in all); "
                             "fill them with --data.nan_policy=ffill or interpolate")
        filled = pd.DataFrame(values)
        filled = filled.ffill().bfill() if nan_policy == "ffill" else filled.interpolate(limit_direction="both")
        values = filled.to_numpy()
        if np.isnan(values).any():
            j = int(np.argwhere(np.isnan(values))[0][1])
            raise ValueError(f"{path}: column {columns[j]!r} has no value at all to fill from")
    return Series(dates, values, list(columns), str(path))


def generated_series(num_series: int, length: int, seed: int) -> Series:
    """Hourly series with daily and weekly seasons, a trend, AR(1) noise and coupling: each series but the first
    also follows the one before it, a few hours late."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=float)
    values = np.empty((length, num_series))
    for i in range(num_series):
        daily = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * t / 24 + rng.uniform(0, 2 * np.pi))
        weekly = rng.uniform(0.3, 1.5) * np.sin(2 * np.pi * t / 168 + rng.uniform(0, 2 * np.pi))
        half_daily = rng.uniform(0.0, 0.6) * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 2 * np.pi))
        trend = rng.uniform(-1.0, 1.0) * t / length
        shocks = rng.normal(0.0, rng.uniform(0.1, 0.3), length)
        noise = np.empty(length)
        noise[0] = shocks[0]
        for k in range(1, length):
            noise[k] = 0.7 * noise[k - 1] + shocks[k]
        values[:, i] = daily + weekly + half_daily + trend + noise + rng.uniform(-2, 2)
        if i:
            lag = int(rng.integers(1, 7))
            values[lag:, i] += 0.6 * values[:-lag, i - 1]
    dates = np.datetime64("2020-01-01T00:00", "ns") + np.arange(length) * np.timedelta64(1, "h")
    return Series(dates, values, [f"series_{i}" for i in range(num_series)], "generated")


def calendar_features(dates: np.ndarray) -> np.ndarray:
    """Known-future covariates from timestamps, each in [-0.5, 0.5]: time of day, day of week, of month, of year."""
    index = pd.DatetimeIndex(dates)
    return np.stack([
        (index.hour + index.minute / 60) / 24 - 0.5,
        index.day_of_week / 6 - 0.5,
        (index.day - 1) / 30 - 0.5,
        (index.day_of_year - 1) / 365 - 0.5,
    ], axis=1).astype(np.float32)


def step_of(dates: np.ndarray) -> np.timedelta64:
    """The series' sampling interval: the most common difference between consecutive timestamps."""
    steps, counts = np.unique(np.diff(dates), return_counts=True)
    return steps[np.argmax(counts)]
