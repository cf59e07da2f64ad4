"""A tiny detection TFRecord for training tests: frames with one bright square (a 'vehicle') each."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def square_records(path: Path, size: int = 64, frames: int = 8) -> Path:
    """``frames`` PNG frames of ``size`` px, each with one bright square labelled vehicle, written to ``path``."""
    import tensorflow as tf

    from urban_detection.waymo.example import DetectionExample, encode_example

    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path)) as w:
        for i in range(frames):
            image = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
            s = int(rng.integers(16, 32))
            y, x = (int(v) for v in rng.integers(0, size - s, 2))
            image[y:y + s, x:x + s] = (230, 220, 40)
            box = np.array([[y, x, y + s, x + s]], np.float32) / size
            w.write(encode_example(DetectionExample(tf.io.encode_png(image).numpy(), size, size, f"{i}.png",
                                                    f"toy/{i}", box, np.array([1], np.int32), "png")))
    return path
