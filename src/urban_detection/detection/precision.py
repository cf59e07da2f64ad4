"""Mixed precision: the global Keras dtype policy a detector is built and trained under."""
from __future__ import annotations

import contextlib
from pathlib import Path

import keras

POLICIES = {False: "float32", None: "float32", "float32": "float32", True: "mixed_float16",
            "float16": "mixed_float16", "mixed_float16": "mixed_float16",
            "bfloat16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16"}


def cpu_computes_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 arithmetic (the ``avx512_bf16`` or ``amx_bf16`` flag of Linux's
    ``/proc/cpuinfo``); False where that file cannot be read."""
    try:
        flags = Path(cpuinfo).read_text(errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve(mixed: bool | str | None, gpus: int | None = None, cpu_bfloat16: bool | None = None) -> bool | str:
    """A ``mixed_precision`` setting with ``"auto"`` decided for this machine: ``"float16"`` with a GPU,
    ``"bfloat16"`` on a CPU with bfloat16 arithmetic (:func:`cpu_computes_bfloat16`), else ``False``
    (float32). Other settings are returned as they are."""
    if mixed != "auto":
        return mixed
    if gpus is None:
        import tensorflow as tf

        gpus = len(tf.config.list_physical_devices("GPU"))
    if gpus:
        return "float16"
    return "bfloat16" if (cpu_computes_bfloat16() if cpu_bfloat16 is None else cpu_bfloat16) else False


def policy_name(mixed: bool | str | None) -> str:
    """The Keras policy name of a ``mixed_precision`` setting (``"auto"``: see :func:`resolve`)."""
    try:
        return POLICIES[resolve(mixed)]
    except (KeyError, TypeError):
        raise ValueError(f"mixed precision must be true/false, 'float16', 'bfloat16' or 'auto', got {mixed!r}"
                         ) from None


def configure_precision(mixed: bool | str) -> str:
    """Set the global Keras dtype policy; returns the previous policy's name.

    ``True``/``"float16"``: ``mixed_float16`` (GPUs; the optimizer gets loss
    scaling), ``"bfloat16"``: ``mixed_bfloat16`` (CPUs with AVX512-BF16/AMX and
    TPUs; the training step ran 1.29x float32 on an AVX512-BF16 EPYC),
    ``False``: ``float32``, ``"auto"``: the fastest of these this machine computes
    (:func:`resolve`). Call it *before* building the model and restore the
    returned policy after (or use :func:`precision`).
    """
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy_name(mixed))
    return previous


@contextlib.contextmanager
def precision(mixed: bool | str):
    """Context manager: build (and train) models under a mixed policy (see :func:`configure_precision`)."""
    previous = configure_precision(mixed)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
