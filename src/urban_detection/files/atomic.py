"""Atomic files and folders: build an output under a temporary name, then move it onto the target and record it.

:func:`atomic_write` (file object), :func:`atomic_path` (a temporary path for
third-party writers such as ``tf.io.TFRecordWriter`` or ffmpeg) and :func:`atomic_dir`
(a directory output) build the result under a hidden temporary name in the target's
folder (``.<name>.<random>.udtmp``), fsync it, move it onto the target with
``os.replace`` and record it in the ownership manifest
(:mod:`urban_detection.files.manifest`). On an exception the temporary is removed and
the target keeps its previous content. A target that exists and is not the project's
raises :class:`~urban_detection.files.manifest.ForeignFileError` before anything is
written (and again at the final move, should it have changed meanwhile).

Writes nest: the temporary path of an enclosing :func:`atomic_path` may be handed to
code that writes atomically itself (the inner write replaces the reserved temporary;
only the final name is recorded). Temporaries left by a killed process stay (hidden,
never taken for the project's files by the removal functions).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from urban_detection.files.manifest import (
    MANIFEST_NAME,
    ForeignFileError,
    PathLike,
    add_entries,
    entry_for,
    foreign_files,
    foreign_reason,
    locked_manifest,
    lstat_or_none,
    read_entries,
    record_contents,
    record_names,
    snapshot,
    split_path,
)
from urban_detection.files.remove import MAX_WARN_NAMES, remove_files, remove_tree, rmdir_if_empty, warn_kept

TEMP_MARK = ".udtmp"  # every temporary name the module makes ends with this (or with it plus the suffix)


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARK in name


def _fsync_path(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory
    finally:
        os.close(fd)


# ------------------------------------------------------------------ writing files
def _check_replaceable(target: Path) -> None:
    entries, stats = snapshot(target.parent, [target.name])
    st = stats[target.name]
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{target}: is a directory, not replaced by a file")
    if _is_temp_name(target.name) and stat.S_ISREG(st.st_mode):
        return  # a temporary of an enclosing atomic write (nested writers)
    reason = foreign_reason(entries.get(target.name), st)
    if reason is not None:
        raise ForeignFileError(target, reason)


def _makedirs(folder: Path) -> None:
    """``mkdir -p`` that records the folders it makes as the project's (so emptied ones can go later)."""
    missing = []
    d = folder
    while not d.is_dir():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o777)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs to record
        record_names(d.parent, [d.name])


def _temp_name(name: str, suffix: str) -> str:
    return f".{name[:180]}.{secrets.token_hex(4)}{TEMP_MARK}{suffix}"


def reserve_temp(path: PathLike, *, keep_suffix: bool = False) -> Path:
    """Check that ``path`` may be written and create an empty temporary file beside it; returns its path.

    Raises :class:`ForeignFileError` when ``path`` exists and is not the project's,
    ``IsADirectoryError`` when it is a directory. Creates the parent folders. With
    ``keep_suffix`` the temporary name ends with the target's suffix (for writers that
    pick the format from it, e.g. ffmpeg). Finish with :func:`commit_temp` or
    :func:`discard_temp`; :func:`atomic_path` does both.
    """
    folder, name = split_path(path)
    if name == MANIFEST_NAME:
        raise ValueError(f"{folder / name}: the manifest is written by urban_detection.files only")
    _check_replaceable(folder / name)
    _makedirs(folder)
    suffix = Path(name).suffix if keep_suffix else ""
    while True:
        tmp = folder / _temp_name(name, suffix)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def _check_temp(tmp: PathLike) -> Path:
    tmp = Path(tmp)
    if not _is_temp_name(tmp.name):
        raise ValueError(f"{tmp}: not a temporary file made by urban_detection.files.reserve_temp")
    return tmp


def discard_temp(tmp: PathLike) -> None:
    """Remove a temporary file made by :func:`reserve_temp` (missing is fine)."""
    _check_temp(tmp).unlink(missing_ok=True)


def commit_temp(tmp: PathLike, path: PathLike, *, fsync: bool = True) -> Path:
    """Move the finished temporary ``tmp`` onto ``path`` (``os.replace``) and record it; returns ``path``.

    Re-checks under the manifest lock that ``path`` is still absent or the project's;
    if not, the temporary is removed and :class:`ForeignFileError` raised.
    """
    tmp = _check_temp(tmp)
    folder, name = split_path(path)
    target = folder / name
    if tmp.parent.resolve() != folder:
        raise ValueError(f"{tmp}: not in the folder of {target}")
    if fsync:
        _fsync_path(tmp)
    with locked_manifest(folder, exclusive=True, create=True) as fd:
        entries, lines = read_entries(fd)
        st = lstat_or_none(target)
        nested = _is_temp_name(name) and (st is None or stat.S_ISREG(st.st_mode))
        if st is not None and not nested:
            reason = "it is a directory" if stat.S_ISDIR(st.st_mode) else foreign_reason(entries.get(name), st)
            if reason is not None:
                discard_temp(tmp)
                raise ForeignFileError(target, reason)
        os.replace(tmp, target)
        if not nested:  # a temporary of an enclosing atomic write is recorded under its final name
            add_entries(fd, entries, lines, [entry_for(name, os.lstat(target))])
    if fsync:
        _fsync_path(folder, directory=True)
    return target


@contextlib.contextmanager
def atomic_path(path: PathLike, *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name; commit it at the end.

    ``with atomic_path(out) as tmp: tf.io.TFRecordWriter(str(tmp))...``. The writer must
    be closed inside the block. On an exception the temporary is removed and ``path``
    left as it was. Raises :class:`ForeignFileError` as :func:`reserve_temp` does.
    """
    tmp = reserve_temp(path, keep_suffix=keep_suffix)
    try:
        yield tmp
    except BaseException:
        discard_temp(tmp)
        raise
    commit_temp(tmp, path)


@contextlib.contextmanager
def atomic_write(
    path: PathLike, *, mode: str = "wb", encoding: str | None = None, newline: str | None = None
) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success fsync, replace ``path`` and record it.

    ``mode`` is ``"wb"`` (default) or ``"w"`` (text, UTF-8 unless ``encoding``). On an
    exception inside the block the temporary is removed and ``path`` keeps its previous
    content. Raises :class:`ForeignFileError` before writing when ``path`` exists and
    is not the project's.
    """
    if mode not in ("wb", "w", "wt"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    if "b" not in mode and encoding is None:
        encoding = "utf-8"
    tmp = reserve_temp(path)
    try:
        with open(tmp, mode, encoding=encoding, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        discard_temp(tmp)
        raise
    commit_temp(tmp, path, fsync=False)
    _fsync_path(tmp.parent, directory=True)


def write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path) as f:
        f.write(data)
    return Path(path)


def write_text(path: PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns the path."""
    with atomic_write(path, mode="w", encoding=encoding) as f:
        f.write(text)
    return Path(path)


# ------------------------------------------------------------------ writing folders
def _check_replaceable_dir(target: Path) -> None:
    st = lstat_or_none(target)
    if st is None:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        _check_replaceable(target)  # a file: the project's, or ForeignFileError
        return
    foreign = foreign_files(target)
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:MAX_WARN_NAMES])
        raise ForeignFileError(target, f"it holds files urban_detection did not write: {shown}")


def _make_temp_dir(folder: Path, name: str, mark: str = TEMP_MARK) -> Path:
    while True:
        tmp = folder / f".{name[:180]}.{secrets.token_hex(4)}{mark}"
        try:
            os.mkdir(tmp, 0o777)
            return tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder to build a directory output in; swap it in at the end.

    On success every file and folder inside is recorded, an existing ``path`` (which
    must hold only the project's files) is moved aside, the new folder renamed onto
    ``path`` and the old one removed through the ownership rules. On an exception the
    temporary folder is removed and ``path`` left as it was. Raises
    :class:`ForeignFileError` before building when ``path`` is, or holds, something
    the project did not write. The swap is two renames: for a moment ``path`` is absent.
    """
    folder, name = split_path(path)
    target = folder / name
    _check_replaceable_dir(target)
    _makedirs(folder)
    tmp = _make_temp_dir(folder, name)
    try:
        yield tmp
        record_contents(tmp)
        _check_replaceable_dir(target)
    except BaseException:
        record_contents(tmp)  # all of it was written for the project, in a folder made here
        remove_tree(tmp, force_root=True)
        raise
    st = lstat_or_none(target)
    old = None
    if st is not None and stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        old = _make_temp_dir(folder, name, ".udold")
        os.rename(target, old / name)  # inside a fresh folder, so nothing else is ever replaced
    elif st is not None:
        remove_files(folder, [name])
    try:
        os.rename(tmp, target)
    except OSError:
        if old is not None:
            os.rename(old / name, target)
            rmdir_if_empty(old)
        remove_tree(tmp, force_root=True)
        raise
    record_names(folder, [name])
    _fsync_path(folder, directory=True)
    if old is not None:
        _, kept = remove_tree(old / name, force_root=True)
        rmdir_if_empty(old)
        warn_kept(kept, "removing the replaced copy of")
