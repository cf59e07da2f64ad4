import numpy as np
import pytest
from matplotlib.figure import Figure

from urban_detection.detection.confusion import BACKGROUND, confusion_figure, confusion_matrix, row_normalised

V, P, C = 1, 2, 4  # label ids: vehicle, pedestrian, cyclist
A = [0.1, 0.1, 0.3, 0.3]
B = [0.5, 0.5, 0.7, 0.6]
D = [0.7, 0.1, 0.9, 0.3]
NOWHERE = [0.0, 0.7, 0.1, 0.9]


def _gt(image_id, boxes, labels):
    return {"image_id": image_id, "source_id": f"t/{image_id}", "height": 100, "width": 200,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int32)}


def _det(image_id, boxes, labels, scores):
    return {"image_id": image_id, "source_id": f"t/{image_id}", "height": 100, "width": 200,
            "boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "labels": np.asarray(labels, np.int32),
            "scores": np.asarray(scores, np.float32)}


def test_known_answers():
    gt = [_gt(1, [A, B, D], [V, P, C]), _gt(2, [], []), _gt(3, [A], [V])]
    dets = [
        _det(1, [A, B, NOWHERE, D], [V, V, C, V], [0.9, 0.8, 0.6, 0.2]),  # correct, wrong class, FP, below threshold
        _det(2, [B], [P], [0.5]),  # FP on a frame without objects
    ]  # frame 3 has no detection record: its vehicle is missed
    m = confusion_matrix(gt, dets, score_threshold=0.3)
    expected = np.array([
        # vehicle pedestrian cyclist background   (predicted)
        [1, 0, 0, 1],  # vehicle: A found, frame 3's missed
        [1, 0, 0, 0],  # pedestrian: B taken for a vehicle
        [0, 0, 0, 1],  # cyclist: D missed (its detection is below the threshold)
        [0, 1, 1, 0],  # background: the pedestrian of frame 2, the cyclist on nothing
    ])
    np.testing.assert_array_equal(m, expected)
    assert m.dtype == np.int64
    # a lower threshold lets the 0.2 vehicle on D count: a cyclist taken for a vehicle
    low = confusion_matrix(gt, dets, score_threshold=0.1)
    assert low[2].tolist() == [1, 0, 0, 0]
    # every ground-truth box is in exactly one cell of its row
    assert m[:3].sum() == 4 and low[:3].sum() == 4


def test_score_first_matching_and_iou_threshold():
    gt = [_gt(1, [A], [V])]
    shifted = [0.12, 0.1, 0.32, 0.3]  # IoU with A ~0.82
    # the higher-scored detection takes the box even with less overlap; the other one is a false positive
    m = confusion_matrix(gt, [_det(1, [A, shifted], [P, V], [0.5, 0.9])], score_threshold=0.3)
    assert m[0].tolist() == [1, 0, 0, 0] and m[3].tolist() == [0, 1, 0, 0]
    # a score equal to the threshold counts
    m = confusion_matrix(gt, [_det(1, [A], [V], [0.3])], score_threshold=0.3)
    assert m[0].tolist() == [1, 0, 0, 0]
    # IoU below the threshold: a miss and a false positive
    half = [0.1, 0.1, 0.3, 0.18]  # IoU 0.4
    m = confusion_matrix(gt, [_det(1, [half], [V], [0.9])], score_threshold=0.3)
    assert m[0].tolist() == [0, 0, 0, 1] and m[3].tolist() == [1, 0, 0, 0]
    m = confusion_matrix(gt, [_det(1, [half], [V], [0.9])], score_threshold=0.3, iou_threshold=0.35)
    assert m[0].tolist() == [1, 0, 0, 0] and m[3].sum() == 0


def test_unknown_labels_and_bad_input(caplog):
    gt = [_gt(1, [A, B], [V, 3])]  # label 3 (sign) is not a class here
    m = confusion_matrix(gt, [_det(1, [B, A], [3, V], [0.9, 0.8])], score_threshold=0.3)
    assert m.sum() == 1 and m[0, 0] == 1
    assert "unknown label" in caplog.text
    with pytest.raises(ValueError, match="two detection records"):
        confusion_matrix(gt, [_det(1, [], [], []), _det(1, [], [], [])], 0.3)
    with pytest.raises(ValueError, match="boxes"):
        confusion_matrix([_gt(1, [A], [V, P])], [], 0.3)


def test_row_normalised():
    m = np.array([[3, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 2], [2, 2, 0, 0]])
    n = row_normalised(m)
    np.testing.assert_allclose(n[0], [0.75, 0.25, 0, 0])
    assert np.isnan(n[1]).all()
    np.testing.assert_allclose(n[2], [0.25, 0, 0.25, 0.5])
    np.testing.assert_allclose(np.nansum(n, axis=1), [1, 0, 1, 1])


def test_figure_counts_and_normalised_panels():
    m = np.array([[5, 1, 0, 2], [0, 3, 0, 1], [0, 0, 0, 0], [4, 0, 1, 0]])
    fig = confusion_figure(m, ["vehicle", "pedestrian", "cyclist"], title="test split at score 0.3")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    counts, norm = fig.axes
    assert counts.get_title() == "counts" and norm.get_title().startswith("row-normalised")
    labels = ["vehicle", "pedestrian", "cyclist", BACKGROUND]
    assert [t.get_text() for t in counts.get_xticklabels()] == labels
    assert [t.get_text() for t in norm.get_yticklabels()] == labels
    assert sorted(t.get_text() for t in counts.texts) == sorted(["5", "1", "2", "3", "1", "4", "1"])
    assert "0.62" in [t.get_text() for t in norm.texts]  # 5 of the 8 vehicles
    assert counts.get_xlabel() == "predicted" and counts.get_ylabel() == "ground truth"
    with pytest.raises(ValueError, match="does not fit"):
        confusion_figure(m, ["vehicle", "pedestrian"])
