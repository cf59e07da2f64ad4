"""Trip-level split: every frame of a trip lands in the same split.

Trips are ordered by stratum (time_of_day, weather), shuffled inside each stratum,
then dealt one by one to the split furthest below its target share. Consecutive
trips of a stratum therefore spread over the splits in proportion to the ratios,
so night and rain reach every split when there are enough of them.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from urban_detection.waymo.trips import SPLITS, SplitLeakError, Trips

log = logging.getLogger(__name__)

CLASSES = ("vehicle", "pedestrian", "cyclist")


def _trip_table(frame_index: pd.DataFrame) -> pd.DataFrame:
    def mode(s: pd.Series) -> str:
        s = s.dropna().astype(str)
        return s.mode().iloc[0] if len(s) else "unknown"

    return (
        frame_index.groupby("trip", sort=True)
        .agg(time_of_day=("time_of_day", mode), weather=("weather", mode), frames=("frame", "size"))
        .reset_index()
    )


def _target_counts(n: int, ratios: dict[str, float]) -> dict[str, int]:
    """Largest-remainder apportionment of n trips, at least one per split with a ratio > 0."""
    raw = {s: ratios[s] * n for s in SPLITS}
    counts = {s: int(np.floor(v)) for s, v in raw.items()}
    for s in sorted(SPLITS, key=lambda s: raw[s] - counts[s], reverse=True)[: n - sum(counts.values())]:
        counts[s] += 1
    for s in SPLITS:  # every wanted split gets a trip, taken from the largest
        if ratios[s] > 0 and counts[s] == 0:
            counts[max(counts, key=counts.get)] -= 1
            counts[s] = 1
    return counts


def assign_splits(trips: Trips, params: dict) -> pd.DataFrame:
    """Assign every trip to train/val/test. Returns a ``trip, split, time_of_day, weather`` table.

    Split sizes follow the ratios exactly (largest remainder, at least one trip each).
    Stratification (with at least ``min_trips_to_stratify`` trips): trips carrying the
    rarest condition values (e.g. Night, rain) are dealt first, each to the split that
    lacks its conditions, then to the split furthest below its target, so a condition
    seen on three or more trips reaches every split.
    """
    frame_index = trips.index
    ratios = {s: float(params["ratios"][s]) for s in SPLITS}
    total = sum(ratios.values())
    if total <= 0 or any(r < 0 for r in ratios.values()):
        raise ValueError(f"split ratios must be non-negative and sum above 0, got {ratios}")
    ratios = {s: r / total for s, r in ratios.items()}
    trips = _trip_table(frame_index)
    n = len(trips)
    wanted = [s for s in SPLITS if ratios[s] > 0]
    if n < len(wanted):
        raise ValueError(f"{n} trip(s) cannot fill the {len(wanted)} splits {wanted}; ingest more trips")
    targets = _target_counts(n, ratios)

    rng = np.random.default_rng(int(params.get("seed", 0)))
    trips["_r"] = rng.random(n)
    by = list(params.get("stratify_by") or []) if n >= int(params.get("min_trips_to_stratify", 10)) else []
    if by:
        trips["_rarity"] = sum(trips.groupby(c)["trip"].transform("size") for c in by)
        trips = trips.sort_values(["_rarity", "_r"], kind="stable")
    else:
        trips = trips.sort_values("_r", kind="stable")

    counts = dict.fromkeys(SPLITS, 0)
    seen = {s: set() for s in SPLITS}
    assigned = {}
    for row in trips.itertuples(index=False):
        conditions = {(c, getattr(row, c)) for c in by}
        open_splits = [s for s in wanted if counts[s] < targets[s]]
        split = max(
            open_splits,
            key=lambda s: (len(conditions - seen[s]), (targets[s] - counts[s]) / targets[s], ratios[s]),
        )
        counts[split] += 1
        seen[split] |= conditions
        assigned[row.trip] = split
    trips["split"] = trips.trip.map(assigned)
    log.info("split %d trips: %s", n, counts)
    return trips[["trip", "split", "time_of_day", "weather"]].sort_values("trip").reset_index(drop=True)


def _estimated_trips(frames: pd.DataFrame) -> int:
    """Trips whose time of day was estimated from brightness (see urban_detection.waymo.lighting)."""
    if "time_of_day_estimated" not in frames:
        return 0
    return int(frames.loc[frames["time_of_day_estimated"].astype(bool), "trip"].nunique())


def verify_split(split_proposal: pd.DataFrame, trips: Trips) -> tuple[pd.DataFrame, dict]:
    """Check the proposed split; return it as the verified ``split_manifest`` and the split report.

    Raises :class:`SplitLeakError` (message contains "leak") when a trip is in two
    splits or the same frame image belongs to two trips (one trip under two names: it
    would land in two splits or count twice), and ``ValueError`` when a trip is missing
    from the manifest or a split is empty. Only the returned manifest is read downstream.
    """
    split_manifest, frame_index = split_proposal, trips.index
    problems = []
    dup = split_manifest.groupby("trip")["split"].nunique()
    for trip in dup[dup > 1].index:
        splits = sorted(split_manifest.loc[split_manifest.trip == trip, "split"].unique())
        problems.append(f"trip {trip} is in splits {splits}")

    fi = frame_index.merge(split_manifest[["trip", "split"]].drop_duplicates(), on="trip", how="left")
    missing = sorted(fi.loc[fi.split.isna(), "trip"].unique())
    if missing:
        raise ValueError(f"trips missing from the split manifest: {missing}")

    per_hash = fi.groupby("image_hash")["trip"].nunique()
    shared = per_hash[per_hash > 1].index
    groups: dict[tuple, int] = {}
    for _, rows in fi[fi.image_hash.isin(shared)].groupby("image_hash"):
        key = tuple(sorted({f"{r.trip} ({r.split})" for r in rows.itertuples()}))
        groups[key] = groups.get(key, 0) + 1
    for where, n in groups.items():
        problems.append(f"{n} identical frame image(s) in trips {', '.join(where)} (the same trip under two names?)")
    if problems:
        raise SplitLeakError("split leak: " + "; ".join(problems))

    report: dict = {"splits": {}, "checks": ["no trip in two splits", "no frame image in two trips",
                                             "every trip assigned", "no empty split"], "warnings": []}
    for split in SPLITS:
        part = fi[fi.split == split]
        if part.empty:
            raise ValueError(f"split {split!r} is empty")
        objects = {c: int(part[f"n_{c}"].sum()) for c in CLASSES}
        for c, v in objects.items():
            if v == 0:
                msg = f"class {c!r} is missing from split {split!r}"
                log.warning(msg)
                report["warnings"].append(msg)
        report["splits"][split] = {
            "trips": sorted(part.trip.unique().tolist()),
            "frames": int(len(part)),
            "objects": objects,
            "time_of_day": {str(k): int(v) for k, v in part.drop_duplicates("trip").time_of_day.value_counts().items()},
            "weather": {str(k): int(v) for k, v in part.drop_duplicates("trip").weather.value_counts().items()},
            "time_of_day_estimated_trips": _estimated_trips(part),
        }
    return split_manifest.reset_index(drop=True), report
