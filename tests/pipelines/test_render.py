"""The render node refuses an export that the current config and data did not make (as evaluate does),
and its pipeline hands it the experiment's config, trips and split manifest as catalog inputs."""
from __future__ import annotations

import copy

import pandas as pd
import pytest

from urban_detection.datasets.detector import export_info
from urban_detection.detection.provenance import StaleModelError, model_provenance
from urban_detection.detection.trained import TrainedDetector
from urban_detection.pipelines import selection
from urban_detection.pipelines.render import create_pipeline as render_pipeline
from urban_detection.pipelines.render.nodes import make_render_node
from urban_detection.waymo.trips import Trips

NAME = "fast_cpu"
CONFIG = {
    "name": NAME, "parent": None,
    "model": {"arch": "retinanet_resnet18_fpn_small", "image_size": 64, "weights": None},
    "optimizer": {"type": "adam", "learning_rate": 0.001}, "augmentations": [],
    "train": {"batch_size": 2, "steps": 10, "checkpoint_every": 5, "best_metric": "DetectionBoxes_Precision/mAP"},
}
MANIFEST = pd.DataFrame({"trip": ["a", "v", "t"], "split": ["train", "val", "test"]})
PARAMS = {"trip": "not_a_trip"}  # a current export gets past the check and stops at this (wrong) trip


class Export:
    """An export as the render node gets it: only ``.info`` (``export_info.json``) is read before the check."""

    def __init__(self, info: dict):
        self.info = info


def trips(val_hash: str = "v") -> Trips:
    index = pd.DataFrame({"trip": ["a", "v", "t"], "frame": [0, 0, 0], "image_hash": ["a", val_hash, "t"],
                          "path": ["/t/a.tfrecord", "/t/v.tfrecord", "/t/t.tfrecord"]})
    return Trips(root="/t", index=index)


def exported(config: dict = CONFIG, data: Trips | None = None) -> Export:
    record = model_provenance(config, data or trips(), MANIFEST)
    return Export(export_info(TrainedDetector(model=None, config=config, provenance=record, step=10)))


def render(export: Export, config: dict = CONFIG, data: Trips | None = None):
    return make_render_node(NAME)(export, config, data or trips(), MANIFEST, PARAMS, "/no/source")


def test_render_refuses_a_stale_export():
    with pytest.raises(ValueError, match="render.trip 'not_a_trip' is not in the split manifest"):
        render(exported())  # current: the check passes
    bigger = copy.deepcopy(CONFIG)
    bigger["model"]["image_size"] = 96
    with pytest.raises(StaleModelError, match=r"the exported fast_cpu model \(\w{12}, step 10\) does not match the "
                                              r"current run: the config changed \(model.image_size: 64 -> 96\)\. "
                                              r"Train and export it first: kedro run --pipelines=train,evaluate"):
        render(exported(), config=bigger)
    with pytest.raises(StaleModelError, match=r"the selection frames changed \(val trips: 1 trips / 1 frames then"):
        render(exported(), data=trips(val_hash="other pixels"))
    by_loss = {**CONFIG, "train": {**CONFIG["train"], "best_metric": "loss/total"}}
    with pytest.raises(StaleModelError, match=r"the checkpoint selection changed \(train.best_metric: "):
        render(exported(), config=by_loss)


def test_render_refuses_an_export_without_provenance():
    old = {k: v for k, v in exported().info.items() if k not in ("provenance", "config")}
    with pytest.raises(StaleModelError, match="records no provenance"):
        render(Export(old))


def test_the_render_node_gets_the_config_trips_and_manifest_from_the_catalog():
    selection.configure({"experiments": [NAME], "catalog": {NAME: {}}})
    try:
        (node,) = render_pipeline().nodes
    finally:
        selection.configure(None)
        selection._train_params = None
    assert node.inputs[:4] == [f"{NAME}.export", f"{NAME}.config", "trips", "split_manifest"]
