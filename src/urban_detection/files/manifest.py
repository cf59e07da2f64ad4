"""The ownership manifest: which files and folders the project wrote, and whether they are unchanged since.

Each folder that holds project outputs has a hidden JSON-lines file
``<folder>/.urban_detection_written.jsonl`` (:data:`MANIFEST_NAME`), one line per
written path, named relative to that folder:

* ``{"name": "trip.tfrecord", "kind": "file", "size": 1234, "mtime_ns": 1700000000123456789}``
  for a regular file, with its size and modification time (ns) right after the
  project wrote it;
* ``{"name": "export", "kind": "dir", "ino": 123456}`` for a directory the project made.

The last line for a name wins. A file counts as the project's only while its current
``size`` and ``mtime_ns`` equal the recorded ones: a file the user later copied,
edited or replaced under the same name is *foreign* again (both stat fields are
cheap and any ordinary rewrite changes at least the mtime; no content hash is
taken, so a same-size file written within the same mtime tick would go unnoticed).
Symbolic links are never the project's. Moving a whole folder (``mv``, ``rsync -a``,
``cp -a``) keeps ownership, since the manifest moves along and those keep mtimes.
Files written by an older version of the project, before this manifest, are
foreign: delete them yourself, or adopt them with :func:`record_written`.

Appends take an exclusive ``fcntl.flock`` on the manifest and write all their lines
in one ``write`` (``O_APPEND``), so parallel worker processes writing into one folder
all land; rewrites (after removals, or to compact a long manifest) truncate and
rewrite it in place under the same lock; readers take a shared lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]

MANIFEST_NAME = ".urban_detection_written.jsonl"


class ForeignFileError(FileExistsError):
    """A path to be written exists and is not the project's (not recorded, changed since, a link)."""

    def __init__(self, path: PathLike, reason: str = "not written by urban_detection"):
        self.path = Path(path)
        self.reason = reason
        super().__init__(
            f"{self.path}: refusing to overwrite it, urban_detection did not write it ({reason}). "
            "The project never overwrites files it did not write: move the file elsewhere or choose another "
            "output path (if it is an output of an older urban_detection version, delete it yourself)."
        )

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (str(self.path), self.reason))


# ------------------------------------------------------------------ paths and entries
def split_path(path: PathLike) -> tuple[Path, str]:
    """(resolved folder, name): one manifest per real folder, whatever the spelling of the path."""
    p = Path(os.path.abspath(os.fspath(path)))
    if not p.name:
        raise ValueError(f"{path}: not a file or folder name")
    return p.parent.resolve(), p.name


def lstat_or_none(path: Path) -> os.stat_result | None:
    """``os.lstat(path)``, or ``None`` when the path does not exist."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def entry_for(name: str, st: os.stat_result) -> dict:
    """The manifest line for ``name`` with stat ``st`` (a regular file or a directory, never a link)."""
    if stat.S_ISDIR(st.st_mode):
        return {"name": name, "kind": "dir", "ino": st.st_ino}
    if stat.S_ISREG(st.st_mode):
        return {"name": name, "kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    raise ValueError(f"{name}: only regular files and directories can be recorded as written (not links)")


def foreign_reason(entry: dict | None, st: os.stat_result) -> str | None:
    """Why the path with stat ``st`` is not the project's; ``None`` when it is."""
    if stat.S_ISLNK(st.st_mode):
        return "it is a symbolic link"
    if entry is None:
        return f"not listed in {MANIFEST_NAME}"
    if stat.S_ISDIR(st.st_mode):
        return None if entry.get("kind") == "dir" and entry.get("ino") == st.st_ino else "a directory it did not make"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if entry.get("kind") != "file":
        return f"not listed as a file in {MANIFEST_NAME}"
    if entry.get("size") != st.st_size or entry.get("mtime_ns") != st.st_mtime_ns:
        return "changed since urban_detection wrote it (size or modification time differ)"
    return None


# ------------------------------------------------------------------ the manifest
@contextlib.contextmanager
def locked_manifest(folder: Path, *, exclusive: bool, create: bool) -> Iterator[int | None]:
    """The locked manifest of ``folder`` as an fd (``None`` when it does not exist and ``create`` is False)."""
    mpath = folder / MANIFEST_NAME
    if exclusive:
        flags = os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0)
    else:
        flags = os.O_RDONLY
    while True:
        try:
            fd = os.open(mpath, flags, 0o666)
        except FileNotFoundError:
            if create:
                raise
            fd = None
        if fd is None:
            break
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        now = lstat_or_none(mpath)
        if now is not None and os.path.samestat(now, os.fstat(fd)):
            break
        os.close(fd)  # removed or replaced between open and lock: open the current one
    if fd is None:
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)  # also releases the lock


def read_entries(fd: int) -> tuple[dict[str, dict], int]:
    """Entries by name (last line wins) and the number of lines."""
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    entries: dict[str, dict] = {}
    lines = 0
    for line in b"".join(chunks).splitlines():
        if not line.strip():
            continue
        lines += 1
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a torn line (crash mid-write): its file simply counts as not the project's
        if isinstance(e, dict) and isinstance(e.get("name"), str):
            entries[e["name"]] = e
    return entries, lines


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _lines(entries: Iterable[dict]) -> bytes:
    return b"".join(json.dumps(e, separators=(",", ":")).encode() + b"\n" for e in entries)


def rewrite_entries(fd: int, entries: dict[str, dict]) -> None:
    """Replace the whole locked manifest ``fd`` with ``entries``, one line each, and fsync it."""
    os.ftruncate(fd, 0)
    _write_all(fd, _lines(entries.values()))  # O_APPEND: lands at offset 0 after the truncate
    os.fsync(fd)


def add_entries(fd: int, entries: dict[str, dict], lines: int, new: list[dict]) -> None:
    """Append ``new`` to the locked manifest ``fd`` (read as ``entries`` in ``lines`` lines); compact it when long."""
    for e in new:
        entries[e["name"]] = e
    if lines + len(new) > 2 * len(entries) + 64:  # mostly superseded lines: compact
        rewrite_entries(fd, entries)
    else:
        _write_all(fd, _lines(new))  # one write under the lock (not fsynced: a lost line only makes a file foreign)


def snapshot(folder: Path, names: Iterable[str]) -> tuple[dict[str, dict], dict[str, os.stat_result | None]]:
    """Entries and the current stats of ``folder/<names>``, taken together under the shared lock.

    (A writer replaces a file and records it under the exclusive lock: stat and
    manifest read outside one lock could pair an old stat with a new entry.)
    """
    with locked_manifest(folder, exclusive=False, create=False) as fd:
        entries = {} if fd is None else read_entries(fd)[0]
        return entries, {n: lstat_or_none(folder / n) for n in names}


def record_names(folder: Path, names: Iterable[str]) -> list[Path]:
    """Record ``folder/<names>`` as written by the project, in the manifest of ``folder``."""
    names = [n for n in names if n != MANIFEST_NAME]
    if not names:
        return []
    with locked_manifest(folder, exclusive=True, create=True) as fd:
        entries, lines = read_entries(fd)
        new = [entry_for(n, os.lstat(folder / n)) for n in names]
        add_entries(fd, entries, lines, new)
    return [folder / n for n in names]


# ------------------------------------------------------------------ ownership
def record_written(path: PathLike) -> list[Path]:
    """Record ``path`` (written by third-party code for the project) as the project's; returns what was recorded.

    For a directory, the directory and everything in it (files and subfolders, not
    links) is recorded, each in the manifest of its own folder. Call it right after
    the writer finished: a later change makes the file foreign again.
    """
    folder, name = split_path(path)
    target = folder / name
    st = os.lstat(target)  # FileNotFoundError for a missing path
    recorded = []
    if stat.S_ISDIR(st.st_mode):
        recorded += record_contents(target)
    entry_for(name, st)  # ValueError for a link or special file, before anything is recorded
    return recorded + record_names(folder, [name])


def record_contents(root: Path) -> list[Path]:
    """Record every file and folder under ``root`` (not links, not ``root`` itself) as the project's."""
    recorded = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        names = [n for n in dirnames if not (d / n).is_symlink()] + [
            n for n in filenames if n != MANIFEST_NAME and stat.S_ISREG(os.lstat(d / n).st_mode)
        ]
        recorded += record_names(d, names)
    return recorded


def is_owned(path: PathLike) -> bool:
    """True when the project wrote ``path`` and it is unchanged since.

    A directory is the project's when the project made it and it holds no file the
    project did not write.
    """
    folder, name = split_path(path)
    target = folder / name
    entries, stats = snapshot(folder, [name])
    st = stats[name]
    if st is None or name == MANIFEST_NAME:
        return False
    if foreign_reason(entries.get(name), st) is not None:
        return False
    return not (stat.S_ISDIR(st.st_mode) and foreign_files(target))


def foreign_files(folder: PathLike) -> list[Path]:
    """Every file (or link) under ``folder`` that the project did not write or that changed since."""
    root = Path(os.path.abspath(os.fspath(folder)))
    foreign = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        links = sorted(n for n in dirnames if (d / n).is_symlink())
        names = [n for n in sorted(filenames) + links if n != MANIFEST_NAME]
        entries, stats = snapshot(d, names)
        for n in names:
            st = stats[n]
            if st is not None and foreign_reason(entries.get(n), st) is not None:
                foreign.append(d / n)
    return foreign
