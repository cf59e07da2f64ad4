"""EDA: tables and PNG figures in ``data/08_reporting/eda/``, each also an MLflow artifact (``eda/``).

Every node is in the namespace ``eda`` (``eda.count_classes``, ...), so ``kedro viz`` draws the
EDA as one collapsible block and ``kedro run --namespaces=eda`` runs it alone. The datasets keep
their catalog names (``eda_class_counts``, ...): ``prefix_datasets_with_namespace=False``.
"""
from kedro.pipeline import Pipeline, node, pipeline

from . import nodes

NAMESPACE = "eda"


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(nodes.frames_with_splits, ["trips", "split_manifest"], "eda_frames", name="attach_splits"),
            # counts: frame index only
            node(nodes.class_counts, "eda_frames", "eda_class_counts", name="count_classes"),
            node(nodes.class_counts_by_condition, "eda_frames", "eda_class_counts_by_condition",
                 name="count_classes_by_condition"),
            node(nodes.class_counts_per_trip, "eda_frames", "eda_class_counts_per_trip", name="count_classes_per_trip"),
            node(nodes.sampled_class_counts, ["eda_frames", "params:eda"], "eda_sampled_class_counts",
                 name="count_classes_in_random_sample"),
            node(nodes.class_counts_figure, ["eda_class_counts", "eda_sampled_class_counts"], "eda_class_counts_plot",
                 name="plot_class_counts"),
            node(nodes.conditions_figure, "eda_class_counts_by_condition", "eda_class_counts_by_condition_plot",
                 name="plot_class_counts_by_condition"),
            node(nodes.objects_per_frame_figure, "eda_frames", "eda_objects_per_frame_plot",
                 name="plot_objects_per_frame"),
            # boxes: box keys of the trip TFRecords, no image decode
            node(nodes.read_boxes, "eda_frames", "eda_boxes", name="read_boxes"),
            node(nodes.box_size_table, ["eda_boxes", "params:eda"], "eda_box_sizes", name="tabulate_box_sizes"),
            node(nodes.box_size_figure, ["eda_boxes", "params:eda"], "eda_box_sizes_plot", name="plot_box_sizes"),
            node(nodes.aspect_ratio_figure, ["eda_boxes", "params:eda"], "eda_aspect_ratios_plot",
                 name="plot_aspect_ratios"),
            # images: decoded for a brightness sample per trip and the gallery only
            node(nodes.trip_brightness, ["eda_frames", "params:eda"], "eda_trip_brightness",
                 name="measure_trip_brightness"),
            node(nodes.brightness_figure, "eda_trip_brightness", "eda_trip_brightness_plot",
                 name="plot_trip_brightness"),
            node(nodes.gallery_figure, ["eda_frames", "params:eda"], "eda_gallery", name="draw_gallery"),
        ],
        namespace=NAMESPACE,
        prefix_datasets_with_namespace=False,
    )
