from kedro.pipeline import Pipeline, node, pipeline

from .nodes import assign_splits, verify_split


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(assign_splits, ["frame_index", "params:split"], "split_manifest", name="assign_splits"),
            node(verify_split, ["split_manifest", "frame_index"], "split_report", name="verify_split"),
        ]
    )
