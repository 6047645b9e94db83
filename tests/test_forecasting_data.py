"""Forecasting data: the ETT split, windows at split boundaries, scaling, CSV errors, downloads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from apps.common.data import fetch, sha256_of
from apps.common.errors import UserError
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
    with pytest.raises(UserError, match=r"--data.path: .*nowhere\.csv.* does not exist"):
        ForecastingData(path=str(tmp_path / "nowhere.csv"))


def _hourly(*rows: str, header: str = "date,a,b") -> str:
    """CSV text: ``header``, then one line per row, an hour apart from 2020-01-01 00:00."""
    return header + "\n" + "".join(f"2020-01-01 {h:02d}:00,{row}\n" for h, row in enumerate(rows))


BAD_CSV = {  # id: (text, options, the error)
    "missing-column": ("date,a\n2020-01-01 00:00,1\n", {"targets": ["b"]}, r"no column 'b' named by --data.targets"),
    "missing-input-column": (_hourly("1,2"), {"columns": ["a", "zz"]}, r"no column 'zz' named by --data.columns"),
    "missing-date-column": ("time,a\n2020-01-01 00:00,1\n", {}, r"no date column 'date'"),
    "not-a-number": (_hourly("1,2", "1,x2"), {}, r"line 3, column 'b': 'x2' is not a number"),
    "bad-date": ("date,a\n2020-01-01 00:00,1\nsoon,2\n", {}, r"line 3, column 'date': 'soon' is not a date"),
    "unsorted": ("date,a\n2020-01-01 01:00,1\n2020-01-01 00:00,2\n", {}, r"line 3, column 'date'.*is earlier than"),
    "duplicate": ("date,a\n2020-01-01 01:00,1\n2020-01-01 01:00,2\n", {}, r"line 3, column 'date'.*repeats the date"),
    "nan": ("date,a\n2020-01-01 00:00,1\n2020-01-01 01:00,\n", {}, r"line 3, column 'a': missing value"),
    # numbers a float32 model cannot take: never a NaN loss and a "best" checkpoint, whatever the nan_policy
    "inf": (_hourly("1,2", "1,inf"), {}, r"line 3, column 'b': 'inf' is not a finite number"),
    "minus-inf": (_hourly("-inf,2", "1,2"), {}, r"line 2, column 'a': '-inf' is not a finite number"),
    "infinity-filled": (_hourly("1,2", "Infinity,2"), {"nan_policy": "ffill"}, r"line 3, column 'a': 'Infinity' is"),
    "float32-overflow": (_hourly("1,2", "1,3", "1e39,2"), {}, r"line 4, column 'a': '1e39' is beyond float32's range"),
    "negative-overflow": (_hourly("1,-4e38", "1,3"), {}, r"line 2, column 'b': '-4e38' is beyond float32's range"),
    # lines with another number of fields than the header: the first data line too (pandas would take an index)
    "extra-field": (_hourly("1,2", "1,2,3"), {}, r"line 3 has 4 fields, the header has 3"),
    "extra-field-first-line": (_hourly("1,2,3", "1,2"), {}, r"line 2 has 4 fields, the header has 3"),
    "missing-field": (_hourly("1,2", "1", "1,2"), {}, r"line 3 has 2 fields, the header has 3"),
    "missing-field-filled": (_hourly("1,2", "1,2", "1"), {"nan_policy": "ffill"}, r"line 4 has 2 fields, the header"),
    "quoted-comma": (_hourly("1,2", '1,"2,5"'), {}, r"line 3, column 'b': '2,5' is not a number"),
    "repeated-header": (_hourly("1,2", header="date,a,a"), {}, r"the header names column 'a' twice"),
    "empty": ("", {}, r"the file is empty"),
    "header-only": ("date,a,b\n", {}, r"0 data row\(s\)"),
    # steps that differ from the series' own: a window across them would mix time scales
    "gap": (_hourly("1,2", "1,2", "1,2").replace("02:00", "07:00"), {},
            r"line 4, column 'date': '2020-01-01 07:00' comes 6h after line 3 \('2020-01-01 01:00'\); the step is "
            r"1h .*1 row\(s\) break it \(lines 4\).*--data.fill_gaps"),
    "half-step": (_hourly(*["1,2"] * 6).replace("02:00", "01:30"), {},
                  r"line 4, column 'date': '2020-01-01 01:30' comes 30min after .* the step is 1h .*lines 4, 5\)"),
}


@pytest.mark.parametrize(("text", "kwargs", "pattern"), BAD_CSV.values(), ids=BAD_CSV.keys())
def test_bad_csv_errors_name_file_line_and_column(tmp_path, text, kwargs, pattern):
    with pytest.raises(UserError, match=r"bad.csv: " + pattern):
        ForecastingData(path=_write(tmp_path / "bad.csv", text), **kwargs)


def test_bad_values_are_found_deep_in_a_long_file(ett_csv):
    frame = pd.read_csv(ett_csv)
    frame.loc[12345, "OT"] = np.inf
    frame.to_csv(ett_csv, index=False)
    with pytest.raises(UserError, match=r"ETTh1.csv: line 12347, column 'OT': 'inf' is not a finite number"):
        ForecastingData(path=str(ett_csv))


def test_a_file_that_is_not_text(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"date,a\n\xff\xfe\x00\n")
    with pytest.raises(UserError, match=r"binary.csv: not UTF-8 text"):
        ForecastingData(path=str(path))


def test_gaps_are_filled_only_when_asked(tmp_path):
    frame = pd.read_csv(write_series_csv(tmp_path / "gaps.csv", 300, ["a", "b"]))
    frame.drop(index=[100, 101, 102, 200]).to_csv(tmp_path / "gaps.csv", index=False)
    with pytest.raises(UserError, match=r"line 102, .* comes 4h after line 101 .* 2 row\(s\) break it \(lines 102, "
                                         r"199\)"):
        ForecastingData(path=str(tmp_path / "gaps.csv"), input_length=8, horizon=4)
    data = ForecastingData(path=str(tmp_path / "gaps.csv"), input_length=8, horizon=4, fill_gaps=True,
                           nan_policy="interpolate")
    assert len(data.series.dates) == 300 and (np.diff(data.series.dates) == np.timedelta64(1, "h")).all()
    np.testing.assert_allclose(data.series.values[100], (frame.loc[99, ["a", "b"]] * 3 + frame.loc[103, ["a", "b"]])
                               / 4)  # a quarter of the way along the 4-hour gap
    frame.loc[50, "date"] = "2016-07-03 02:30:00"
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    with pytest.raises(UserError, match=r"line 52, column 'date': '2016-07-03 02:30:00' is off the grid of step 1h"):
        ForecastingData(path=str(tmp_path / "gaps.csv"), fill_gaps=True, nan_policy="ffill")


def test_calendar_steps_are_regular_and_continue_into_the_future(tmp_path):
    path = write_series_csv(tmp_path / "monthly.csv", 60, ["a"], freq="MS")  # 28 to 31 days apart
    data = ForecastingData(path=str(path), input_length=6, horizon=3)
    assert data.series.step == "MS" and data.artefacts()["step"] == "MS"
    data.setup("predict")
    future = pd.to_datetime(data.splits["predict"][0]["time"].numpy())
    assert list(future) == list(pd.date_range("2021-07-01", periods=3, freq="MS"))
    with pytest.raises(UserError, match=r"monthly.csv: the ETT split counts months of hourly or finer rows; the "
                                        r"file's step is MS"):
        ForecastingData(path=str(path), split="ett")


def test_series_too_short_for_a_window(tmp_path):
    path = write_series_csv(tmp_path / "short.csv", 100, ["a"])
    with pytest.raises(UserError, match=r"short.csv: the train split has 70 rows.*input_length=96 \+ "
                                        r"--data.horizon=24 needs 120"):
        ForecastingData(path=str(path))
    with pytest.raises(UserError, match=r"short.csv: the val split has 10 rows \(lines 72-81\).* needs 12 rows"):
        ForecastingData(path=str(path), input_length=8, horizon=12)


@pytest.mark.parametrize("policy", ["ffill", "interpolate"])
def test_nan_fill_policies(tmp_path, policy):
    values = ["1", "", "3", *map(str, range(4, 11))]
    text = "date,a\n" + "".join(f"2020-01-01 {h:02d}:00,{v}\n" for h, v in enumerate(values))
    data = ForecastingData(path=_write(tmp_path / "gap.csv", text), input_length=1, horizon=1, nan_policy=policy)
    assert data.series.values[:3, 0].tolist() == [1.0, 1.0 if policy == "ffill" else 2.0, 3.0]


BAD_OPTIONS = {  # id: (options, the error); on the generated series
    "unknown-value": ({"nan_policy": "drop"}, r"--data.nan_policy is 'drop'; expected one of"),
    "input-length-0": ({"input_length": 0}, r"--data.input_length is 0; expected a positive number"),
    "horizon-0": ({"horizon": 0}, r"--data.horizon is 0; expected a positive number"),
    "horizon-negative": ({"horizon": -3}, r"--data.horizon is -3; expected a positive number"),
    "mase-season-0": ({"mase_season": 0}, r"--data.mase_season is 0"),
    "batch-size-0": ({"batch_size": 0}, r"--data.batch_size is 0"),
    "num-workers": ({"num_workers": -1}, r"--data.num_workers is -1; expected 0 or more"),
    "unknown-column": ({"columns": ["series_0", "load"]}, r"no column 'load' named by --data.columns"),
    "unknown-target": ({"targets": ["load"]}, r"no column 'load' named by --data.targets"),
    "fill-gaps-without-filling": ({"fill_gaps": True}, r"--data.fill_gaps .* --data.nan_policy=ffill or interpolate"),
    "ratios": ({"val_ratio": 0.5, "test_ratio": 0.5}, r"--data.val_ratio=0.5 and --data.test_ratio=0.5 must be"),
    "dates-missing": ({"split": "dates"}, r"--data.split=dates needs --data.val_start and --data.test_start"),
    "not-a-date": ({"split": "dates", "val_start": "soon", "test_start": "2020-05-01"},
                   r"--data.val_start='soon' is not a date"),
    "dates-reversed": ({"split": "dates", "val_start": "2020-05-01", "test_start": "2020-04-01"},
                       r"--data.val_start='2020-05-01' must come before --data.test_start='2020-04-01'"),
    "ett-too-short": ({"split": "ett"}, r"generated: the ETT split needs 20 months = 14400 rows, the file has 4000"),
    "window-too-long": ({"input_length": 300, "horizon": 500}, r"the val split has 400 rows .*needs 500 rows"),
}


@pytest.mark.parametrize(("kwargs", "pattern"), BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_bad_options_are_named(kwargs, pattern):
    with pytest.raises(UserError, match=pattern):
        ForecastingData(**kwargs)


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
