"""Experiment selection as the command line gives it: names joined by "+", groups, and a clear
error for the comma list that Kedro's --params parser splits apart."""
from __future__ import annotations

import click
import pytest

from urban_detection.cli import check_params_text
from urban_detection.detection.config import selected_names

CATALOG = {"baseline": {}, "augs2": {}, "augs3": {"parent": "augs2"}, "fast_cpu": {}}


@pytest.mark.parametrize("value, names", [
    (["baseline", "augs3"], ["baseline", "augs3"]),                    # YAML list
    ("baseline+augs3", ["baseline", "augs3"]),                         # --params "train.experiments=baseline+augs3"
    (" baseline + augs3 ", ["baseline", "augs3"]),
    ("fast_cpu", ["fast_cpu"]),
    ("study", ["baseline", "augs2", "augs3"]),                          # a group
    ("study+fast_cpu+baseline", ["baseline", "augs2", "augs3", "fast_cpu"]),  # each once, in order
    ("all", ["baseline", "augs2", "augs3", "fast_cpu"]),
    ("", []),
    (None, []),
])
def test_selected_names(value, names):
    params = {"experiments": value, "groups": {"study": ["baseline", "augs2", "augs3"]}, "catalog": CATALOG}
    assert selected_names(params) == names


def test_a_comma_list_is_refused_with_the_form_that_works():
    with pytest.raises(click.BadParameter) as err:
        check_params_text("train.experiments=[baseline,augmentations_small_lr],train.settings.train.steps=5")
    message = str(err.value)
    assert "train.experiments=baseline+augmentations_small_lr" in message and "train.experiments=study" in message
    with pytest.raises(click.BadParameter, match=r"evaluate\.splits.*conf/local/parameters\.yml"):
        check_params_text("evaluate.splits=[val, test]")


@pytest.mark.parametrize("text", ["train.experiments=[baseline]", "train.experiments=baseline+augs3",
                                  "train.settings.model.image_size=256,train.settings.train.batch_size=4", ""])
def test_forms_that_kedro_parses_pass(text):
    check_params_text(text)
