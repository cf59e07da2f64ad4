"""The TF Object Detection API tf.Example format used for training records.

Boxes everywhere in this project are float32 arrays of shape (N, 4) holding
normalised ``[ymin, xmin, ymax, xmax]`` in [0, 1] (TensorFlow's convention);
labels are int32 ids of the seed label map below.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

LABEL_MAP: dict[int, str] = {1: "vehicle", 2: "pedestrian", 4: "cyclist"}
CLASS_IDS: dict[str, int] = {name: i for i, name in LABEL_MAP.items()}
CLASS_NAMES: tuple[str, ...] = tuple(LABEL_MAP.values())

# Feature spec for tf.io.parse_single_example / parse_example.
FEATURE_SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/format": tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/class/text": tf.io.VarLenFeature(tf.string),
    "image/object/class/label": tf.io.VarLenFeature(tf.int64),
}


@dataclass
class DetectionExample:
    """One training frame: encoded image plus normalised boxes and label ids."""

    image: bytes
    height: int
    width: int
    filename: str
    source_id: str
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    image_format: str = "jpeg"

    @property
    def class_names(self) -> list[str]:
        return [LABEL_MAP.get(int(i), f"class_{int(i)}") for i in self.labels]


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def encode_example(ex: DetectionExample) -> bytes:
    """Serialise a :class:`DetectionExample` to TF OD API tf.Example bytes."""
    boxes = np.asarray(ex.boxes, np.float32).reshape(-1, 4)
    labels = np.asarray(ex.labels, np.int64).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} boxes but {len(labels)} labels in {ex.source_id}")
    texts = [LABEL_MAP.get(int(i), f"class_{int(i)}").encode() for i in labels]
    feature = {
        "image/encoded": _bytes([ex.image]),
        "image/height": _ints([int(ex.height)]),
        "image/width": _ints([int(ex.width)]),
        "image/filename": _bytes([ex.filename.encode()]),
        "image/source_id": _bytes([ex.source_id.encode()]),
        "image/format": _bytes([ex.image_format.encode()]),
        "image/object/bbox/xmin": _floats(boxes[:, 1].tolist()),
        "image/object/bbox/xmax": _floats(boxes[:, 3].tolist()),
        "image/object/bbox/ymin": _floats(boxes[:, 0].tolist()),
        "image/object/bbox/ymax": _floats(boxes[:, 2].tolist()),
        "image/object/class/text": _bytes(texts),
        "image/object/class/label": _ints(labels.tolist()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def decode_example(serialized: bytes) -> DetectionExample:
    """Parse TF OD API tf.Example bytes (eagerly, without decoding the image).

    Raises ``ValueError`` when a required key is missing or the box lists disagree.
    """
    ex = tf.train.Example.FromString(serialized)
    f = ex.features.feature

    def floats(key):
        return np.asarray(f[key].float_list.value, np.float32) if key in f else np.zeros(0, np.float32)

    for key in ("image/encoded", "image/height", "image/width"):
        if key not in f:
            raise ValueError(f"missing key {key!r}")
    ymin, xmin, ymax, xmax = (floats(f"image/object/bbox/{k}") for k in ("ymin", "xmin", "ymax", "xmax"))
    n = len(ymin)
    if not (len(xmin) == len(ymax) == len(xmax) == n):
        raise ValueError("bbox coordinate lists have different lengths")
    if "image/object/class/label" in f:
        labels = np.asarray(f["image/object/class/label"].int64_list.value, np.int32)
    else:  # some converters only write the text
        labels = np.asarray(
            [CLASS_IDS.get(t.decode(), 0) for t in f["image/object/class/text"].bytes_list.value], np.int32
        )
    if len(labels) != n:
        raise ValueError(f"{n} boxes but {len(labels)} class labels")

    def text(key, default=""):
        return f[key].bytes_list.value[0].decode(errors="replace") if key in f and f[key].bytes_list.value else default

    return DetectionExample(
        image=f["image/encoded"].bytes_list.value[0],
        height=int(f["image/height"].int64_list.value[0]),
        width=int(f["image/width"].int64_list.value[0]),
        filename=text("image/filename"),
        source_id=text("image/source_id"),
        boxes=np.stack([ymin, xmin, ymax, xmax], axis=1).reshape(-1, 4),
        labels=labels,
        image_format=text("image/format", "jpeg"),
    )


def is_detection_example(serialized: bytes) -> bool:
    """True when the bytes parse as a tf.Example carrying ``image/encoded``."""
    try:
        ex = tf.train.Example.FromString(serialized)
    except Exception:  # noqa: BLE001 - any parse failure means "not this format"
        return False
    return "image/encoded" in ex.features.feature
