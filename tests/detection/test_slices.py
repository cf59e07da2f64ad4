"""detection/slices.py: trip slices by condition (estimated lighting marked), slice rows with intervals."""
import math

import pandas as pd

from urban_detection.detection.slices import HEADLINE, slice_rows, trip_slices

CONDITIONS = pd.DataFrame({
    "trip": ["a", "b", "c", "d"],
    "time_of_day": ["Day", "Night", "Day", None],
    "weather": ["sunny", "rain", "rain", "sunny"],
    "time_of_day_estimated": [False, True, False, False],
})


def test_trips_are_grouped_by_each_condition_and_estimated_lighting_is_marked():
    assert trip_slices(CONDITIONS) == {
        "time_of_day=Day": ["a", "c"],
        "time_of_day=Night (estimated)": ["b"],
        "time_of_day=unknown": ["d"],
        "weather=rain": ["b", "c"],
        "weather=sunny": ["a", "d"],
    }
    assert trip_slices(CONDITIONS.drop(columns=["time_of_day_estimated"]))["time_of_day=Night"] == ["b"]


def test_slice_rows_hold_the_whole_split_each_slice_and_the_coco_sizes():
    mAP50 = HEADLINE[1]
    ci = {mAP50: {"low": 0.4, "high": 0.6}, f"{mAP50} (small)": {"low": 0.1, "high": 0.3}}
    boot = {"trips": ["a", "b", "c"], "intervals": ci,
            "slices": {"weather=rain": {"trips": ["b", "c"], "metrics": {mAP50: 0.45},
                                         "intervals": {mAP50: {"low": 0.3, "high": 0.55}}}}}
    rows = slice_rows("test", {mAP50: 0.5, f"{mAP50} (small)": 0.2}, boot, {"a": 10, "b": 5, "c": 5})
    assert [r["slice"] for r in rows] == ["all", "weather=rain", "size=small", "size=medium", "size=large"]
    assert rows[0]["frames"] == 20 and rows[1]["trips"] == 2 and rows[1]["frames"] == 10
    assert (rows[1][mAP50], rows[1][f"{mAP50} ci95_low"], rows[1][f"{mAP50} ci95_high"]) == (0.45, 0.3, 0.55)
    assert (rows[2][mAP50], rows[2][f"{mAP50} ci95_high"]) == (0.2, 0.3)
    assert rows[3][mAP50] is None and rows[3][f"{mAP50} ci95_low"] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in rows[0].values())


def test_figures_draw_a_point_lying_a_rounding_outside_its_interval():
    """CI once failed here: a draw-invariant metric had low = point + 5e-20, a negative whisker."""
    from urban_detection.detection.intervals import error_bar_extents
    from urban_detection.detection.report import paired_difference_figure
    from urban_detection.detection.slices import slice_figure

    point = 0.00035518
    extents = error_bar_extents([point, 0.5, float("nan")], [point + 5e-20, 0.55, float("nan")], [point - 5e-20, 0.6, 0.7])
    assert extents.shape == (2, 3) and (extents >= 0).all()
    assert extents[:, 0].tolist() == [0.0, 0.0] and extents[:, 1].tolist() == [0.0, 0.6 - 0.5]
    m50, m = HEADLINE[1], HEADLINE[0]
    table = pd.DataFrame([{"slice": s, "trips": 2, m50: point, f"{m50} ci95_low": point + 5e-20,
                           f"{m50} ci95_high": point - 5e-20, m: None, f"{m} ci95_low": None, f"{m} ci95_high": None}
                          for s in ("all", "weather=rain")])
    fig = slice_figure(table, metrics=[m, m50])
    assert len(fig.axes) == 2
    paired = pd.DataFrame([{"experiment": "b", "metric": m50, "difference": 0.01, "ci95_low": 0.0100001,
                            "ci95_high": 0.02, "verdict": "better"}])
    assert len(paired_difference_figure(paired).axes) == 1
