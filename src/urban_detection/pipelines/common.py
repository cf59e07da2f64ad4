"""Small helpers shared by the pipelines' nodes."""
from __future__ import annotations

from typing import Any

from urban_detection.detection.config import name_list


def load_partition(value: Any) -> Any:
    """PartitionedDataset partitions load lazily: they are callables."""
    return value() if callable(value) else value


def is_selected(name: str, params: dict) -> bool:
    """Whether experiment ``name`` is in ``params['experiments']`` (missing or ``all``: every one)."""
    wanted = name_list(params.get("experiments"))
    return wanted is None or name in wanted
