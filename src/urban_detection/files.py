"""The project overwrites or removes only files it wrote: every write and removal goes through here.

Perception engineers keep irreplaceable files (real Waymo segments, hand-made labels,
notes) next to generated ones. So urban_detection never overwrites or removes a path
unless it wrote it itself and nobody changed it since. This module is the only place
in the project that calls ``unlink``, ``rmdir`` or ``os.replace`` on project data.

**Manifest.** Each folder that holds project outputs has a hidden JSON-lines file
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

**Writing.** :func:`atomic_write` (file object), :func:`atomic_path` (a temporary path
for third-party writers such as ``tf.io.TFRecordWriter`` or ffmpeg) and
:func:`atomic_dir` (a directory output) build the result under a hidden temporary
name in the target's folder (``.<name>.<random>.udtmp``), fsync it, move it onto
the target with ``os.replace`` and record it. On an exception the temporary is
removed and the target keeps its previous content. A target that exists and is not
the project's raises :class:`ForeignFileError` before anything is written (and again
at the final move, should it have changed meanwhile).

Writes nest: the temporary path of an enclosing :func:`atomic_path` may be handed to
code that writes atomically itself (the inner write replaces the reserved temporary;
only the final name is recorded). Temporaries left by a killed process stay (hidden,
never taken for the project's files by the removal functions).

**Removing.** :func:`remove_owned`, :func:`remove_owned_tree` and :func:`clear_owned`
remove only the project's files; anything else stays, with a warning naming it.
A directory is removed only once empty, and only if the project made it (with
:func:`atomic_dir`, or as a missing parent folder of an output, both recorded) or
this call emptied it (a user's empty folder stays).

**Outputs on inputs.** :func:`check_outputs_not_inputs` raises
:class:`OutputOnInputError` when an output path is, contains or lies inside an input.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Union

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

MANIFEST_NAME = ".urban_detection_written.jsonl"
TEMP_MARK = ".udtmp"  # every temporary name the module makes ends with this (or with it plus the suffix)
_MAX_WARN_NAMES = 20


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


class OutputOnInputError(ValueError):
    """An output path is the same as, contains, or lies inside an input path."""


# ------------------------------------------------------------------ paths and entries
def _split(path: PathLike) -> tuple[Path, str]:
    """(resolved folder, name): one manifest per real folder, whatever the spelling of the path."""
    p = Path(os.path.abspath(os.fspath(path)))
    if not p.name:
        raise ValueError(f"{path}: not a file or folder name")
    return p.parent.resolve(), p.name


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _entry(name: str, st: os.stat_result) -> dict:
    if stat.S_ISDIR(st.st_mode):
        return {"name": name, "kind": "dir", "ino": st.st_ino}
    if stat.S_ISREG(st.st_mode):
        return {"name": name, "kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    raise ValueError(f"{name}: only regular files and directories can be recorded as written (not links)")


def _foreign_reason(entry: dict | None, st: os.stat_result) -> str | None:
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


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and TEMP_MARK in name


# ------------------------------------------------------------------ the manifest
@contextlib.contextmanager
def _manifest(folder: Path, *, exclusive: bool, create: bool) -> Iterator[int | None]:
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
        now = _lstat(mpath)
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


def _read(fd: int) -> tuple[dict[str, dict], int]:
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


def _rewrite(fd: int, entries: dict[str, dict]) -> None:
    os.ftruncate(fd, 0)
    _write_all(fd, _lines(entries.values()))  # O_APPEND: lands at offset 0 after the truncate
    os.fsync(fd)


def _add(fd: int, entries: dict[str, dict], lines: int, new: list[dict]) -> None:
    for e in new:
        entries[e["name"]] = e
    if lines + len(new) > 2 * len(entries) + 64:  # mostly superseded lines: compact
        _rewrite(fd, entries)
    else:
        _write_all(fd, _lines(new))  # one write under the lock (not fsynced: a lost line only makes a file foreign)


def _snapshot(folder: Path, names: Iterable[str]) -> tuple[dict[str, dict], dict[str, os.stat_result | None]]:
    """Entries and the current stats of ``folder/<names>``, taken together under the shared lock.

    (A writer replaces a file and records it under the exclusive lock: stat and
    manifest read outside one lock could pair an old stat with a new entry.)
    """
    with _manifest(folder, exclusive=False, create=False) as fd:
        entries = {} if fd is None else _read(fd)[0]
        return entries, {n: _lstat(folder / n) for n in names}


def _record(folder: Path, names: Iterable[str]) -> list[Path]:
    names = [n for n in names if n != MANIFEST_NAME]
    if not names:
        return []
    with _manifest(folder, exclusive=True, create=True) as fd:
        entries, lines = _read(fd)
        new = [_entry(n, os.lstat(folder / n)) for n in names]
        _add(fd, entries, lines, new)
    return [folder / n for n in names]


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


def _warn_kept(kept: list[Path], what: str = "removing") -> None:
    if not kept:
        return
    shown = ", ".join(str(p) for p in kept[:_MAX_WARN_NAMES])
    more = f" and {len(kept) - _MAX_WARN_NAMES} more" if len(kept) > _MAX_WARN_NAMES else ""
    logger.warning(
        "Not %s %s%s: urban_detection did not write %s (or %s changed since); the project removes only files it wrote.",
        what, shown, more, "it" if len(kept) == 1 else "them", "it was" if len(kept) == 1 else "they were",
    )


# ------------------------------------------------------------------ ownership
def record_written(path: PathLike) -> list[Path]:
    """Record ``path`` (written by third-party code for the project) as the project's; returns what was recorded.

    For a directory, the directory and everything in it (files and subfolders, not
    links) is recorded, each in the manifest of its own folder. Call it right after
    the writer finished: a later change makes the file foreign again.
    """
    folder, name = _split(path)
    target = folder / name
    st = os.lstat(target)  # FileNotFoundError for a missing path
    recorded = []
    if stat.S_ISDIR(st.st_mode):
        recorded += _record_contents(target)
    _entry(name, st)  # ValueError for a link or special file, before anything is recorded
    return recorded + _record(folder, [name])


def _record_contents(root: Path) -> list[Path]:
    recorded = []
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        names = [n for n in dirnames if not (d / n).is_symlink()] + [
            n for n in filenames if n != MANIFEST_NAME and stat.S_ISREG(os.lstat(d / n).st_mode)
        ]
        recorded += _record(d, names)
    return recorded


def is_owned(path: PathLike) -> bool:
    """True when the project wrote ``path`` and it is unchanged since.

    A directory is the project's when the project made it and it holds no file the
    project did not write.
    """
    folder, name = _split(path)
    target = folder / name
    entries, stats = _snapshot(folder, [name])
    st = stats[name]
    if st is None or name == MANIFEST_NAME:
        return False
    if _foreign_reason(entries.get(name), st) is not None:
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
        entries, stats = _snapshot(d, names)
        for n in names:
            st = stats[n]
            if st is not None and _foreign_reason(entries.get(n), st) is not None:
                foreign.append(d / n)
    return foreign


# ------------------------------------------------------------------ removing
def _remove_files(folder: Path, names: list[str]) -> tuple[list[Path], list[Path]]:
    """Remove the project's files among ``folder/<names>``: (removed, kept)."""
    removed, kept = [], []
    names = [n for n in names if n != MANIFEST_NAME]
    if not names:
        return removed, kept
    with _manifest(folder, exclusive=True, create=False) as fd:
        entries = _read(fd)[0] if fd is not None else {}
        changed = False
        for n in names:
            st = _lstat(folder / n)
            if st is None:
                changed |= entries.pop(n, None) is not None  # a stale line
                continue
            if stat.S_ISDIR(st.st_mode) or _foreign_reason(entries.get(n), st) is not None:
                kept.append(folder / n)
                continue
            os.unlink(folder / n)
            entries.pop(n, None)
            removed.append(folder / n)
            changed = True
        if changed and fd is not None:
            _rewrite(fd, entries)
    return removed, kept


def _rmdir_if_empty(d: Path) -> bool:
    """Remove ``d`` when it holds nothing but its manifest."""
    try:
        if set(os.listdir(d)) - {MANIFEST_NAME}:
            return False
        with _manifest(d, exclusive=True, create=False) as fd:
            if set(os.listdir(d)) - {MANIFEST_NAME}:
                return False
            if fd is not None:
                os.unlink(d / MANIFEST_NAME)  # under its lock; only stale lines were left
        os.rmdir(d)
        return True
    except (FileNotFoundError, OSError):  # gone meanwhile, or a file appeared (ENOTEMPTY)
        return False


def _remove_dirs(parent: Path, names: list[str], emptied: set[Path], force: bool = False) -> list[Path]:
    """Remove the empty folders ``parent/<names>`` the project made or this call emptied."""
    removed = []
    if not names:
        return removed
    with _manifest(parent, exclusive=True, create=False) as fd:
        entries = _read(fd)[0] if fd is not None else {}
        changed = False
        for n in names:
            sub = parent / n
            st = _lstat(sub)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue
            if not (force or sub in emptied or _foreign_reason(entries.get(n), st) is None):
                continue
            if _rmdir_if_empty(sub):
                removed.append(sub)
                changed |= entries.pop(n, None) is not None
        if changed and fd is not None:
            _rewrite(fd, entries)
    return removed


def _remove_tree(root: Path, force_root: bool = False) -> tuple[list[Path], list[Path]]:
    removed: list[Path] = []
    kept: list[Path] = []
    emptied: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        d = Path(dirpath)
        links = [n for n in dirnames if (d / n).is_symlink()]
        r, k = _remove_files(d, sorted(filenames) + links)
        gone = _remove_dirs(d, sorted(n for n in dirnames if n not in links), emptied)
        removed += r + gone
        kept += k
        if r or gone:
            emptied.add(d)
    parent = root.parent
    removed += _remove_dirs(parent, [root.name], emptied, force=force_root)
    return removed, kept


def remove_owned(path: PathLike) -> bool:
    """Remove ``path`` if the project wrote it and it is unchanged; otherwise keep it, warn, return False.

    A missing path returns False (no warning). A directory goes through
    :func:`remove_owned_tree`; True when it is gone afterwards.
    """
    folder, name = _split(path)
    target = folder / name
    st = _lstat(target)
    if name == MANIFEST_NAME:
        raise ValueError(f"{target}: the manifest is removed only with its folder")
    if st is None:
        _remove_files(folder, [name])  # forget a stale line, if any
        return False
    if stat.S_ISDIR(st.st_mode):
        remove_owned_tree(target)
        return _lstat(target) is None
    removed, kept = _remove_files(folder, [name])
    _warn_kept(kept)
    return bool(removed)


def remove_owned_tree(folder: PathLike) -> list[Path]:
    """Remove the project's files under ``folder``, then the folders left empty; returns what was removed.

    Files the project did not write stay (with one warning naming them), and so do
    the folders holding them. An empty folder is removed when the project made it or
    this call emptied it, ``folder`` itself included.
    """
    root = Path(os.path.abspath(os.fspath(folder)))
    st = _lstat(root)
    if st is None:
        return []
    if not stat.S_ISDIR(st.st_mode):
        return [root] if remove_owned(root) else []
    removed, kept = _remove_tree(root)
    _warn_kept(kept)
    return removed


def clear_owned(folder: PathLike, pattern: str = "*") -> list[Path]:
    """Remove the project's entries of ``folder`` whose names match ``pattern`` (``fnmatch``, not recursive).

    Matching files go through the ownership check, matching folders through
    :func:`remove_owned_tree`; ``folder`` itself stays. Returns what was removed;
    files the project did not write stay, with a warning naming them.
    """
    d = Path(os.path.abspath(os.fspath(folder)))
    if not d.is_dir():
        return []
    names = sorted(n for n in os.listdir(d) if n != MANIFEST_NAME and fnmatch.fnmatchcase(n, pattern))
    dirs = [n for n in names if (d / n).is_dir() and not (d / n).is_symlink()]
    removed, kept = _remove_files(d, [n for n in names if n not in dirs])
    for n in dirs:
        r, k = _remove_tree(d / n)
        removed += r
        kept += k
    _warn_kept(kept)
    return removed


# ------------------------------------------------------------------ writing files
def _check_replaceable(target: Path) -> None:
    entries, stats = _snapshot(target.parent, [target.name])
    st = stats[target.name]
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{target}: is a directory, not replaced by a file")
    if _is_temp_name(target.name) and stat.S_ISREG(st.st_mode):
        return  # a temporary of an enclosing atomic write (nested writers)
    reason = _foreign_reason(entries.get(target.name), st)
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
        _record(d.parent, [d.name])


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
    folder, name = _split(path)
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
    folder, name = _split(path)
    target = folder / name
    if tmp.parent.resolve() != folder:
        raise ValueError(f"{tmp}: not in the folder of {target}")
    if fsync:
        _fsync_path(tmp)
    with _manifest(folder, exclusive=True, create=True) as fd:
        entries, lines = _read(fd)
        st = _lstat(target)
        nested = _is_temp_name(name) and (st is None or stat.S_ISREG(st.st_mode))
        if st is not None and not nested:
            reason = "it is a directory" if stat.S_ISDIR(st.st_mode) else _foreign_reason(entries.get(name), st)
            if reason is not None:
                discard_temp(tmp)
                raise ForeignFileError(target, reason)
        os.replace(tmp, target)
        if not nested:  # a temporary of an enclosing atomic write is recorded under its final name
            _add(fd, entries, lines, [_entry(name, os.lstat(target))])
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
    st = _lstat(target)
    if st is None:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        _check_replaceable(target)  # a file: the project's, or ForeignFileError
        return
    foreign = foreign_files(target)
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:_MAX_WARN_NAMES])
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
    folder, name = _split(path)
    target = folder / name
    _check_replaceable_dir(target)
    _makedirs(folder)
    tmp = _make_temp_dir(folder, name)
    try:
        yield tmp
        _record_contents(tmp)
        _check_replaceable_dir(target)
    except BaseException:
        _record_contents(tmp)  # all of it was written for the project, in a folder made here
        _remove_tree(tmp, force_root=True)
        raise
    st = _lstat(target)
    old = None
    if st is not None and stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        old = _make_temp_dir(folder, name, ".udold")
        os.rename(target, old / name)  # inside a fresh folder, so nothing else is ever replaced
    elif st is not None:
        _remove_files(folder, [name])
    try:
        os.rename(tmp, target)
    except OSError:
        if old is not None:
            os.rename(old / name, target)
            _rmdir_if_empty(old)
        _remove_tree(tmp, force_root=True)
        raise
    _record(folder, [name])
    _fsync_path(folder, directory=True)
    if old is not None:
        _, kept = _remove_tree(old / name, force_root=True)
        _rmdir_if_empty(old)
        _warn_kept(kept, "removing the replaced copy of")


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
