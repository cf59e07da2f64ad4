"""hooks/timing.py: the summary of where a run's time went, and MLflow-safe keys."""
from urban_detection.hooks.timing import metric_key, time_table


def test_time_table_lists_the_slowest_nodes_first_with_their_share_and_sums_the_rest():
    seconds = {"a": 1.0, "b": 30.0, "c": 9.0, "d": 0.5}
    lines = time_table(seconds, wall=50.0, shown=2)
    assert [line.split()[0] for line in lines[:2]] == ["b", "c"]
    assert lines[0].endswith("60.0%") and "30.0 s" in lines[0]
    assert lines[2].startswith("2 other nodes") and "1.5 s" in lines[2]
    assert lines[-1].startswith("run (wall)") and "50.0 s" in lines[-1]


def test_metric_key_keeps_namespaced_node_names_and_replaces_what_mlflow_refuses():
    assert metric_key("fast_cpu.train") == "time/fast_cpu.train"
    assert metric_key("eda.count[x]") == "time/eda.count_x_"
