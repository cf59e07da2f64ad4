"""Kedro hook: catalog outputs saved as local files are the project's, and never overwrite a user's file."""
from __future__ import annotations

from pathlib import Path

from kedro.framework.hooks import hook_impl
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.partitions import PartitionedDataset

from urban_detection import files


def local_output_path(catalog, name: str) -> Path | None:
    """The local file (or folder, for a dict of figures) a catalog dataset saves to, else None.

    kedro-datasets' file datasets, unversioned; the project's own datasets manage their files."""
    dataset = catalog.get(name) if catalog is not None else None
    filepath = getattr(dataset, "_filepath", None)
    if filepath is None or getattr(dataset, "_version", None) is not None:
        return None
    return Path(str(filepath)) if _is_local(dataset) else None


def _is_local(dataset) -> bool:
    return getattr(dataset, "_protocol", "file") in ("file", "local")


def saved_paths(catalog, name: str, data) -> list[Path]:
    """The local files saving ``data`` to the dataset ``name`` writes (a dict of figures, or of a
    partitioned dataset's partitions: one per key)."""
    dataset = catalog.get(name) if catalog is not None else None
    if isinstance(dataset, PartitionedDataset) and isinstance(data, dict):
        return [Path(dataset._partition_to_path(str(key))) for key in data] if _is_local(dataset) else []
    path = local_output_path(catalog, name)
    if path is None:
        return []
    if isinstance(catalog.get(name), MatplotlibDataset) and isinstance(data, dict):
        return [path / str(key) for key in data]
    return [path]


class OutputOwnershipHooks:
    """A catalog output never overwrites a file the project did not write.

    Before any node runs, the run stops when an output's file exists and the project did not
    write it (not in its folder's manifest, or changed since), naming the file and the dataset;
    a folder of figures or of partitions (``PartitionedDataset``) is checked file by file when it is
    saved (a user's other files in it stay). Once Kedro saved an output, its files are recorded as the project's
    (:mod:`urban_detection.files`).
    """

    def __init__(self):
        self._catalog = None

    @hook_impl
    def after_catalog_created(self, catalog) -> None:
        self._catalog = catalog

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        for name in sorted(pipeline.all_outputs()):
            path = local_output_path(catalog, name)
            if path is not None and path.is_file():
                _check(path, name)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data, node) -> None:
        for path in saved_paths(self._catalog, dataset_name, data):
            if path.is_file():
                _check(path, dataset_name)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data, node) -> None:
        for path in saved_paths(self._catalog, dataset_name, data):
            if path.is_file():
                files.record_written(path)


def _check(path: Path, name: str) -> None:
    if not files.is_owned(path):
        raise files.ForeignFileError(path, f"it is where the catalog dataset {name!r} is saved")
