"""Brightness in the frame index, and the lighting estimated from it for trips of unknown time of day."""

from __future__ import annotations

import io
import logging

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from urban_detection.waymo import ingest, lighting
from urban_detection.waymo import synthetic as syn
from urban_detection.waymo.example import decode_example
from urban_detection.waymo.lighting import DAY_FROM, NIGHT_BELOW, estimate_lighting


def _table(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["trip", "frame", "time_of_day", "brightness"])


def test_mean_luma_is_bt601_for_arrays_and_images():
    arr = np.zeros((6, 4, 3), np.uint8)
    arr[:] = (200, 100, 50)
    arr[:3] = (0, 0, 0)
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 2
    assert lighting.mean_luma(arr) == pytest.approx(expected)
    assert lighting.mean_luma(Image.fromarray(arr)) == pytest.approx(expected)
    assert lighting.mean_luma(Image.fromarray(arr).convert("RGBA")) == pytest.approx(expected)


def test_thresholds_and_spellings():
    assert lighting.lighting_from_brightness(NIGHT_BELOW - 0.01) == "Night"
    assert lighting.lighting_from_brightness(NIGHT_BELOW) == "Dawn/Dusk"
    assert lighting.lighting_from_brightness(DAY_FROM - 0.01) == "Dawn/Dusk"
    assert lighting.lighting_from_brightness(DAY_FROM) == "Day"
    assert 0 < NIGHT_BELOW < DAY_FROM < 255


def test_estimate_only_trips_without_a_known_time_of_day(caplog):
    table = _table(
        [
            ("known_dark", 0, "Day", 20.0),  # known: untouched however dark
            ("known_dark", 1, "Day", 25.0),
            ("night", 0, "unknown", 30.0),
            ("night", 1, "unknown", 40.0),
            ("night", 2, "unknown", 200.0),  # one bright frame: the median is still night
            ("dusk", 0, None, 70.0),
            ("dusk", 1, np.nan, 72.0),
            ("day", 0, "Unknown", 120.0),
            ("day", 1, "", 90.0),
            ("no_brightness", 0, "unknown", np.nan),
            ("partly", 0, "Night", 150.0),  # one frame knows: the trip is not estimated
            ("partly", 1, "unknown", 150.0),
        ]
    )
    before = table.copy()
    with caplog.at_level(logging.INFO):
        out = estimate_lighting(table)
    pd.testing.assert_frame_equal(table, before)  # input unchanged
    per_trip = out.groupby("trip").agg(tod=("time_of_day", list), est=("time_of_day_estimated", list))
    assert per_trip.loc["known_dark"].tolist() == [["Day", "Day"], [False, False]]
    assert per_trip.loc["night"].tolist() == [["Night"] * 3, [True] * 3]
    assert per_trip.loc["dusk"].tolist() == [["Dawn/Dusk"] * 2, [True] * 2]
    assert per_trip.loc["day"].tolist() == [["Day"] * 2, [True] * 2]
    assert per_trip.loc["no_brightness"].tolist() == [["unknown"], [False]]
    assert per_trip.loc["partly"].tolist() == [["Night", "unknown"], [False, False]]
    assert out["time_of_day_estimated"].dtype == bool
    assert any("no_brightness" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    # again on its own output: nothing changes, the flags stay
    pd.testing.assert_frame_equal(estimate_lighting(out), out)


def test_estimate_without_brightness_or_time_of_day_columns(caplog):
    no_tod = pd.DataFrame({"trip": ["a", "a", "b"], "brightness": [10.0, 12.0, 150.0]})
    out = estimate_lighting(no_tod)
    assert out["time_of_day"].tolist() == ["Night", "Night", "Day"] and out["time_of_day_estimated"].all()
    known = pd.DataFrame({"trip": ["a"], "time_of_day": ["Night"]})
    assert estimate_lighting(known)["time_of_day_estimated"].tolist() == [False]  # nothing to estimate
    unknown = pd.DataFrame({"trip": ["a"], "time_of_day": ["unknown"]})
    out = estimate_lighting(unknown)
    assert out["time_of_day"].tolist() == ["unknown"] and not out["time_of_day_estimated"].any()
    assert any("re-ingest" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def lit_trips(tmp_path_factory):
    """Tiny synthetic day, dusk and night trips (3 frames, 128x80), ingested."""
    root = tmp_path_factory.mktemp("lit")
    paths = [
        syn.write_trip(root / "in", i, 3, width=128, height=80, seed=2, cameras=("FRONT",), conditions=cond)
        for i, cond in enumerate(
            [
                {"time_of_day": "Day", "weather": "sunny"},
                {"time_of_day": "Dusk", "weather": "sunny"},
                {"time_of_day": "Night", "weather": "rain"},
            ]
        )
    ]
    res = ingest.ingest_files(paths, root / "out", workers=1, stride=1, size=(80, 128), progress=False)
    return paths, res


def test_ingest_writes_the_brightness_of_the_written_image(lit_trips):
    _, res = lit_trips
    df = res.index_frame()
    assert "brightness" in ingest.INDEX_COLUMNS and df["brightness"].dtype == np.float64
    import tensorflow as tf

    for trip in res.trips:
        for row, rec in zip(trip.rows, tf.data.TFRecordDataset(trip.output).as_numpy_iterator()):
            decoded = np.asarray(Image.open(io.BytesIO(decode_example(rec).image)).convert("RGB"))
            assert row["brightness"] == pytest.approx(lighting.mean_luma(decoded), abs=1.0)  # JPEG round trip


def test_synthetic_day_dusk_night_are_recognised(lit_trips):
    _, res = lit_trips
    df = res.index_frame()
    truth = df.groupby("trip")["time_of_day"].first()
    assert sorted(truth) == ["Day", "Dusk", "Night"]
    blind = df.assign(time_of_day="unknown")
    out = estimate_lighting(blind)
    assert out["time_of_day_estimated"].all()
    got = out.groupby("trip")["time_of_day"].first()
    expected = {"Day": "Day", "Dusk": "Dawn/Dusk", "Night": "Night"}
    assert {trip: got[trip] for trip in truth.index} == {trip: expected[t] for trip, t in truth.items()}
    # with the conditions known, nothing is estimated
    assert not estimate_lighting(df)["time_of_day_estimated"].any()
