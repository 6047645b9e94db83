"""Forecasting data: a generated multivariate series, ETT, or any CSV with a date column, cut into windows.

A window is ``input_length`` rows of history and the ``horizon`` rows after it. Rows are split chronologically
into train, validation and test; a window belongs to the split its forecast (the horizon rows) lies in and never
reaches past that split's end. Values are standardised with the training rows' mean and standard deviation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from apps.common.data import AppData, fetch
from apps.forecasting.series import NUM_CALENDAR_FEATURES, calendar_features, generated_series, read_csv_series, step_of

ETTH1_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv"
KNOWN_SHA256 = {ETTH1_URL: "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"}
SPLITS = ("train", "val", "test")


class WindowDataset(Dataset):
    """Windows starting at given rows. An item: ``index`` (window number), ``x (L, C_in)``, ``y (H, C_out)``,
    ``x_mark (L, K)`` and ``y_mark (H, K)`` (calendar covariates), ``time (H,)`` (forecast timestamps, ns since
    1970) and ``origin`` (timestamp of the last history row)."""

    def __init__(self, values: torch.Tensor, marks: torch.Tensor, times: torch.Tensor, starts: np.ndarray,
                 num_targets: int, input_length: int, horizon: int) -> None:
        self.values, self.marks, self.times, self.starts = values, marks, times, starts
        self.num_targets, self.input_length, self.horizon = num_targets, input_length, horizon

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s, L, H = int(self.starts[i]), self.input_length, self.horizon
        return {
            "index": torch.tensor(i),
            "x": self.values[s : s + L],
            "y": self.values[s + L : s + L + H, : self.num_targets],
            "x_mark": self.marks[s : s + L],
            "y_mark": self.marks[s + L : s + L + H],
            "time": self.times[s + L : s + L + H],
            "origin": self.times[s + L - 1],
        }


class ForecastingData(AppData):
    """Windows of a multivariate series for forecasting, split chronologically into train, validation and test."""

    def __init__(
        self,
        path: str | None = None,
        date_column: str = "date",
        columns: list[str] | None = None,
        targets: list[str] | None = None,
        input_length: int = 96,
        horizon: int = 24,
        split: str = "auto",
        val_ratio: float = 0.1,
        test_ratio: float = 0.2,
        val_start: str | None = None,
        test_start: str | None = None,
        history_from_previous_split: bool = True,
        scale: bool = True,
        calendar_features: bool = False,
        nan_policy: str = "error",
        mase_season: int = 24,
        predict_on: str = "future",
        batch_size: int = 64,
        num_workers: int = 0,
        cache_dir: str = "~/.cache/rnn-apps",
        sha256: str | None = None,
        num_series: int = 4,
        length: int = 4000,
        seed: int = 0,
    ) -> None:
        """
        Args:
            path: CSV file or URL (downloaded once into cache_dir); None generates a series (num_series, length).
            date_column: the CSV's timestamp column.
            columns: input columns (None: every column but the date).
            targets: columns to forecast (None: the input columns); they are inputs too.
            input_length: history rows the model reads.
            horizon: rows to forecast.
            split: "ett" (12/4/4 months of train/val/test, the ETT benchmark protocol), "ratios" (val_ratio,
                test_ratio of the rows at the end), "dates" (val_start, test_start), or "auto" (ett for files
                named ETTh*/ETTm*, else ratios).
            val_ratio: share of rows for validation with split=ratios.
            test_ratio: share of rows for test with split=ratios.
            val_start: first validation timestamp with split=dates.
            test_start: first test timestamp with split=dates.
            history_from_previous_split: the first val/test windows read their history from the rows before the
                split (the literature's protocol; forecasts never cross a split); False keeps whole windows inside.
            scale: standardise every column with the training rows' mean and standard deviation.
            calendar_features: give the model time of day, day of week/month/year as known-future covariates.
            nan_policy: missing values are an "error", or filled by "ffill" (then backward) or "interpolate".
            mase_season: season m of the naive forecast that scales MASE (24: hourly data with a daily cycle).
            predict_on: "future" forecasts past the last row; "test" forecasts every test window.
            batch_size: windows per batch.
            num_workers: DataLoader worker processes.
            cache_dir: where downloads are kept.
            sha256: expected SHA-256 of the file (known for the ETTh1 URL).
            num_series: generated data: number of series.
            length: generated data: number of hourly rows.
            seed: generated data: random seed.
        """
        super().__init__()
        self.save_hyperparameters()
        choices = {"split": (split, ("auto", "ett", "ratios", "dates")),
                   "nan_policy": (nan_policy, ("error", "ffill", "interpolate")),
                   "predict_on": (predict_on, ("future", "test"))}
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"data.{key} is {value!r}; expected one of {allowed}")
        if input_length < 1 or horizon < 1:
            raise ValueError(f"data.input_length and data.horizon must be positive, got {input_length}, {horizon}")
        self.input_length, self.horizon = input_length, horizon
        self.history_from_previous_split = history_from_previous_split
        self.predict_on, self.batch_size, self.num_workers = predict_on, batch_size, num_workers
        if path is None:
            series = generated_series(num_series, length, seed)
        else:
            local = fetch(path, cache_dir, sha256 or KNOWN_SHA256.get(path))
            wanted = None if columns is None else list(dict.fromkeys(columns + (targets or [])))
            series = read_csv_series(local, date_column, wanted, nan_policy)
        self.series = series
        # the targets come first among the inputs: the model forecasts its first num_targets input channels
        self.target_names = list(targets or columns or series.columns)
        self.input_names = self.target_names + [c for c in columns or series.columns if c not in self.target_names]
        for name in self.input_names:
            if name not in series.columns:
                raise ValueError(f"{series.source}: no column {name!r}; it has {series.columns}")
        self.borders = self._borders(split, val_ratio, test_ratio, val_start, test_start)
        self.calendar = calendar_features
        train_rows = series.values[: self.borders["train"][1]]
        used = [series.columns.index(c) for c in self.input_names]
        mean, std = train_rows[:, used].mean(0), train_rows[:, used].std(0)
        if not scale:
            mean, std = np.zeros_like(mean), np.ones_like(std)
        std[std == 0] = 1.0
        self.mean, self.std = mean, std
        target = train_rows[:, used[: self.num_targets]]
        m = mase_season if len(target) > mase_season else 1
        scale_mase = np.abs(target[m:] - target[:-m]).mean(0)
        scale_mase[~(scale_mase > 0)] = 1.0
        self.mase_scale = scale_mase
        self._values = (series.values[:, used] - mean) / std

    # sizes the model is built with (linked in the CLI)
    @property
    def num_inputs(self) -> int:
        return len(self.input_names)

    @property
    def num_targets(self) -> int:
        return len(self.target_names)

    @property
    def num_covariates(self) -> int:
        return NUM_CALENDAR_FEATURES if self.calendar else 0

    @property
    def target_mean(self) -> torch.Tensor:
        return torch.as_tensor(self.mean[: self.num_targets], dtype=torch.float32)

    @property
    def target_std(self) -> torch.Tensor:
        return torch.as_tensor(self.std[: self.num_targets], dtype=torch.float32)

    def _borders(self, split, val_ratio, test_ratio, val_start, test_start) -> dict[str, tuple[int, int]]:
        """Per split, the rows [start, end) its forecasts lie in."""
        n, source = len(self.series.dates), self.series.source
        if split == "auto":
            split = "ett" if Path(source).name.upper().startswith(("ETTH", "ETTM")) else "ratios"
        if split == "ett":
            per_hour = round(np.timedelta64(1, "h") / step_of(self.series.dates))
            month = 30 * 24 * per_hour
            cuts = [0, 12 * month, 16 * month, 20 * month]
            if n < cuts[-1]:
                raise ValueError(f"{source}: the ETT split needs 20 months = {cuts[-1]} rows, the file has {n}")
        elif split == "ratios":
            if not (0 < val_ratio < 1 and 0 < test_ratio < 1 and val_ratio + test_ratio < 1):
                raise ValueError(f"data.val_ratio={val_ratio} and data.test_ratio={test_ratio} must be in (0, 1) "
                                 "and leave rows for training")
            train, test = int(n * (1 - val_ratio - test_ratio)), int(n * test_ratio)
            cuts = [0, train, n - test, n]
        else:
            if val_start is None or test_start is None:
                raise ValueError("data.split=dates needs data.val_start and data.test_start")
            first = [int(np.searchsorted(self.series.dates, np.datetime64(pd.Timestamp(d)))) for d in
                     (val_start, test_start)]
            cuts = [0, *first, n]
        borders = {name: (cuts[k], cuts[k + 1]) for k, name in enumerate(SPLITS)}
        for name, (start, end) in borders.items():
            if self.window_starts(start, end, name).size == 0:
                need = self.horizon if self.history_from_previous_split and name != "train" else (
                    self.input_length + self.horizon)
                raise ValueError(f"{source}: the {name} split has {end - start} rows (lines {start + 2}-{end + 1}); "
                                 f"a window of input_length={self.input_length} + horizon={self.horizon} needs "
                                 f"{need} rows there")
        return borders

    def window_starts(self, start: int, end: int, split: str) -> np.ndarray:
        """First rows of the windows whose forecasts lie in rows [start, end); the last one ends at ``end``."""
        lowest = max(0, start - self.input_length) if self.history_from_previous_split and split != "train" else start
        return np.arange(lowest, end - self.input_length - self.horizon + 1)

    def _dataset(self, values: np.ndarray, dates: np.ndarray, starts: np.ndarray) -> WindowDataset:
        marks = calendar_features(dates) if self.calendar else np.zeros((len(dates), 0), np.float32)
        return WindowDataset(torch.as_tensor(values, dtype=torch.float32), torch.from_numpy(marks),
                             torch.from_numpy(dates.astype(np.int64)), starts, self.num_targets, self.input_length,
                             self.horizon)

    def artefacts(self) -> dict:
        return {"columns": list(self.input_names), "targets": list(self.target_names)}

    def make_splits(self, names: tuple[str, ...]) -> dict[str, WindowDataset]:
        dates, splits = self.series.dates, {}
        for name in names:
            if name in self.borders:
                splits[name] = self._dataset(self._values, dates, self.window_starts(*self.borders[name], name))
            elif self.predict_on == "test":
                splits[name] = self.make_splits(("test",))["test"]
            else:  # the rows after the last one, their truth unknown
                future = dates[-1] + step_of(dates) * np.arange(1, self.horizon + 1)
                unknown = np.full((self.horizon, self._values.shape[1]), np.nan)
                splits[name] = self._dataset(np.concatenate([self._values, unknown]), np.concatenate([dates, future]),
                                             np.array([len(dates) - self.input_length]))
        return splits
