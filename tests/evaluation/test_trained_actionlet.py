"""A trained ActCLR actionlet concentrates on the truly moving joints.

`tests/fixtures/actclr_actionlet/key_network.keras` is the key network of
the seed-0 ActCLR run of the demo recipe with a longer second phase and
the CLI's default (the paper's) actionlet; its commands and the other
seeds' scores are in `tests/fixtures/actclr_actionlet/README.md`. Loaded
into a model of `configs/actclr_demo.cfg` with the training split's
average motion as the anchor, as pretraining sets it, its actionlets on
the regenerated demo dataset's test split are scored against the
ground-truth motion mask (`kskel.evaluation.localisation`). On this
network, known to localise, the actionlet computation must give a mask
that is neither collapsed nor saturated and ranks moving cells and joints
above still ones well beyond chance (a flipped gradient sign fails all
three tests: ROC-AUC 0.50 / 0.50, mean 0.94).
"""

import pathlib

import pytest

from kskel.data import schema
from kskel.evaluation.localisation import actionlet_scores
from kskel.flag_config import config_from_flagfile
from kskel.pretraining import PretrainConfig
from kskel.pretraining import build_model
from kskel.pretraining import initialise_from
from kskel.pretraining import training_average_motion

FIXTURE = (
    pathlib.Path(__file__).parents[1]
    / "fixtures"
    / "actclr_actionlet"
    / "key_network.keras"
)
# ROC-AUC 0.5 is chance. The encoder and data are fixed, so the floor
# guards against a regression of the actionlet maths, not sampling noise.
MIN_AUC = 0.6

pytestmark = pytest.mark.large


@pytest.fixture(scope="module")
def scores(demo_data_dir):
    config = config_from_flagfile(
        PretrainConfig,
        "configs/actclr_demo.cfg",
        data_dir=demo_data_dir,
        model_dir="-",
        init_from="",
    )
    manifest = schema.load_manifest(demo_data_dir)
    model = build_model(config, schema.sample_shape(manifest))
    initialise_from(model, str(FIXTURE))
    model.set_average_motion(
        training_average_motion(config, manifest["layout"])
    )
    return actionlet_scores(model, demo_data_dir, "test")


def test_actionlet_is_neither_collapsed_nor_saturated(scores):
    # The forms this network was trained and scored with (the paper's).
    assert (scores["gradient_activation"], scores["mask_smoothing"]) == (
        "relu",
        "adjacency",
    )
    assert scores["mask_threshold"] == 0.3
    assert not scores["collapsed"] and not scores["saturated"]
    assert 0.1 < scores["actionlet_mean"] < 0.9


@pytest.mark.parametrize("level", ["cell", "joint"])
def test_actionlet_ranks_moving_parts_first(scores, level):
    print(level, scores[level], "speed baseline", scores["speed_baseline"])
    assert scores[level]["auc"] >= MIN_AUC
    # Better than marking everything: the IoU of an all-on mask is the
    # ground truth's positive rate.
    assert scores[level]["iou"] > scores["ground_truth_rate"][level]
