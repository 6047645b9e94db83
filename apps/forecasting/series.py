"""A multivariate time series: read from a CSV with a date column (every error names the file, line and column),
or generated; calendar covariates and the sampling step of its timestamps."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
from pandas.tseries.frequencies import to_offset

from apps.common.errors import UserError

MISSING = {"", "nan", "NaN", "NA", "N/A", "null", "NULL", "None"}
CALENDAR_FEATURES = ("time_of_day", "day_of_week", "day_of_month", "day_of_year")
NUM_CALENDAR_FEATURES = len(CALENDAR_FEATURES)
#: values are float32 tensors in the model: anything larger would become infinite there
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Series:
    """A multivariate series: timestamps (N,) datetime64[ns], values (N, C) float64, column names, its source, and
    its sampling step as a pandas frequency ("h", "15min", "MS")."""

    dates: np.ndarray
    values: np.ndarray
    columns: list[str]
    source: str
    step: str


def read_table(path: Path) -> pd.DataFrame:
    """Every cell of a CSV as text, with the header's column names. Line N is the N-th non-blank line (header = 1),
    so data row i is line i + 2; a row with more or fewer fields than the header is an error naming its line."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            header = next((row for row in csv.reader(file) if row), None)  # the parser skips blank lines too
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not header:
        raise UserError(f"{path}: the file is empty; expected a header line of column names")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise UserError(f"{path}: the header names column {repeated[0]!r} twice; column names must be unique")
    bad_rows = []

    def reject(row) -> str:  # called by the parser for the (rare) rows of the wrong length only
        bad_rows.append(row)
        return "error"

    try:  # one thread: then the parser knows the line number of a bad row
        table = pa_csv.read_csv(path, read_options=pa_csv.ReadOptions(use_threads=False),
                                parse_options=pa_csv.ParseOptions(invalid_row_handler=reject),
                                convert_options=pa_csv.ConvertOptions(
                                    column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False,
                                    quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as error:
        if bad_rows:
            row = bad_rows[0]
            raise UserError(f"{path}: line {row.number} has {row.actual_columns} fields, the header has "
                            f"{row.expected_columns}; every line needs {row.expected_columns}") from None
        raise UserError(f"{path}: not a readable CSV file ({error})") from None
    return table.to_pandas()


def read_csv_series(path: Path, date_column: str, columns: list[str] | None, nan_policy: str,
                    fill_gaps: bool = False, named: dict[str, list[str] | None] | None = None) -> Series:
    """Reads a CSV with a date column and value ``columns`` (None: all); ``named`` (option -> the columns it names)
    says which option named a column the file lacks. Every error names the file, the line (header = line 1) and
    the column."""
    frame = read_table(path)
    header = list(frame.columns)
    if date_column not in header:
        raise UserError(f"{path}: no date column {date_column!r}; the header has {header} "
                        "(choose it with --data.date_column)")
    for option, names in (named or {"columns": columns}).items():
        for name in names or []:
            if name not in header or name == date_column:
                raise UserError(f"{path}: no column {name!r} named by {option}; the header has {header}")
    columns = columns or [c for c in header if c != date_column]
    if not columns:
        raise UserError(f"{path}: no value column besides {date_column!r}")
    raw_dates = frame[date_column].str.strip()
    dates = _parse_dates(path, raw_dates, date_column)
    values = _parse_values(path, frame[columns], nan_policy)
    if len(dates) < 2:
        raise UserError(f"{path}: {len(dates)} data row(s); a series needs many (input_length + horizon per split)")
    step, breaks = sampling_step(dates)
    if len(breaks) and not fill_gaps:
        row = int(breaks[0])
        raise UserError(f"{path}: line {row + 2}, column {date_column!r}: {raw_dates.iloc[row]!r} comes "
                        f"{_duration(dates[row] - dates[row - 1])} after line {row + 1} ({raw_dates.iloc[row - 1]!r}); "
                        f"the step is {_readable(step)} (the most common one) and {len(breaks)} row(s) break it (lines "
                        f"{', '.join(str(r + 2) for r in breaks[:5])}{' ...' if len(breaks) > 5 else ''}); windows "
                        "must not span a gap: --data.fill_gaps=true inserts the missing rows for --data.nan_policy")
    if len(breaks):
        grid = pd.date_range(dates[0], dates[-1], freq=step)
        positions = grid.get_indexer(pd.DatetimeIndex(dates))
        if (positions < 0).any():
            row = int(np.flatnonzero(positions < 0)[0])
            raise UserError(f"{path}: line {row + 2}, column {date_column!r}: {raw_dates.iloc[row]!r} is off the "
                            f"grid of step {_readable(step)} from {raw_dates.iloc[0]!r}; --data.fill_gaps fills whole "
                            "steps only")
        dates, values = grid.to_numpy(dtype="datetime64[ns]"), _spread(values, positions, len(grid))
    if nan_policy != "error" and np.isnan(values).any():
        filled = pd.DataFrame(values)
        filled = filled.ffill().bfill() if nan_policy == "ffill" else filled.interpolate(limit_direction="both")
        values = filled.to_numpy()
        if np.isnan(values).any():
            j = int(np.argwhere(np.isnan(values))[0][1])
            raise UserError(f"{path}: column {columns[j]!r} has no value at all to fill from")
    return Series(dates, values, list(columns), str(path), step)


def _parse_dates(path: Path, raw_dates: pd.Series, date_column: str) -> np.ndarray:
    """The timestamps, sorted and unique, as datetime64[ns]."""
    dates = pd.to_datetime(raw_dates, errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        row = int(bad[0])
        raise UserError(f"{path}: line {row + 2}, column {date_column!r}: {raw_dates.iloc[row]!r} is not a date")
    dates = dates.to_numpy(dtype="datetime64[ns]")
    step = np.diff(dates).astype(np.int64)
    if (step <= 0).any():
        row = int(np.flatnonzero(step <= 0)[0]) + 1
        what = "repeats the date of" if step[row - 1] == 0 else "is earlier than"
        raise UserError(f"{path}: line {row + 2}, column {date_column!r}: {raw_dates.iloc[row]!r} {what} line "
                        f"{row + 1} ({raw_dates.iloc[row - 1]!r}); dates must be sorted and unique")
    return dates


def _parse_values(path: Path, cells: pd.DataFrame, nan_policy: str) -> np.ndarray:
    """Numbers (N, C) from text cells, all checked at once: a cell is a finite number within float32's range, or
    missing (an error unless ``nan_policy`` fills it)."""
    text = cells.apply(lambda column: column.str.strip())
    missing = text.isin(MISSING).to_numpy()
    values = text.mask(missing).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    not_number = np.isnan(values) & ~missing
    with np.errstate(invalid="ignore"):
        bad = not_number | ~(np.abs(values) <= FLOAT32_MAX) & ~np.isnan(values)
    if nan_policy == "error":
        bad |= missing
    if bad.any():
        row, j = (int(k) for k in np.argwhere(bad)[0])
        cell, column = cells.iloc[row, j], cells.columns[j]
        if missing[row, j]:
            why = f"missing value ({int(missing.sum())} in all); fill them with --data.nan_policy=ffill or interpolate"
        elif not_number[row, j]:
            why = f"{cell!r} is not a number"
        elif np.isinf(values[row, j]):
            why = f"{cell!r} is not a finite number"
        else:
            why = f"{cell!r} is beyond float32's range (|x| <= {FLOAT32_MAX:.4g})"
        raise UserError(f"{path}: line {row + 2}, column {column!r}: {why} ({int(bad.sum())} bad cell(s) in all)")
    return values


def _spread(values: np.ndarray, positions: np.ndarray, length: int) -> np.ndarray:
    """``values`` at rows ``positions`` of ``length`` rows, the others missing."""
    full = np.full((length, values.shape[1]), np.nan)
    full[positions] = values
    return full


def _duration(delta: np.timedelta64) -> str:
    return _readable(to_offset(pd.Timedelta(delta)).freqstr)


def _readable(step: str) -> str:
    """A frequency with its count: "1h" rather than pandas' "h"."""
    return step if step[0].isdigit() else f"1{step}"


def sampling_step(dates: np.ndarray) -> tuple[str, np.ndarray]:
    """The sampling step as a pandas frequency, and the rows whose distance to the row before is another one.

    The step is the most common distance; a calendar step (months, business days) whose distances vary is regular
    too. Needs sorted, unique dates."""
    distances = np.diff(dates)
    steps, counts = np.unique(distances, return_counts=True)
    if len(steps) > 1:
        with warnings.catch_warnings():  # pandas 3 announces an offset instead of a string; to_offset takes both
            warnings.simplefilter("ignore", DeprecationWarning)
            calendar = pd.infer_freq(pd.DatetimeIndex(dates))
        if calendar is not None:
            return to_offset(calendar).freqstr, np.zeros(0, dtype=int)
    step = steps[np.argmax(counts)]
    return _duration(step), np.flatnonzero(distances != step) + 1


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
    return Series(dates, values, [f"series_{i}" for i in range(num_series)], "generated", "h")


def calendar_features(dates: np.ndarray) -> np.ndarray:
    """Known-future covariates from timestamps, each in [-0.5, 0.5]: time of day, day of week, of month, of year."""
    index = pd.DatetimeIndex(dates)
    return np.stack([
        (index.hour + index.minute / 60) / 24 - 0.5,
        index.day_of_week / 6 - 0.5,
        (index.day - 1) / 30 - 0.5,
        (index.day_of_year - 1) / 365 - 0.5,
    ], axis=1).astype(np.float32)

