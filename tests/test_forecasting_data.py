"""Forecasting data: the ETT split, windows at split boundaries, scaling, CSV errors, downloads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apps.common.data import fetch, sha256_of
from apps.forecasting.data import ForecastingData
from tests.conftest import ETT_COLUMNS, write_series_csv


def _rows(data: ForecastingData, split: str) -> tuple[np.ndarray, np.ndarray]:
    """First history row and one-past-last forecast row of every window of a split."""
    starts = data.splits[split].starts
    return starts, starts + data.input_length + data.horizon


@pytest.mark.parametrize("history_from_previous_split", [True, False])
def test_ett_split_sizes_and_windows_stay_inside_their_split(ett_csv, history_from_previous_split):
    data = ForecastingData(path=str(ett_csv), input_length=96, horizon=96,
                           history_from_previous_split=history_from_previous_split)
    data.setup("fit")
    data.setup("test")
    assert data.borders == {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}
    L, H = 96, 96
    extra = L if history_from_previous_split else 0
    assert len(data.splits["train"]) == 8640 - L - H + 1
    assert len(data.splits["val"]) == 2880 + extra - L - H + 1
    assert len(data.splits["test"]) == 2880 + extra - L - H + 1
    for split, (start, end) in data.borders.items():
        first, stop = _rows(data, split)
        forecast_start = first + L
        assert forecast_start.min() >= start and stop.max() <= end  # forecasts never cross the split
        lowest = start - extra if split != "train" else 0
        assert first.min() == lowest  # history reaches back only as the protocol allows
        assert stop.max() == end  # no window is dropped: the last one ends at the split's last row
    assert data.test_dataloader().drop_last is False


def test_ett_split_for_15_minute_files_covers_the_same_months(tmp_path):
    path = write_series_csv(tmp_path / "ETTm1.csv", 4 * 14400 + 10, ETT_COLUMNS[:2], freq="15min")
    data = ForecastingData(path=str(path), input_length=96, horizon=24)
    assert data.borders == {"train": (0, 34560), "val": (34560, 46080), "test": (46080, 57600)}


def test_scaler_uses_only_training_rows(ett_csv):
    before = ForecastingData(path=str(ett_csv))
    frame = pd.read_csv(ett_csv)
    frame.loc[8640:, ETT_COLUMNS] += 1000.0  # change everything after the training rows
    frame.to_csv(ett_csv, index=False)
    after = ForecastingData(path=str(ett_csv))
    np.testing.assert_allclose(after.mean, before.mean)
    np.testing.assert_allclose(after.std, before.std)
    train = frame[ETT_COLUMNS].to_numpy()[:8640]
    np.testing.assert_allclose(after.mean, train.mean(0))
    np.testing.assert_allclose(after._values[:8640].mean(0), 0.0, atol=1e-9)


def test_targets_come_first_and_univariate_target(ett_csv):
    data = ForecastingData(path=str(ett_csv), targets=["OT"], calendar_features=True)
    assert data.input_names[0] == "OT" and sorted(data.input_names) == sorted(ETT_COLUMNS)
    assert (data.num_inputs, data.num_targets, data.num_covariates) == (7, 1, 4)
    data.setup("fit")
    item = data.splits["val"][0]
    assert item["x"].shape == (96, 7) and item["y"].shape == (24, 1) and item["y_mark"].shape == (24, 4)
    raw = pd.read_csv(ett_csv)["OT"].to_numpy()
    start = int(data.splits["val"].starts[0])
    np.testing.assert_allclose(item["y"][:, 0].numpy() * data.std[0] + data.mean[0], raw[start + 96 : start + 120],
                               rtol=1e-4, atol=1e-3)


def test_ratio_and_date_splits(tmp_path):
    path = write_series_csv(tmp_path / "load.csv", 1000, ["a", "b"])
    data = ForecastingData(path=str(path), input_length=24, horizon=12, val_ratio=0.1, test_ratio=0.2)
    assert data.borders == {"train": (0, 700), "val": (700, 800), "test": (800, 1000)}
    data.setup("test")
    assert _rows(data, "test")[1].max() == 1000
    dates = pd.read_csv(path)["date"]
    by_date = ForecastingData(path=str(path), input_length=24, horizon=12, split="dates", val_start=dates[600],
                              test_start=dates[900])
    assert by_date.borders == {"train": (0, 600), "val": (600, 900), "test": (900, 1000)}


def test_future_window_continues_the_timestamps(tmp_path):
    path = write_series_csv(tmp_path / "load.csv", 500, ["a"])
    data = ForecastingData(path=str(path), input_length=24, horizon=6)
    data.setup("predict")
    (item,) = [data.splits["predict"][0]]
    last = pd.Timestamp(pd.read_csv(path)["date"].iloc[-1])
    assert pd.Timestamp(int(item["origin"])) == last
    assert list(pd.to_datetime(item["time"].numpy())) == list(pd.date_range(last, periods=7, freq="h")[1:])
    assert item["y"].isnan().all()


def test_generated_series_is_seeded_and_coupled():
    a, b = ForecastingData(num_series=3, length=800, seed=1), ForecastingData(num_series=3, length=800, seed=1)
    np.testing.assert_array_equal(a.series.values, b.series.values)
    assert not np.allclose(a.series.values, ForecastingData(num_series=3, length=800, seed=2).series.values)
    values = a.series.values
    lagged = max(abs(np.corrcoef(values[k:, 1], values[:-k, 0])[0, 1]) for k in range(1, 7))
    assert lagged > 0.3  # series 1 follows series 0 a few hours late


# ------------------------------------------------------------------ bad input


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere\.csv"):
        ForecastingData(path=str(tmp_path / "nowhere.csv"))


@pytest.mark.parametrize(
    ("text", "kwargs", "pattern"),
    [
        ("date,a\n2020-01-01 00:00,1\n", {"targets": ["b"]}, r"bad.csv: no column 'b'"),
        ("time,a\n2020-01-01 00:00,1\n", {}, r"bad.csv: no date column 'date'"),
        ("date,a,b\n2020-01-01 00:00,1,2\n2020-01-01 01:00,1,x2\n", {}, r"bad.csv: line 3, column 'b': 'x2' is not a"),
        ("date,a\n2020-01-01 00:00,1\nsoon,2\n", {}, r"bad.csv: line 3, column 'date': 'soon' is not a date"),
        ("date,a\n2020-01-01 01:00,1\n2020-01-01 00:00,2\n", {}, r"bad.csv: line 3, column 'date'.*is earlier than"),
        ("date,a\n2020-01-01 01:00,1\n2020-01-01 01:00,2\n", {}, r"bad.csv: line 3, column 'date'.*repeats the date"),
        ("date,a\n2020-01-01 00:00,1\n2020-01-01 01:00,\n", {}, r"bad.csv: line 3, column 'a': missing value"),
    ],
    ids=["missing-column", "missing-date-column", "not-a-number", "bad-date", "unsorted", "duplicate", "nan"],
)
def test_bad_csv_errors_name_file_line_and_column(tmp_path, text, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        ForecastingData(path=_write(tmp_path / "bad.csv", text), **kwargs)


def test_series_too_short_for_a_window(tmp_path):
    path = write_series_csv(tmp_path / "short.csv", 100, ["a"])
    with pytest.raises(ValueError, match=r"short.csv: the train split has 70 rows.*input_length=96 \+ horizon=24"):
        ForecastingData(path=str(path))


@pytest.mark.parametrize("policy", ["ffill", "interpolate"])
def test_nan_fill_policies(tmp_path, policy):
    values = ["1", "", "3", *map(str, range(4, 11))]
    text = "date,a\n" + "".join(f"2020-01-01 {h:02d}:00,{v}\n" for h, v in enumerate(values))
    data = ForecastingData(path=_write(tmp_path / "gap.csv", text), input_length=1, horizon=1, nan_policy=policy)
    assert data.series.values[:3, 0].tolist() == [1.0, 1.0 if policy == "ffill" else 2.0, 3.0]


def test_unknown_option_values_are_named():
    with pytest.raises(ValueError, match=r"data.nan_policy is 'drop'"):
        ForecastingData(nan_policy="drop")


# ------------------------------------------------------------------ downloads


def test_url_is_downloaded_once_into_the_cache_and_verified(tmp_path):
    source = write_series_csv(tmp_path / "ETTh1.csv", 30, ["a"])
    digest = sha256_of(source)
    cache = tmp_path / "cache"
    path = fetch(source.as_uri(), cache, digest)
    assert path == cache / "ETTh1.csv" and path.read_bytes() == source.read_bytes()
    source.unlink()  # a second fetch must not need the source again
    assert fetch(source.as_uri(), cache, digest) == path
    path.write_text("corrupted")
    with pytest.raises(ValueError, match=r"cached download .*ETTh1.csv.*has SHA-256"):
        fetch(source.as_uri(), cache)


def test_download_with_wrong_checksum_is_refused_and_not_cached(tmp_path):
    source = write_series_csv(tmp_path / "x.csv", 30, ["a"])
    with pytest.raises(ValueError, match=r"download of file://.*x.csv has SHA-256 .*, expected 0000"):
        fetch(source.as_uri(), tmp_path / "cache", "0000")
    assert list((tmp_path / "cache").iterdir()) == []
