import numpy as np
from matplotlib.figure import Figure

from urban_detection.detection.checkpoint_eval import MAP, MAP50
from urban_detection.detection.results_figure import best_step_of, results_figure, series, smooth

VAL_MAP, VAL_MAP50 = "val mAP (checkpoint subset)", "val mAP@.50IOU (checkpoint subset)"
TITLES = ["classification loss", "localization loss", "total loss", "learning rate", VAL_MAP, VAL_MAP50]


def _history(n=10, every=20):
    return [{"step": (i + 1) * every, "loss/classification": 1.0 / (i + 1), "loss/localization": 0.5 / (i + 1),
             "loss/regularization": 0.01, "loss/total": 1.51 / (i + 1), "learning_rate": 1e-3 * 0.9 ** i,
             "images_per_sec": 10.0} for i in range(n)]


def _val_history():
    return [
        {"step": 100, "loss/classification": 0.8, "loss/localization": 0.4, "loss/total": 1.2, MAP: 0.05, MAP50: 0.1},
        {"step": 200, "loss/classification": 0.6, "loss/localization": 0.3, "loss/total": 0.9, MAP: 0.12, MAP50: 0.2},
        {"step": 200 + 100, "loss/classification": 0.7, "loss/localization": 0.3, "loss/total": 1.0, MAP: 0.10,
         MAP50: 0.25},
    ]


def _by_title(fig):
    return {ax.get_title(): ax for ax in fig.axes}


def _labels(ax):
    return [line.get_label() for line in ax.lines]


def test_panels_lines_and_best_step():
    history, val = _history(), _val_history()
    fig = results_figure(history, val, title="fast_cpu")
    assert isinstance(fig, Figure)
    axes = _by_title(fig)
    assert list(axes) == TITLES
    for title in TITLES[:3]:
        assert _labels(axes[title]) == ["train", "train (smoothed)", "val", "best step 200"]
    cls = axes["classification loss"]
    np.testing.assert_allclose(cls.lines[0].get_xdata(), [h["step"] for h in history])
    np.testing.assert_allclose(cls.lines[0].get_ydata(), [h["loss/classification"] for h in history])
    np.testing.assert_allclose(cls.lines[2].get_xdata(), [100, 200, 300])
    np.testing.assert_allclose(cls.lines[2].get_ydata(), [0.8, 0.6, 0.7])
    assert _labels(axes["learning rate"]) == ["train", "best step 200"]
    # best by mAP is step 200 (not 300, which has the best mAP@.50IOU): a star on both metric panels
    assert _labels(axes[VAL_MAP]) == ["val", "best step 200", "best 0.1200"]
    star = axes[VAL_MAP50].lines[-1]
    assert list(star.get_xdata()) == [200] and list(star.get_ydata()) == [0.2]
    assert list(axes[VAL_MAP].lines[1].get_xdata()) == [200, 200]  # the vertical best-step line
    assert fig._suptitle.get_text() == "fast_cpu"


def test_explicit_best_step_and_min_mode():
    val = _val_history()
    assert best_step_of(val) == 200
    assert best_step_of(val, MAP50) == 300
    assert best_step_of(val, "loss/total", "min") == 200
    fig = results_figure(_history(), val, best_step=300)
    assert "best step 300" in _labels(_by_title(fig)["total loss"])


def test_empty_val_history_and_empty_history():
    fig = results_figure(_history(3), [])
    axes = _by_title(fig)
    assert _labels(axes["total loss"]) == ["train"]  # too few points to smooth
    for title in (VAL_MAP, VAL_MAP50):
        assert len(axes[title].lines) == 0 and axes[title].texts[0].get_text() == "no validation yet"
    fig = results_figure([], [])
    assert all(len(ax.lines) == 0 for ax in fig.axes) and len(fig.axes) == 6
    assert _by_title(fig)["total loss"].texts[0].get_text() == "no data"


def test_val_losses_without_coco_metrics_and_missing_values():
    val = [{"step": 10, "loss/total": 1.0}, {"step": 20, "loss/total": 0.5, MAP: float("nan")}]
    fig = results_figure([], val)
    axes = _by_title(fig)
    assert _labels(axes["total loss"]) == ["val"]
    assert axes["classification loss"].texts[0].get_text() == "no data"
    assert len(axes[VAL_MAP].lines) == 0  # NaN is not drawn, and no best step without a value
    steps, values = series(val, MAP)
    assert len(steps) == 0 and len(values) == 0


def test_smooth_keeps_length_and_flattens_noise():
    rng = np.random.default_rng(0)
    values = 1.0 + rng.normal(0, 0.5, 50)
    out = smooth(values)
    assert out.shape == values.shape and out.std() < 0.7 * values.std()
    np.testing.assert_allclose(smooth(np.array([1.0, 2.0])), [1.0, 2.0])
