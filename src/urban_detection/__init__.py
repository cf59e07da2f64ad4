"""urban_detection: Waymo camera trips to a trained, evaluated and visualised detector."""

__version__ = "0.1.0"
