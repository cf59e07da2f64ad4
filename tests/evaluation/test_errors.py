"""detection/errors.py: per-frame misses and false positives, the worst frames (one per trip first), the gallery."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from urban_detection.detection.errors import error_gallery, frame_errors, worst_frames

from .helpers import IMAGE_SIZE, TRIP_SEEDS, frame


def records(tiny_data):
    """Ground truth of the val and test trips, and detections that are the boxes themselves except:
    test frames 1 and 3 miss both objects, val frame 0 misses one, val frame 3 has three false
    positives and test frame 0 one."""
    gts, dets = [], []
    for trip in ("trip_val", "trip_test"):
        for i, seed in enumerate(TRIP_SEEDS[trip][1]):
            _, boxes, labels = frame(seed)
            image_id = len(gts) + 1
            gts.append({"image_id": image_id, "source_id": f"{trip}/{i * 10}", "path": tiny_data["paths"][trip],
                        "height": IMAGE_SIZE, "width": IMAGE_SIZE, "boxes": boxes, "labels": labels})
            keep = {("trip_test", 1): 0, ("trip_test", 3): 0, ("trip_val", 0): 1}.get((trip, i), len(labels))
            d_boxes, d_labels = boxes[:keep], labels[:keep]
            extra = {("trip_val", 3): 3, ("trip_test", 0): 1}.get((trip, i), 0)
            far = np.array([[0.0, 0.0, 0.01, 0.01]] * extra, np.float32).reshape(-1, 4)
            dets.append({"image_id": image_id, "boxes": np.concatenate([d_boxes, far]),
                         "labels": np.concatenate([d_labels, np.ones(extra, np.int32)]),
                         "scores": np.full(keep + extra, 0.9, np.float32)})
    return gts, dets


def test_frame_errors_count_misses_and_false_positives_per_frame(tiny_data):
    gts, dets = records(tiny_data)
    table = frame_errors(gts, dets, score_threshold=0.3)
    assert len(table) == 9 and set(table["trip"]) == {"trip_val", "trip_test"}
    row = table.set_index("source_id")
    assert row.loc["trip_test/10", "missed"] == 2 and row.loc["trip_test/10", "detections"] == 0
    assert row.loc["trip_val/0", "missed"] == 1 and row.loc["trip_val/0", "true_positives"] == 1
    assert row.loc["trip_val/30", "false_positives"] == 3 and row.loc["trip_val/30", "missed"] == 0
    assert table["missed"].sum() == 5 and table["false_positives"].sum() == 4 and table["confused"].sum() == 0
    # above every score, nothing is kept: every object is missed and nothing is a false positive
    high = frame_errors(gts, dets, score_threshold=0.95)
    assert (high["missed"] == high["ground_truth"]).all() and high["false_positives"].sum() == 0


def test_worst_frames_take_one_frame_per_trip_first(tiny_data):
    table = frame_errors(*records(tiny_data), score_threshold=0.3)
    missed = worst_frames(table, 3, "missed")
    # test frames 1 and 3 miss two objects each, val frame 0 one: val's frame comes before test's second
    assert list(missed["source_id"]) == ["trip_test/10", "trip_val/0", "trip_test/30"]
    assert list(worst_frames(table, 2, "missed")["source_id"]) == ["trip_test/10", "trip_val/0"]
    assert list(worst_frames(table, 5, "false_positives")["source_id"]) == ["trip_val/30", "trip_test/0"]
    with pytest.raises(ValueError, match="use one of"):
        worst_frames(table, 2, "confused")


def test_the_gallery_draws_the_worst_frames_with_captions(tiny_data):
    gts, dets = records(tiny_data)
    conditions = {"trip_test": {"time_of_day": "Night", "weather": "rain", "time_of_day_estimated": True}}
    figures = error_gallery(gts, dets, 0.3, count=2, conditions=conditions, title_prefix="exp test: ")
    assert set(figures) == {"errors_missed_1.png", "errors_missed_2.png", "errors_false_positives_1.png",
                            "errors_false_positives_2.png"}
    assert all(isinstance(f, Figure) for f in figures.values())
    title = figures["errors_missed_1.png"]._suptitle.get_text()
    assert title.startswith("exp test: missed: trip trip_test, frame trip_test/10 (Night (estimated), rain)")
    assert "2 objects, 0 detections: 2 missed, 0 false positives" in title
    assert "(Night" not in figures["errors_missed_2.png"]._suptitle.get_text()  # val: no conditions given
    assert "3 false positives" in figures["errors_false_positives_1.png"]._suptitle.get_text()
