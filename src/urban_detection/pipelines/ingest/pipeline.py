"""Ingest: (synthetic trips ->) source folder -> one TFRecord per trip + frame index (``trips``)."""
from kedro.pipeline import Pipeline, node, pipeline

from .nodes import ingest_trips, synthesize_trips


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                synthesize_trips,
                ["synthetic_store", "params:synthetic", "params:ingest.source_dir"],
                "synthetic_manifest",
                name="synthesize_trips",
            ),
            node(
                ingest_trips,
                ["synthetic_manifest", "trip_store", "params:ingest"],
                ["trips", "ingest_report"],
                name="ingest_trips",
            ),
        ]
    )
