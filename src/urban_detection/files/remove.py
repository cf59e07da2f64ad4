"""Removing the project's files and folders: anything it did not write stays, with a warning naming it.

:func:`remove_owned`, :func:`remove_owned_tree` and :func:`clear_owned` remove only
files the ownership manifest (:mod:`urban_detection.files.manifest`) lists as the
project's and unchanged since. A directory is removed only once empty, and only if
the project made it (with :func:`~urban_detection.files.atomic.atomic_dir`, or as a
missing parent folder of an output, both recorded) or this call emptied it (a user's
empty folder stays).
"""

from __future__ import annotations

import fnmatch
import logging
import os
import stat
from pathlib import Path

from urban_detection.files.manifest import (
    MANIFEST_NAME,
    PathLike,
    foreign_reason,
    locked_manifest,
    lstat_or_none,
    read_entries,
    rewrite_entries,
    split_path,
)

logger = logging.getLogger(__name__)

MAX_WARN_NAMES = 20


def warn_kept(kept: list[Path], what: str = "removing") -> None:
    """Warn once, naming (up to :data:`MAX_WARN_NAMES` of) the paths left in place as not the project's."""
    if not kept:
        return
    shown = ", ".join(str(p) for p in kept[:MAX_WARN_NAMES])
    more = f" and {len(kept) - MAX_WARN_NAMES} more" if len(kept) > MAX_WARN_NAMES else ""
    logger.warning(
        "Not %s %s%s: urban_detection did not write %s (or %s changed since); the project removes only files it wrote.",
        what, shown, more, "it" if len(kept) == 1 else "them", "it was" if len(kept) == 1 else "they were",
    )


# ------------------------------------------------------------------ removing
def remove_files(folder: Path, names: list[str]) -> tuple[list[Path], list[Path]]:
    """Remove the project's files among ``folder/<names>``: (removed, kept)."""
    removed, kept = [], []
    names = [n for n in names if n != MANIFEST_NAME]
    if not names:
        return removed, kept
    with locked_manifest(folder, exclusive=True, create=False) as fd:
        entries = read_entries(fd)[0] if fd is not None else {}
        changed = False
        for n in names:
            st = lstat_or_none(folder / n)
            if st is None:
                changed |= entries.pop(n, None) is not None  # a stale line
                continue
            if stat.S_ISDIR(st.st_mode) or foreign_reason(entries.get(n), st) is not None:
                kept.append(folder / n)
                continue
            os.unlink(folder / n)
            entries.pop(n, None)
            removed.append(folder / n)
            changed = True
        if changed and fd is not None:
            rewrite_entries(fd, entries)
    return removed, kept


def rmdir_if_empty(d: Path) -> bool:
    """Remove ``d`` when it holds nothing but its manifest."""
    try:
        if set(os.listdir(d)) - {MANIFEST_NAME}:
            return False
        with locked_manifest(d, exclusive=True, create=False) as fd:
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
    with locked_manifest(parent, exclusive=True, create=False) as fd:
        entries = read_entries(fd)[0] if fd is not None else {}
        changed = False
        for n in names:
            sub = parent / n
            st = lstat_or_none(sub)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue
            if not (force or sub in emptied or foreign_reason(entries.get(n), st) is None):
                continue
            if rmdir_if_empty(sub):
                removed.append(sub)
                changed |= entries.pop(n, None) is not None
        if changed and fd is not None:
            rewrite_entries(fd, entries)
    return removed


def remove_tree(root: Path, force_root: bool = False) -> tuple[list[Path], list[Path]]:
    """:func:`remove_owned_tree` without the warning: (removed, kept); ``force_root`` removes ``root`` once empty."""
    removed: list[Path] = []
    kept: list[Path] = []
    emptied: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        d = Path(dirpath)
        links = [n for n in dirnames if (d / n).is_symlink()]
        r, k = remove_files(d, sorted(filenames) + links)
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
    folder, name = split_path(path)
    target = folder / name
    st = lstat_or_none(target)
    if name == MANIFEST_NAME:
        raise ValueError(f"{target}: the manifest is removed only with its folder")
    if st is None:
        remove_files(folder, [name])  # forget a stale line, if any
        return False
    if stat.S_ISDIR(st.st_mode):
        remove_owned_tree(target)
        return lstat_or_none(target) is None
    removed, kept = remove_files(folder, [name])
    warn_kept(kept)
    return bool(removed)


def remove_owned_tree(folder: PathLike) -> list[Path]:
    """Remove the project's files under ``folder``, then the folders left empty; returns what was removed.

    Files the project did not write stay (with one warning naming them), and so do
    the folders holding them. An empty folder is removed when the project made it or
    this call emptied it, ``folder`` itself included.
    """
    root = Path(os.path.abspath(os.fspath(folder)))
    st = lstat_or_none(root)
    if st is None:
        return []
    if not stat.S_ISDIR(st.st_mode):
        return [root] if remove_owned(root) else []
    removed, kept = remove_tree(root)
    warn_kept(kept)
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
    removed, kept = remove_files(d, [n for n in names if n not in dirs])
    for n in dirs:
        r, k = remove_tree(d / n)
        removed += r
        kept += k
    warn_kept(kept)
    return removed
