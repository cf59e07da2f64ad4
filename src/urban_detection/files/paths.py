"""Outputs on inputs: refuse an output path that is, contains or lies inside an input path.

:func:`check_outputs_not_inputs` raises :class:`OutputOnInputError` before anything
is written, naming every clash.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from urban_detection.files.manifest import PathLike


class OutputOnInputError(ValueError):
    """An output path is the same as, contains, or lies inside an input path."""


# ------------------------------------------------------------------ outputs vs inputs
def _resolve(path: PathLike) -> Path:
    return Path(os.path.abspath(os.fspath(path))).resolve()


def _relation(out: Path, inp: Path) -> str | None:
    if out == inp:
        return "is the same path as"
    if out.is_relative_to(inp):
        return "lies inside"
    if inp.is_relative_to(out):
        return "contains"
    try:
        if os.path.samefile(out, inp):  # hard links, bind mounts
            return "is the same file as"
    except OSError:
        pass
    return None


def check_outputs_not_inputs(
    outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None]
) -> None:
    """Raise :class:`OutputOnInputError` when an output path is, contains or lies inside an input path.

    Paths are compared after ``Path.resolve`` (symbolic links followed), and existing
    paths also by ``os.path.samefile``. Call it before writing anything. ``None``
    values are skipped. The message names every clash: both entries and both paths.
    """
    clashes = []
    for oname, opath in outputs.items():
        if opath is None:
            continue
        o = _resolve(opath)
        for iname, ipath in inputs.items():
            if ipath is None:
                continue
            i = _resolve(ipath)
            rel = _relation(o, i)
            if rel:
                clashes.append(
                    f"output {oname!r} ({opath}, resolved {o}) {rel} input {iname!r} ({ipath}, resolved {i})"
                )
    if clashes:
        raise OutputOnInputError(
            "Refusing to write outputs onto inputs: " + "; ".join(clashes) + ". Point the output somewhere else."
        )


def check_output_is_not_input(
    output: PathLike, input: PathLike, *, output_name: str = "output", input_name: str = "input"
) -> None:
    """:func:`check_outputs_not_inputs` for one output and one input (e.g. a trip file and its source)."""
    check_outputs_not_inputs({output_name: output}, {input_name: input})
