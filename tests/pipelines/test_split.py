import logging

import numpy as np
import pandas as pd
import pytest

from urban_detection.pipelines.split.nodes import assign_splits, verify_split
from urban_detection.waymo.trips import SplitLeakError
from urban_detection.waymo.trips import Trips

PARAMS = {"ratios": {"train": 0.75, "val": 0.15, "test": 0.10}, "seed": 3,
          "stratify_by": ["time_of_day", "weather"], "min_trips_to_stratify": 10}


def make_index(n_trips=40, frames=5, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n_trips):
        tod = "Night" if t % 8 == 0 else ("Dawn" if t % 8 == 1 else "Day")
        weather = "rain" if t % 5 == 0 else "sunny"
        for f in range(frames):
            rows.append(dict(trip=f"trip{t:03d}", frame=f * 10, time_of_day=tod, weather=weather,
                             n_vehicle=int(rng.integers(1, 9)), n_pedestrian=int(rng.integers(0, 4)),
                             n_cyclist=1, image_hash=f"h{t}-{f}"))
    return Trips(root="/nonexistent", index=pd.DataFrame(rows))


def test_split_is_trip_level_with_requested_ratios_and_strata():
    index = make_index()
    manifest = assign_splits(index, PARAMS)
    assert manifest.trip.is_unique and len(manifest) == 40
    counts = manifest.split.value_counts().to_dict()
    assert counts == {"train": 30, "val": 6, "test": 4}
    # night (5 trips) and rain (8 trips) reach every split
    for col, value in (("time_of_day", "Night"), ("weather", "rain")):
        assert set(manifest.loc[manifest[col] == value, "split"]) == {"train", "val", "test"}
    verified, report = verify_split(manifest, index)
    pd.testing.assert_frame_equal(verified, manifest)  # the verified manifest is the proposal, unchanged
    assert sum(s["frames"] for s in report["splits"].values()) == len(index.index)
    assert report["splits"]["test"]["objects"]["cyclist"] == 4 * 5


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    index = make_index()
    a, b = assign_splits(index, PARAMS), assign_splits(index, PARAMS)
    pd.testing.assert_frame_equal(a, b)
    c = assign_splits(index, {**PARAMS, "seed": 4})
    assert not a.split.equals(c.split)


def test_every_split_gets_a_trip_even_with_few_trips():
    manifest = assign_splits(make_index(n_trips=3), PARAMS)
    assert sorted(manifest.split) == ["test", "train", "val"]
    with pytest.raises(ValueError, match="cannot fill"):
        assign_splits(make_index(n_trips=2), PARAMS)


def test_trip_in_two_splits_is_a_leak_naming_trip_and_splits():
    index = make_index(n_trips=12)
    manifest = assign_splits(index, PARAMS)
    trip = manifest.trip[0]
    other = "val" if manifest.split[0] != "val" else "train"
    bad = pd.concat([manifest, pd.DataFrame([{"trip": trip, "split": other}])], ignore_index=True)
    with pytest.raises(SplitLeakError, match="leak") as err:
        verify_split(bad, index)
    assert trip in str(err.value) and other in str(err.value)


def _rename_copy(trips: Trips, a: str, b: str) -> Trips:
    """Trip ``b``'s frames replaced by a copy of trip ``a``'s (one trip under two names)."""
    index = trips.index
    copy = index[index.trip == a].copy()
    copy["trip"] = b
    return Trips(root=trips.root, index=pd.concat([index[index.trip != b], copy], ignore_index=True))


@pytest.mark.parametrize("other_split", ["test", "train"])
def test_same_images_under_two_trip_names_is_a_leak(other_split):
    """Across splits it leaks test frames into training; within one split it counts a trip twice."""
    trips = make_index(n_trips=12)
    manifest = assign_splits(trips, PARAMS)
    train = manifest[manifest.split == "train"].trip
    a, b = train.iloc[0], (manifest[manifest.split == "test"].trip.iloc[0] if other_split == "test" else train.iloc[1])
    with pytest.raises(SplitLeakError, match="leak") as err:
        verify_split(manifest, _rename_copy(trips, a, b))
    assert a in str(err.value) and b in str(err.value) and other_split in str(err.value)


def test_missing_class_warns_and_is_reported(caplog):
    index = make_index(n_trips=12)
    manifest = assign_splits(index, PARAMS)
    test_trips = manifest[manifest.split == "test"].trip
    index.index.loc[index.index.trip.isin(test_trips), "n_cyclist"] = 0
    with caplog.at_level(logging.WARNING):
        _, report = verify_split(manifest, index)
    assert "class 'cyclist' is missing from split 'test'" in report["warnings"]
    assert "cyclist" in caplog.text


def test_empty_split_and_unassigned_trip_fail():
    index = make_index(n_trips=12)
    manifest = assign_splits(index, PARAMS)
    with pytest.raises(ValueError, match="empty"):
        verify_split(manifest.assign(split=manifest.split.replace("val", "train")), index)
    with pytest.raises(ValueError, match="missing from the split manifest"):
        verify_split(manifest.iloc[1:], index)
