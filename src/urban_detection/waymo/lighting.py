"""Image brightness, and the lighting (Day, Dawn/Dusk, Night) estimated from it.

Processed files carry no time of day, so on such data a split stratified by time of day
would be random. :func:`estimate_lighting` fills the time of day of those trips from
the median brightness of their frames (the ``brightness`` column ingest writes into the
frame index) and marks it as estimated. Brightness is the mean BT.601 luma (0-255) of
an image (:func:`mean_luma`), the measure the EDA uses too. Values use Waymo's
``time_of_day`` spellings: ``"Day"``, ``"Dawn/Dusk"``, ``"Night"``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from PIL import Image

log = logging.getLogger(__name__)

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" mode and the EDA
DAY, DAWN_DUSK, NIGHT = "Day", "Dawn/Dusk", "Night"
UNKNOWN_VALUES = frozenset({"", "unknown"})  # time_of_day values that mean "not known" (any case)

# Trip median brightness thresholds (mean luma of the 640x640 frames, 0-255).
# Chosen from the real sample (/work/shared/data/waymo_processed_sample: 32 trips, frames
# inspected by eye) and from synthetic trips of each condition:
#   real   night 49 | dusk 76, 84 | day 82 ... 134 (deep shadows and tree cover give 82-91)
#   synth  night 38-48 | dusk 59-74 | dawn 69-92 | day 86-117 (sunny 102-117, rain 86-102)
# NIGHT_BELOW sits between the night trips (<= 49) and the darkest dusk (59); DAY_FROM
# between the darker real dusk trip (76) and the darkest real day trips (82). Brightness
# cannot tell a bright dusk from a shaded day: the real downtown dusk trip at 84 reads as
# Day, the one error on the real sample (31 of 32 right); synthetic dawn, which the
# generator draws nearly as bright as a rainy day, mostly reads as Day.
NIGHT_BELOW = 55.0
DAY_FROM = 80.0


def mean_luma(image: Image.Image | np.ndarray) -> float:
    """Mean BT.601 luma (0-255) of an RGB image (PIL image or uint8 HxWx3 array).

    For a PIL image the channel means come from PIL's histogram (no float copy of the
    pixels, about 1 ms for 640x640); the luma of the means equals the mean of the luma
    because luma is linear.
    """
    if isinstance(image, Image.Image):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        hist = np.asarray(rgb.histogram(), np.float64).reshape(3, 256)
        means = hist @ np.arange(256) / hist[0].sum()
    else:
        means = np.asarray(image, np.float64).reshape(-1, 3).mean(axis=0)
    return float(np.dot(LUMA_WEIGHTS, means))


def lighting_from_brightness(brightness: float) -> str:
    """``"Night"`` below :data:`NIGHT_BELOW`, ``"Day"`` from :data:`DAY_FROM`, else ``"Dawn/Dusk"``."""
    if brightness < NIGHT_BELOW:
        return NIGHT
    return DAY if brightness >= DAY_FROM else DAWN_DUSK


def _is_unknown(time_of_day: pd.Series) -> pd.Series:
    text = time_of_day.astype(object).where(time_of_day.notna(), "")
    return text.map(lambda v: str(v).strip().lower() in UNKNOWN_VALUES).astype(bool)


def estimate_lighting(frame_index: pd.DataFrame) -> pd.DataFrame:
    """The frame index with ``time_of_day`` estimated where no frame of a trip knows it.

    A trip is estimated when every one of its frames has a missing, empty or
    ``"unknown"`` time of day; all its frames then get
    :func:`lighting_from_brightness` of the trip's median ``brightness`` and
    ``time_of_day_estimated = True``. Trips with a known time of day keep their values
    (flag False). A trip to estimate without any brightness value keeps ``"unknown"``
    and is logged. The input is not modified; calling this again on its output keeps
    the earlier flags.
    """
    df = frame_index.copy()
    if "time_of_day" not in df.columns:
        df["time_of_day"] = "unknown"
    earlier = df["time_of_day_estimated"].fillna(False).astype(bool) if "time_of_day_estimated" in df else None
    unknown_trip = _is_unknown(df["time_of_day"]).groupby(df["trip"]).transform("all").astype(bool)
    estimated = pd.Series(False, index=df.index)
    if unknown_trip.any():
        if "brightness" in df.columns:
            brightness = pd.to_numeric(df["brightness"], errors="coerce")
        else:
            brightness = pd.Series(np.nan, index=df.index)
        medians = brightness[unknown_trip].groupby(df.loc[unknown_trip, "trip"]).median()
        missing = medians.index[medians.isna()].tolist()
        if missing:
            log.warning(
                "no brightness for %d trip(s) of unknown time of day, left unknown: %s (re-ingest to add it)",
                len(missing),
                missing[:5],
            )
        labels = medians.dropna().map(lighting_from_brightness)
        estimated = unknown_trip & df["trip"].isin(labels.index)
        df.loc[estimated, "time_of_day"] = df.loc[estimated, "trip"].map(labels)
        counts = labels.value_counts().to_dict()
        log.info("estimated the time of day of %d trip(s) from brightness: %s", len(labels), counts)
    df["time_of_day_estimated"] = estimated if earlier is None else (estimated | earlier)
    return df


__all__ = [
    "DAWN_DUSK",
    "DAY",
    "DAY_FROM",
    "LUMA_WEIGHTS",
    "NIGHT",
    "NIGHT_BELOW",
    "estimate_lighting",
    "lighting_from_brightness",
    "mean_luma",
]
