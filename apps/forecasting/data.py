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
from pandas.tseries.frequencies import to_offset
from torch.utils.data import Dataset

from apps.common.artefacts import check_artefacts
from apps.common.data import AppData, fetch
from apps.common.errors import UserError
from apps.forecasting.series import CALENDAR_FEATURES, calendar_features, generated_series, read_csv_series

ETTH1_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/ETTh1.csv"
KNOWN_SHA256 = {ETTH1_URL: "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066"}
SPLITS = ("train", "val", "test")
#: artefacts a checkpoint lends the data instead of requiring them equal: the model works in its training units
SCALER = ("mean", "std")


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
        fill_gaps: bool = False,
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
            fill_gaps: insert the rows missing where the timestamps skip steps, as missing values for nan_policy
                (else such a gap is an error: windows must not span one).
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
                raise UserError(f"--data.{key} is {value!r}; expected one of {allowed}")
        positive = {"input_length": input_length, "horizon": horizon, "mase_season": mase_season,
                    "num_series": num_series, "length": length}
        for key, value in positive.items():
            if value < 1:
                raise UserError(f"--data.{key} is {value}; expected a positive number")
        if fill_gaps and nan_policy == "error":
            raise UserError("--data.fill_gaps inserts rows of missing values: choose how to fill them with "
                            "--data.nan_policy=ffill or interpolate")
        self.input_length, self.horizon = input_length, horizon
        self.history_from_previous_split = history_from_previous_split
        self.predict_on, self.batch_size, self.num_workers = predict_on, batch_size, num_workers
        named = {"--data.columns": columns, "--data.targets": targets}
        if path is None:
            series = generated_series(num_series, length, seed)
            unknown = [(option, name) for option, names in named.items() for name in names or []
                       if name not in series.columns]
            if unknown:
                raise UserError(f"generated series: no column {unknown[0][1]!r} named by {unknown[0][0]}; it has "
                                f"{series.columns}")
        else:
            try:
                local = fetch(path, cache_dir, sha256 or KNOWN_SHA256.get(path))
            except (FileNotFoundError, ValueError) as error:  # a missing file or a wrong checksum
                raise UserError(f"--data.path: {error}") from None
            wanted = None if columns is None else list(dict.fromkeys(columns + (targets or [])))
            series = read_csv_series(local, date_column, wanted, nan_policy, fill_gaps, named)
        self.series = series
        # the targets come first among the inputs: the model forecasts its first num_targets input channels
        self.target_names = list(targets or columns or series.columns)
        self.input_names = self.target_names + [c for c in columns or series.columns if c not in self.target_names]
        self.borders = self._borders(split, val_ratio, test_ratio, val_start, test_start)
        self.calendar = calendar_features
        train_rows = series.values[: self.borders["train"][1]]
        self.used = [series.columns.index(c) for c in self.input_names]
        mean, std = train_rows[:, self.used].mean(0), train_rows[:, self.used].std(0)
        if not scale:
            mean, std = np.zeros_like(mean), np.ones_like(std)
        std[std == 0] = 1.0
        self._standardise(mean, std)
        target = train_rows[:, self.used[: self.num_targets]]
        m = mase_season if len(target) > mase_season else 1
        scale_mase = np.abs(target[m:] - target[:-m]).mean(0)
        scale_mase[~(scale_mase > 0)] = 1.0
        self.mase_scale = scale_mase
        self.matched_checkpoint: str | None = None

    def _standardise(self, mean, std) -> None:
        self.mean, self.std = np.asarray(mean, dtype=float), np.asarray(std, dtype=float)
        self._values = (self.series.values[:, self.used] - self.mean) / self.std

    # sizes the model is built with (linked in the CLI)
    @property
    def num_inputs(self) -> int:
        return len(self.input_names)

    @property
    def num_targets(self) -> int:
        return len(self.target_names)

    @property
    def num_covariates(self) -> int:
        return len(CALENDAR_FEATURES) if self.calendar else 0

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
            step = to_offset(self.series.step)
            per_hour = round(pd.Timedelta("1h") / pd.Timedelta(step)) if isinstance(step, pd.offsets.Tick) else 0
            if per_hour < 1:
                raise UserError(f"{source}: the ETT split counts months of hourly or finer rows; the file's step is "
                                f"{step.freqstr}")
            month = 30 * 24 * per_hour
            cuts = [0, 12 * month, 16 * month, 20 * month]
            if n < cuts[-1]:
                raise UserError(f"{source}: the ETT split needs 20 months = {cuts[-1]} rows, the file has {n}")
        elif split == "ratios":
            if not (0 < val_ratio < 1 and 0 < test_ratio < 1 and val_ratio + test_ratio < 1):
                raise UserError(f"--data.val_ratio={val_ratio} and --data.test_ratio={test_ratio} must be in (0, 1) "
                                "and leave rows for training")
            train, test = int(n * (1 - val_ratio - test_ratio)), int(n * test_ratio)
            cuts = [0, train, n - test, n]
        else:
            if val_start is None or test_start is None:
                raise UserError("--data.split=dates needs --data.val_start and --data.test_start")
            first = [self._row_at(option, date) for option, date in (("val_start", val_start),
                                                                      ("test_start", test_start))]
            if first[0] >= first[1]:
                raise UserError(f"--data.val_start={val_start!r} must come before --data.test_start={test_start!r}")
            cuts = [0, *first, n]
        borders = {name: (cuts[k], cuts[k + 1]) for k, name in enumerate(SPLITS)}
        for name, (start, end) in borders.items():
            if self.window_starts(start, end, name).size == 0:
                need = self.horizon if self.history_from_previous_split and name != "train" else (
                    self.input_length + self.horizon)
                lines = f" (lines {start + 2}-{end + 1})" if end > start else ""
                raise UserError(f"{source}: the {name} split has {end - start} rows{lines}; a window of "
                                f"--data.input_length={self.input_length} + --data.horizon={self.horizon} needs "
                                f"{need} rows there")
        return borders

    def _row_at(self, option: str, date: str) -> int:
        """The first row at or after ``date``."""
        try:
            stamp = np.datetime64(pd.Timestamp(date), "ns")
        except ValueError:
            raise UserError(f"--data.{option}={date!r} is not a date") from None
        return int(np.searchsorted(self.series.dates, stamp))

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
        return {"columns": list(self.input_names), "targets": list(self.target_names),
                "covariates": list(CALENDAR_FEATURES) if self.calendar else [], "step": self.series.step,
                "input_length": self.input_length, "horizon": self.horizon,
                "mean": self.mean.tolist(), "std": self.std.tolist()}

    def setup(self, stage: str) -> None:
        if self.checkpoint_path is not None and self.checkpoint_path != self.matched_checkpoint:
            self._match_checkpoint()
        super().setup(stage)

    def _match_checkpoint(self) -> None:
        """The checkpoint the command restores must have been trained on data like this (columns, covariates,
        step, window lengths); its scaler then standardises this data, in the units the model was trained in."""
        ours = {key: value for key, value in self.artefacts().items() if key not in SCALER}
        try:
            saved = self.saved_artefacts()
            check_artefacts(saved, ours, f"the checkpoint {self.checkpoint_path}", f"the data {self.series.source}")
        except (FileNotFoundError, ValueError) as error:
            raise UserError(str(error)) from None
        if all(key in saved for key in SCALER):
            self._standardise(saved["mean"], saved["std"])
        self.matched_checkpoint = self.checkpoint_path

    def make_splits(self, names: tuple[str, ...]) -> dict[str, WindowDataset]:
        dates, splits = self.series.dates, {}
        for name in names:
            if name in self.borders:
                splits[name] = self._dataset(self._values, dates, self.window_starts(*self.borders[name], name))
            elif self.predict_on == "test":
                splits[name] = self.make_splits(("test",))["test"]
            else:  # the rows after the last one, their truth unknown
                future = pd.date_range(dates[-1], periods=self.horizon + 1, freq=self.series.step)[1:]
                future = future.to_numpy(dtype="datetime64[ns]")
                unknown = np.full((self.horizon, self._values.shape[1]), np.nan)
                splits[name] = self._dataset(np.concatenate([self._values, unknown]), np.concatenate([dates, future]),
                                             np.array([len(dates) - self.input_length]))
        return splits
