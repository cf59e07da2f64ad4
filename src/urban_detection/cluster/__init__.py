"""Training past one machine: each experiment as a Ray job, multi-worker training through Ray Train,
and the MLflow tracking server the workers log through. No Kedro here.

- :mod:`.options`: ``train.ray_address``, ``train.resources``, ``train.workers`` (validated);
- :mod:`.connection`: one Ray connection per process, shared by concurrent nodes;
- :mod:`.shipping`: a trained detector as plain data (weights and record) between processes;
- :mod:`.remote`: one experiment trained in a Ray task, the driver waiting for it;
- :mod:`.multiworker`: one experiment trained on N Ray workers with ``MultiWorkerMirroredStrategy``;
- :mod:`.tracking_server`: the ``mlflow server`` a run starts on the driver.
"""
