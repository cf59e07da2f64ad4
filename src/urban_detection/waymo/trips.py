"""Ingested trips: one TFRecord of tf.Examples per trip plus the frame index that lists them.

A :class:`Trips` is what ``catalog.load("trips")`` returns: the folder, the frame index
(one row per kept frame, ``path`` resolved to the trip file) and helpers to pick the
files of a split. No Kedro here; :mod:`urban_detection.datasets.trips` stores it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

SPLITS = ("train", "val", "test")


class SplitLeakError(ValueError):
    """Raised when a trip or an identical frame image sits in two splits."""


@dataclass
class Trips:
    """Trip TFRecords under ``root`` and their frame index (``path`` column: absolute file paths);
    ``report``: what the ingest that wrote them read, wrote and skipped (``None`` when unknown)."""

    root: Path
    index: pd.DataFrame
    report: dict | None = field(default=None, repr=False)

    def __post_init__(self):
        self.root = Path(self.root)

    @property
    def names(self) -> list[str]:
        return sorted(self.index["trip"].astype(str).unique())

    def paths(self, trips=None) -> list[str]:
        """Sorted trip files, of ``trips`` (names) when given."""
        rows = self.index if trips is None else self.index[self.index["trip"].isin(set(trips))]
        return sorted(rows["path"].astype(str).unique())

    def split_paths(self, split_manifest: pd.DataFrame, split: str) -> list[str]:
        """The trip files of ``split`` according to ``split_manifest`` (columns ``trip, split``)."""
        return self.paths(split_manifest.loc[split_manifest["split"] == split, "trip"])

    def frames(self, split_manifest: pd.DataFrame | None = None, split: str | None = None) -> pd.DataFrame:
        """The index rows, of one split when given."""
        if split is None:
            return self.index
        trips = set(split_manifest.loc[split_manifest["split"] == split, "trip"])
        return self.index[self.index["trip"].isin(trips)]

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"Trips({self.root}, {self.index['trip'].nunique()} trips, {len(self.index)} frames)"


def data_fingerprint(trips: Trips, split_manifest: pd.DataFrame, split: str = "train") -> dict:
    """What a model trained on ``split`` saw: its trip names and every frame's image hash.

    Returns ``{"sha": <hex>, "trips": n, "frames": n}``; the sha changes when a trip,
    a frame or a pixel of the split changes (image hashes come from ingest).
    """
    rows = trips.frames(split_manifest, split).sort_values(["trip", "frame"])
    digest = hashlib.sha256()
    for trip, frame, image_hash in rows[["trip", "frame", "image_hash"]].itertuples(index=False):
        digest.update(f"{trip}\t{frame}\t{image_hash}\n".encode())
    return {"sha": digest.hexdigest(), "trips": int(rows["trip"].nunique()), "frames": int(len(rows))}
