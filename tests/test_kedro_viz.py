"""Kedro-Viz reads at a glance: what `kedro viz build --include-previews` writes for a tiny project that
ran ingest, split, train, evaluate and render (the JSON the Kedro-Viz page reads): the EDA nodes are
one namespace, every dataset has a layer, the folders nodes fill are their outputs, the user's raw
data is a dataset, and the custom datasets have previews."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from server_helpers import free_port, group_members, http, stop_server

from kedro_project import TINY_PARAMS, make_project, run_kedro

pytestmark = pytest.mark.slow

LAYERS = ["raw", "intermediate", "primary", "model_input", "models", "model_output", "reporting"]
EXPERIMENT = "fast_cpu"  # conf/base's train.experiments, which `kedro viz` (no --params) draws
BUILD_TIMEOUT = 600  # s, on a busy 2-core machine
CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium")) if p and Path(p).is_file()), None)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-proxy-server"]


@pytest.fixture(scope="module")
def viz(tmp_path_factory) -> dict:
    """The project after a tiny run, and Kedro-Viz's API responses for it: ``main`` (the graph of
    ``__default__``), ``nodes`` (name -> node), ``metadata(name)`` (a dataset's side panel), the build log."""
    project = make_project(tmp_path_factory.mktemp("viz") / "project")
    cwd = os.getcwd()
    os.chdir(project)  # catalog paths and mlflow.db are relative
    try:
        run_kedro(project, ["train", "evaluate", "render"], json.loads(json.dumps(TINY_PARAMS)))
    finally:
        os.chdir(cwd)
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "kedro", "viz", "build", "--include-previews"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    log = done.stdout + done.stderr
    api = project / "build" / "api"
    assert done.returncode == 0 and (api / "main").is_file(), log[-3000:]
    main = json.loads((api / "main").read_text())
    nodes = {n["name"]: n for n in main["nodes"] if n["type"] == "data"}
    nodes.update({n["id"]: n for n in main["nodes"]})

    def metadata(name: str) -> dict:
        return json.loads((api / "nodes" / nodes[name]["id"]).read_text())

    return {"project": project, "build": api.parent, "main": main, "nodes": nodes, "metadata": metadata, "log": log}


def tasks_filling(main: dict, dataset_id: str) -> set[str]:
    """Full names of the task nodes with an edge into the dataset."""
    ids = {e["source"] for e in main["edges"] if e["target"] == dataset_id}
    return {n["name"] for n in main["nodes"] if n["id"] in ids and n["type"] == "task"}


def tasks_reading(main: dict, dataset_id: str) -> set[str]:
    ids = {e["target"] for e in main["edges"] if e["source"] == dataset_id}
    return {n["name"] for n in main["nodes"] if n["id"] in ids and n["type"] == "task"}


def test_the_eda_nodes_are_one_namespace(viz):
    from urban_detection.pipelines.eda import create_pipeline

    main = viz["main"]
    eda = {n.name for n in create_pipeline().nodes}
    assert len(eda) == 15 and all(name.startswith("eda.") for name in eda)
    tasks = [n for n in main["nodes"] if n["type"] == "task"]
    in_eda = {n["name"] for n in tasks if n.get("modular_pipelines") == ["eda"]}
    assert len(in_eda) == len(eda)  # Kedro-Viz shows the names without their namespace
    assert in_eda == {name.split(".", 1)[1] for name in eda}
    block = main["modular_pipelines"]["eda"]
    assert {c["id"] for c in block["children"] if c["type"] == "task"} == {
        n["id"] for n in tasks if n.get("modular_pipelines") == ["eda"]}
    assert {"eda", EXPERIMENT} <= set(main["modular_pipelines"])
    assert not [n["name"] for n in tasks if n.get("modular_pipelines") == [EXPERIMENT] and n["name"] in in_eda]
    # the datasets kept their catalog names (notebooks and the README load them by these)
    assert {"eda_class_counts", "eda_gallery", "eda_frames"} <= set(viz["nodes"])


def test_every_dataset_is_in_a_layer_and_the_layers_are_in_order(viz):
    main = viz["main"]
    assert main["layers"] == LAYERS  # a cycle among layers would make Kedro-Viz drop them all
    data = [n for n in main["nodes"] if n["type"] == "data"]
    assert len(data) > 40
    assert [n["name"] for n in data if n.get("layer") not in LAYERS] == []
    layer = {n["name"]: n["layer"] for n in data}
    assert layer["ingest_source"] == layer["synthetic_store"] == "raw"
    assert layer["trips"] == "intermediate" and layer["split_manifest"] == "primary"
    assert layer[f"{EXPERIMENT}.config"] == "model_input" and layer[f"{EXPERIMENT}.model"] == "models"
    assert layer[f"{EXPERIMENT}.coco_files"] == "model_output" and layer[f"{EXPERIMENT}.metrics"] == "reporting"
    assert "Layers visualisation is disabled" not in viz["log"]


def test_the_folders_nodes_fill_are_their_outputs_and_the_raw_data_is_a_dataset(viz):
    main, nodes = viz["main"], viz["nodes"]
    for folder, filler in (("synthetic_store", "synthesize_trips"), ("trips", "ingest_trips"),
                           ("eval_trips", "ingest_eval_trips")):
        assert tasks_filling(main, nodes[folder]["id"]) == {filler}, folder
        assert filler not in tasks_reading(main, nodes[folder]["id"]), folder
    names = {n["name"] for n in main["nodes"]}
    assert not {"trip_store", "eval_trip_store", "synthetic_manifest"} & names  # no folder handed in as an input
    source = nodes["ingest_source"]
    assert tasks_filling(main, source["id"]) == set()  # the user's data: read, never written
    assert {"synthesize_trips", "ingest_trips", "ingest_eval_trips", "render"} <= tasks_reading(main, source["id"])
    assert viz["metadata"]("ingest_source")["filepath"].endswith("data/01_raw/synthetic")


def _png(preview: str):
    from PIL import Image

    raw = base64.b64decode(preview)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(raw))


def test_the_custom_datasets_and_the_evaluation_figures_have_previews(viz):
    meta = viz["metadata"]
    trips = meta("trips")
    assert trips["preview_type"] == "TablePreview"
    assert {"trip", "frame", "time_of_day", "n_vehicle", "path"} <= set(trips["preview"]["columns"])
    assert len(trips["preview"]["data"]) == 10 and trips["preview"]["data"][0][1] == 0  # frame 0 of the first trip

    model = meta(f"{EXPERIMENT}.model")
    assert model["preview_type"] == "JSONPreview"
    doc = json.loads(model["preview"])
    assert doc["repr"].startswith(f"TrainedDetector({EXPERIMENT}: retinanet_resnet18_fpn_small at 64 px, step ")
    assert doc["provenance"]["fingerprint"].startswith(doc["repr"].split("fingerprint ")[1].rstrip(")"))
    assert doc["mlflow_run_id"] and doc["best"]["metric"] == "DetectionBoxes_Precision/mAP@.50IOU"

    export = json.loads(meta(f"{EXPERIMENT}.export")["preview"])
    assert export["fingerprint"] == doc["provenance"]["fingerprint"] and export["MB"]["model.keras"] > 0

    video = meta(f"{EXPERIMENT}.video")
    assert video["preview_type"] == "ImagePreview"
    poster = _png(video["preview"])
    assert poster.size[0] > 0 and max(poster.size) <= 640

    figures = meta(f"{EXPERIMENT}.evaluation_figures")
    assert figures["preview_type"] == "ImagePreview"
    sheet = _png(figures["preview"])
    assert sheet.size[0] > 480 and sheet.size[1] > 300  # 2 x 2 tiles: PR curves, confusion, slices, an example

    for name in ("ingest_source", "synthetic_store", "eval_trips", f"{EXPERIMENT}.checkpoints"):
        assert meta(name)["preview_type"] == "TablePreview" and meta(name)["preview"]["data"], name
    assert "IsADirectoryError" not in viz["log"]
    for name in ("trips", f"{EXPERIMENT}.model", f"{EXPERIMENT}.video", f"{EXPERIMENT}.evaluation_figures"):
        assert f"'{name}' could not be previewed" not in viz["log"]


def test_the_page_shows_the_layers_and_the_namespaces_in_chromium(viz):
    """The built site (what `kedro viz build` makes to be hosted as static files) in a real headless
    Chromium at 1440x900: the layer bands and the collapsed ``eda`` and experiment blocks."""
    if CHROMIUM is None:
        pytest.skip("no Chromium (/usr/bin/chromium, Debian package `chromium`)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright (pip install playwright)")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(viz["build"])], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http(opener, f"{base}/api/main", timeout=5)[0] == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "the static server is not up"
                time.sleep(0.3)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                page.route(re.compile(rf"^(?!{re.escape(base)}/)"), lambda route: route.abort())
                page.set_default_timeout(60_000)
                page.goto(f"{base}/")
                for layer in LAYERS:
                    sync_api.expect(page.get_by_text(layer, exact=True).first).to_be_visible(timeout=60_000)
                for block in ("eda", EXPERIMENT):  # the sidebar's namespaces, collapsed in the graph
                    sync_api.expect(page.get_by_role("button", name=block, exact=True)).to_be_visible()
                sync_api.expect(page.locator("#nodes").get_by_text("ingest_source", exact=True)).to_be_attached()
            finally:
                browser.close()
    finally:
        stop_server(server)
        assert not group_members(server.pid)
