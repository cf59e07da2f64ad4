import pytest

from .helpers import make_dataset_dir, train_tiny


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    return make_dataset_dir(tmp_path_factory.mktemp("eval_data"))


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory, tiny_data):
    """A detector trained 250 steps on the train trip only (48 frames; val and test frames are unseen);
    its checkpoint dir is laid out like the train pipeline's."""
    model_dir = tmp_path_factory.mktemp("models") / "tiny"
    model, cfg = train_tiny(model_dir, [tiny_data["paths"]["trip_train"]])
    return {"model": model, "config": cfg, "model_dir": model_dir, "checkpoint_dir": model_dir / "checkpoints"}
