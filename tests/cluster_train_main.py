"""A driver that trains one pickled ``ExperimentJob`` on a Ray cluster, for tests/test_cluster_training.py.

``python cluster_train_main.py job.pkl out`` connects to the cluster at ``$RAY_TEST_ADDRESS`` (127.0.0.1
addresses as given, as the test cluster needs), trains with ``train.workers`` from ``$RAY_TEST_WORKERS``
through :func:`urban_detection.cluster.remote.train_on_ray`, and writes what the driver got back:
``<out>.json`` (step, MLflow run, summary) and ``<out>.npz`` (the detector's weights).
"""
from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path


def main(job_path: str, out: str) -> None:
    import numpy as np
    from ray_cluster import addresses_as_given

    from urban_detection.cluster import connection
    from urban_detection.cluster.options import launch_options
    from urban_detection.cluster.remote import train_on_ray

    job = pickle.loads(Path(job_path).read_bytes())
    options = launch_options(os.environ["RAY_TEST_ADDRESS"], {"num_cpus": 1}, int(os.environ["RAY_TEST_WORKERS"]))
    with addresses_as_given():
        try:
            trained = train_on_ray(job, options)
        finally:
            connection.release()
    np.savez(out + ".npz", *trained.model.get_weights())
    Path(out + ".json").write_text(json.dumps({"step": trained.step, "run_id": trained.run_id,
                                               "summary": trained.summary}, default=float))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main(sys.argv[1], sys.argv[2])
