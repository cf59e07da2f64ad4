"""detection/precision.py: the dtype policy a mixed_precision setting gives, "auto" decided per machine."""
from pathlib import Path

import keras
import pytest

from urban_detection.detection.precision import cpu_computes_bfloat16, policy_name, precision, resolve


def cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx2 {flags}\n")
    return path


def test_bfloat16_arithmetic_is_read_from_the_cpu_flags(tmp_path):
    assert cpu_computes_bfloat16(cpuinfo(tmp_path, "avx512f avx512_bf16"))
    assert cpu_computes_bfloat16(cpuinfo(tmp_path, "amx_tile amx_bf16"))
    assert not cpu_computes_bfloat16(cpuinfo(tmp_path, "avx512f avx512_vnni"))  # AVX-512 alone is not enough
    assert not cpu_computes_bfloat16(tmp_path / "missing")  # not Linux: float32, never an error


@pytest.mark.parametrize("gpus,cpu_bf16,expected", [(1, False, "float16"), (2, True, "float16"),
                                                     (0, True, "bfloat16"), (0, False, False)])
def test_auto_takes_what_the_machine_computes(gpus, cpu_bf16, expected):
    assert resolve("auto", gpus=gpus, cpu_bfloat16=cpu_bf16) == expected


@pytest.mark.parametrize("mixed", [True, False, None, "float16", "bfloat16"])
def test_other_settings_are_kept(mixed):
    assert resolve(mixed, gpus=1, cpu_bfloat16=True) == mixed


def test_auto_on_this_machine_builds_under_its_policy():
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU takes float16; this checks the CPU's choice")
    expected = "mixed_bfloat16" if cpu_computes_bfloat16() else "float32"
    assert policy_name("auto") == expected
    with precision("auto"):
        assert keras.mixed_precision.global_policy().name == expected
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError, match="'auto'"):
        policy_name("bfloat17")
