"""The project's own writes and removals: it overwrites or removes only files it wrote.

Perception engineers keep irreplaceable files (real Waymo segments, hand-made labels,
notes) next to generated ones. So when urban_detection's own code writes or removes
project data, it goes through this package, which never overwrites or removes a path
unless the project wrote it and nobody changed it since. Not everything does:
``tf.train.CheckpointManager`` rotates (saves and deletes) the checkpoints in the
training checkpoint folder itself, and Kedro datasets from kedro-datasets (JSON, CSV,
Parquet, ...) overwrite their own outputs at save time; for those, the hooks in
:mod:`urban_detection.hooks` stop a run whose single-file output the project did not
write, and record the output once saved.

* :mod:`~urban_detection.files.manifest`: the hidden ``.urban_detection_written.jsonl``
  of each output folder, what counts as the project's (:func:`is_owned`,
  :func:`foreign_files`, :func:`record_written`, :class:`ForeignFileError`);
* :mod:`~urban_detection.files.atomic`: files and folders written under a temporary
  name and moved into place when complete (:func:`atomic_write`, :func:`atomic_path`,
  :func:`atomic_dir`, :func:`write_text`, ...);
* :mod:`~urban_detection.files.remove`: removal of the project's files only
  (:func:`remove_owned`, :func:`remove_owned_tree`, :func:`clear_owned`);
* :mod:`~urban_detection.files.paths`: outputs that would land on inputs
  (:func:`check_outputs_not_inputs`, :class:`OutputOnInputError`).
"""

from urban_detection.files.atomic import (
    TEMP_MARK,
    atomic_dir,
    atomic_path,
    atomic_write,
    commit_temp,
    discard_temp,
    reserve_temp,
    write_bytes,
    write_text,
)
from urban_detection.files.manifest import MANIFEST_NAME, ForeignFileError, foreign_files, is_owned, record_written
from urban_detection.files.paths import OutputOnInputError, check_output_is_not_input, check_outputs_not_inputs
from urban_detection.files.remove import clear_owned, remove_owned, remove_owned_tree

__all__ = [
    "ForeignFileError",
    "MANIFEST_NAME",
    "OutputOnInputError",
    "TEMP_MARK",
    "atomic_dir",
    "atomic_path",
    "atomic_write",
    "check_output_is_not_input",
    "check_outputs_not_inputs",
    "clear_owned",
    "commit_temp",
    "discard_temp",
    "foreign_files",
    "is_owned",
    "record_written",
    "remove_owned",
    "remove_owned_tree",
    "reserve_temp",
    "write_bytes",
    "write_text",
]
