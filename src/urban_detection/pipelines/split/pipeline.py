"""Split: trip-level assignment, then verification. Only the verified ``split_manifest`` is
read downstream (eda, train, evaluate), so a leak stops the run before any training."""
from kedro.pipeline import Pipeline, node, pipeline

from .nodes import assign_splits, verify_split


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(assign_splits, ["trips", "params:split"], "split_proposal", name="assign_splits"),
            node(verify_split, ["split_proposal", "trips"], ["split_manifest", "split_report"], name="verify_split"),
        ]
    )
