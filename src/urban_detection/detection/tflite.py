"""Edge export: a trained detector as TFLite float16 and int8 models, and running them.

The TFLite graph is the network only: a float32 ``[1, S, S, 3]`` image (0-255, already
resized to the model's input) in, the head's raw outputs (``bbox_regression``
``[1, A, 4]``, ``cls_logits`` ``[1, A, C]``) out. Anchor decoding and NMS stay on the host,
as in Ultralytics' TFLite exports: :class:`TFLiteDetector` runs the interpreter and then the
same post-processing as the SavedModel (:func:`~.export.od_api_outputs`), so both answer
with the Object Detection API's outputs and everything that scores an exported model
scores a TFLite one.

* ``float16``: weights stored as float16 (half the size), computed in float32;
* ``int8``: weights and activations quantized to int8, calibrated on training frames
  (:func:`convert_tflite`'s ``calibration_images``); input and output stay float32.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import tensorflow as tf

from urban_detection.detection.export import od_api_outputs, uint8_batch

MODES = ("float16", "int8")


def _raw_saved_model(model, image_size: int, folder: Path) -> str:
    """The network as a SavedModel with one ``raw`` endpoint (variables frozen on conversion)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="raw", fn=lambda images: model(images, training=False),
                         input_signature=[tf.TensorSpec([1, image_size, image_size, 3], tf.float32)])
    path = str(folder / "raw_saved_model")
    archive.write_out(path, verbose=False)
    return path


def convert_tflite(model, image_size: int, mode: str, calibration_images: Iterable[np.ndarray] | None = None) -> bytes:
    """``model`` as a TFLite flatbuffer in ``mode`` (see the module doc). ``int8`` needs
    ``calibration_images``: uint8 or float images ``[S, S, 3]`` (0-255) from the training frames."""
    if mode not in MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}; choose from {MODES}")
    with tempfile.TemporaryDirectory() as tmp:
        converter = tf.lite.TFLiteConverter.from_saved_model(_raw_saved_model(model, image_size, Path(tmp)),
                                                             signature_keys=["raw"])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        else:
            images = [np.asarray(im, np.float32)[None] for im in (calibration_images or [])]
            if not images:
                raise ValueError("int8 conversion needs calibration images (training frames)")
            converter.representative_dataset = lambda: ([im] for im in images)
        return converter.convert()


class TFLiteDetector:
    """A TFLite detector: ``detector(images_uint8)`` -> the OD API outputs, like
    :class:`~.export.ExportedDetector`. ``model`` (the Keras detector it was converted from)
    provides the host-side anchor decoding and NMS."""

    def __init__(self, content: bytes, model, image_size: int, name: str = "tflite", num_threads: int | None = None):
        import warnings

        from tensorflow.lite.python.interpreter import Interpreter

        self.name, self.image_size, self.size_bytes = name, int(image_size), len(content)
        self._model = model
        with warnings.catch_warnings():  # its move to the ai_edge_litert package: nothing a user can act on
            warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated", category=UserWarning)
            self._interpreter = Interpreter(model_content=content, num_threads=num_threads)
        self._run = self._interpreter.get_signature_runner("raw")
        (self._input,) = self._run.get_input_details()
        self._post = tf.function(lambda head, x: od_api_outputs(model, head, x), reduce_retracing=True)

    def __repr__(self) -> str:
        return f"TFLiteDetector({self.name}: {self.size_bytes / 1e6:.2f} MB, input {self.image_size} px)"

    def raw(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """The head's outputs for one float32 image ``[S, S, 3]``."""
        out = self._run(**{self._input: np.asarray(image, np.float32)[None]})
        return {"bbox_regression": out["bbox_regression"], "cls_logits": out["cls_logits"]}

    def __call__(self, images) -> dict[str, np.ndarray]:
        images = uint8_batch(images)
        x = tf.image.resize(tf.cast(images, tf.float32), [self.image_size, self.image_size]).numpy()
        raws = [self.raw(image) for image in x]
        head = {k: np.concatenate([r[k] for r in raws]) for k in ("bbox_regression", "cls_logits")}
        return {k: v.numpy() for k, v in self._post(head, tf.constant(x)).items()}


def latency_ms(detector, image_size: int, repeats: int = 20, batch: int = 1) -> float:
    """Median wall time (ms) of one call on ``batch`` uint8 images of ``image_size`` (after a warm-up)."""
    images = np.random.default_rng(0).integers(0, 256, (batch, image_size, image_size, 3), dtype=np.uint8)
    detector(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector(images)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)
