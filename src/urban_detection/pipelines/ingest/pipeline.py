"""Ingest: ``ingest_source`` (your raw data; by default the synthetic trips the generator writes into
``synthetic_store``) -> one TFRecord per trip + frame index + report (``trips``) -> ``ingest_report``.

The generator and the conversion each return what they write, and the folder datasets
(``synthetic_store``, ``trips``) write it into their catalog folders: each folder is an output
of the node that fills it (:mod:`urban_detection.datasets.folders`).
"""
from kedro.pipeline import Pipeline, node, pipeline

from .nodes import convert_trips, ingest_report, synthesize_trips


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(synthesize_trips, ["ingest_source", "params:synthetic"], "synthetic_store", name="synthesize_trips"),
            node(convert_trips, ["synthetic_store", "ingest_source", "params:ingest"], "trips", name="ingest_trips"),
            node(ingest_report, "trips", "ingest_report", name="report_ingest"),
        ]
    )
