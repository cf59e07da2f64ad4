"""notebooks/eda.ipynb is committed without outputs and runs headlessly on a tiny project."""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT / "notebooks" / "eda.ipynb"


def _tiny_project_builder():
    """``write_tiny_project`` of tests/pipelines/test_eda.py (one synthetic data set for both tests)."""
    spec = importlib.util.spec_from_file_location("_eda_tiny_project", PROJECT / "tests/pipelines/test_eda.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    for name in ("trips", "split_manifest", "fast_cpu.model"):
        assert f'catalog.load("{name}")' in source


def _save_small_detector(root: Path):
    """A small detector saved where the catalog's ``fast_cpu.model`` is (its weights are random:
    the notebook shows how to load and use it; training is covered in tests/test_project_run.py)."""
    import pandas as pd

    from urban_detection.datasets import DetectorDataset, TripsDataset
    from urban_detection.detection.model import build_detector
    from urban_detection.detection.provenance import provenance
    from urban_detection.detection.trained import TrainedDetector
    from urban_detection.waymo.trips import data_fingerprint

    trips = TripsDataset(str(root / "data/02_intermediate/trips")).load()
    manifest = pd.read_parquet(root / "data/03_primary/split_manifest.parquet")
    cfg = {"name": "fast_cpu", "parent": None,
           "model": {"arch": "retinanet_resnet18_fpn_small", "image_size": 64, "weights": None},
           "optimizer": {"type": "adam"}, "augmentations": [], "train": {"steps": 0, "batch_size": 2}}
    detector = TrainedDetector(model=build_detector("retinanet_resnet18_fpn_small", image_size=64), config=cfg,
                               provenance=provenance(cfg, data_fingerprint(trips, manifest)), step=0)
    DetectorDataset(str(root / "data/06_models/fast_cpu/model")).save(detector)
    return detector


def _kedro_kernel(root: Path, monkeypatch) -> str:
    """Install the project's Kedro kernel (as `kedro jupyter lab` does) into a private Jupyter data dir."""
    data_dir = root / "jupyter_data"
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(data_dir))
    kedro = Path(sys.executable).with_name("kedro")
    subprocess.run([str(kedro), "jupyter", "setup"], cwd=root, check=True, capture_output=True,
                   env={**os.environ, "JUPYTER_DATA_DIR": str(data_dir)})
    spec = json.loads((data_dir / "kernels" / "kedro_urban_detection" / "kernel.json").read_text())
    assert spec["argv"][-2:] == ["--ext", "kedro.ipython"]
    return "kedro_urban_detection"


@pytest.mark.slow
def test_notebook_runs_headlessly_in_the_kedro_kernel(tmp_path, monkeypatch):
    """The kernel `kedro jupyter lab` starts: the Kedro extension loads the tiny project's catalog.

    (In a plain Python kernel the notebook's first cell loads the extension itself.)
    """
    from nbclient import NotebookClient

    tiny = _tiny_project_builder()
    root = tiny.write_tiny_project(tmp_path / "project")
    detector = _save_small_detector(root)
    (root / "notebooks").mkdir()
    shutil.copy(NOTEBOOK, root / "notebooks" / "eda.ipynb")
    kernel_name = _kedro_kernel(root, monkeypatch)
    nb = nbformat.read(root / "notebooks" / "eda.ipynb", as_version=4)
    # The kernel starts in the notebook's folder; the extension finds the tiny project above it.
    NotebookClient(nb, kernel_name=kernel_name, timeout=180,
                   resources={"metadata": {"path": str(root / "notebooks")}}).execute()

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # Kedro's rich pretty-printer colours text/plain
    n_frames = len(tiny.TRIPS) * tiny.FRAMES
    assert f"{n_frames:,} frames, {len(tiny.TRIPS)} trips" in text
    train = tiny.expected_totals("train")
    assert re.search(rf"train\s+{train['vehicle']}\s+{train['pedestrian']}\s+{train['cyclist']}\n", text)
    assert "original_study" in text and "Night" in text
    assert repr(detector) in text and f"trained on {detector.provenance['train_trips']} trips" in text
    pngs = [o.data["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 3  # the gallery, the density plot and the detector's example frame
    with Image.open(io.BytesIO(base64.b64decode(pngs[0]))) as gallery:
        assert gallery.width > 800  # a grid of at least 10 tiles
