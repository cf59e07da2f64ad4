"""What happened to one ingest source: frames read and written, objects, skips by reason, errors and frame-index rows.

Bad input never raises: each problem is logged as a warning naming the file and the
record index and counted under a reason key (see :data:`SKIP_REASONS`). Record-level
failures (a frame or file lost) are also listed in ``errors``; label and box problems
are counted per box and warned once per file and reason, listing the records
(:func:`note_label_problems`, :func:`flush_label_notes`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

from urban_detection.waymo.example import CLASS_NAMES
from urban_detection.waymo.records import UNKNOWN

logger = logging.getLogger(__name__)

MAX_ERRORS_PER_FILE = 100
SKIP_REASONS: tuple[str, ...] = (
    "empty_file",
    "unknown_format",
    "truncated_file",
    "corrupt_record",
    "no_camera_image",
    "bad_image",
    "label_sign",
    "label_unknown",
    "box_clipped",
    "box_outside",
    "box_zero_area",
    "box_non_finite",
    "missing_file",
    "duplicate_trip",
    "worker_error",
    "missing_box_file",  # v2 segment without camera_box file: skipped (its objects are unlabelled)
    "bad_component_file",  # v2 component file unreadable or lacking columns
    "duplicate_image",  # v2: two images of one camera and timestamp (the first is used)
)


@dataclass
class TripResult:
    """What happened to one input file."""

    trip: str
    source: str
    output: str | None = None
    format: str = UNKNOWN
    frames_read: int = 0
    frames_selected: int = 0
    frames_written: int = 0
    objects: dict[str, int] = field(default_factory=lambda: {name: 0 for name in CLASS_NAMES})
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    reused: bool = False
    pid: int = 0  # process that converted the file

    def __post_init__(self):
        self._label_notes: dict[str, list[tuple[int, int]]] = {}  # reason -> [(record, n)], not serialised

    def count(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + int(n)

    def problem(self, reason: str, record: int | None, detail: str, n: int = 1, error: bool = True) -> None:
        """Count ``reason``, log a warning naming file and record, keep an error entry."""
        self.count(reason, n)
        where = f"record {record}" if record is not None else "file"
        logger.warning("%s: %s: %s (%s)", self.source, where, detail, reason)
        if error and len(self.errors) < MAX_ERRORS_PER_FILE:
            self.errors.append({"file": self.source, "record": record, "reason": reason, "error": detail})

    @property
    def objects_total(self) -> int:
        return int(sum(self.objects.values()))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TripResult":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def note_label_problems(result: TripResult, record: int, counts: dict[str, int]) -> None:
    """Count label/box problems; the warnings are summarised per file and reason."""
    for reason, n in counts.items():
        if n:
            result.count(reason, n)
            result._label_notes.setdefault(reason, []).append((record, n))


def _records_text(records: list[int]) -> str:
    if len(records) == 1:
        return f"record {records[0]}"
    shown = ", ".join(str(r) for r in records[:8])
    more = f", ... (+{len(records) - 8} more)" if len(records) > 8 else ""
    return f"records {shown}{more}"


def flush_label_notes(result: TripResult) -> None:
    """Warn once per reason about the label/box problems noted so far, listing their records."""
    for reason, notes in sorted(result._label_notes.items()):
        records = [r for r, _ in notes]
        total = sum(n for _, n in notes)
        if reason == "box_clipped":
            what = f"clipped {total} box(es) partly outside the image"
        else:
            what = f"dropped {total} label(s)"
        logger.warning("%s: %s: %s (%s)", result.source, _records_text(records), what, reason)
    result._label_notes.clear()
