"""Actionlet localisation: AUC, IoU, pooling, and scores of a real model."""

import itertools

import numpy as np
import pytest

from kskel.data import schema
from kskel.errors import KskelError
from kskel.evaluation import localisation


def test_auc_hand_computed():
    # Positives 0.35, 0.8; negatives 0.1, 0.4: 3 of 4 pairs ordered.
    assert localisation.roc_auc(
        [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    ) == pytest.approx(0.75)
    # Ties count 1/2: pairs (a,b) tie, (a,c) win, (d,b) tie, (d,c) win.
    assert localisation.roc_auc(
        [0.5, 0.5, 0.2, 0.5], [1, 0, 0, 1]
    ) == pytest.approx(0.75)
    # Inverted ranking and all ties.
    assert localisation.roc_auc([3, 2, 1, 0], [0, 0, 1, 1]) == 0.0
    assert localisation.roc_auc(np.ones(5), [1, 0, 1, 0, 0]) == 0.5


def test_auc_equals_pair_count_with_many_ties(rng):
    scores = rng.integers(0, 4, size=40).astype(float)
    labels = rng.uniform(size=40) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairs = list(itertools.product(pos, neg))
    expected = np.mean(
        [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs]
    )
    assert localisation.roc_auc(
        scores.reshape(4, 10), labels.reshape(4, 10)
    ) == pytest.approx(expected)


def test_auc_undefined_without_both_classes():
    assert np.isnan(localisation.roc_auc([0.1, 0.9], [1, 1]))
    assert np.isnan(localisation.roc_auc([0.1, 0.9], [0, 0]))


def test_iou_hand_computed():
    # Intersection {0, 4}, union {0, 1, 2, 4}.
    assert localisation.iou([1, 1, 0, 0, 1], [1, 0, 1, 0, 1]) == 0.5
    assert localisation.iou([0, 0], [1, 1]) == 0.0
    assert np.isnan(localisation.iou([0, 0], [0, 0]))


def test_downsample_time_max_pools_groups_of_four():
    mask = np.zeros((10, 3), np.float32)  # T = 10 -> cells [0-3][4-7][8-9]
    mask[5, 0] = 1.0
    mask[9, 1] = 1.0
    mask[3, 2] = 1.0
    mask[4, 2] = 0.25
    pooled = localisation.downsample_time(mask[None], 3)[0]
    np.testing.assert_array_equal(pooled, [[0, 0, 1], [1, 0, 0.25], [0, 1, 0]])
    # The mean pads the short last group [8, 9] with frame 9: (0+1+1+1)/4.
    mean = localisation.downsample_time(mask, 3, reduce="mean")
    np.testing.assert_allclose(
        mean, [[0, 0, 0.25], [0.25, 0, 0.0625], [0, 0.75, 0]]
    )
    with pytest.raises(KskelError, match="does not match"):
        localisation.downsample_time(mask, 2)
    with pytest.raises(KskelError, match="reduce"):
        localisation.downsample_time(mask, 3, reduce="sum")


def _ground_truth(rng, shape=(6, 2, 50, 25)):
    """Random action windows on random joints, as the synthetic data."""
    truth = np.zeros(shape, np.float32)
    for n, m in np.ndindex(*shape[:2]):
        start = rng.integers(0, 30)
        joints = rng.choice(shape[3], size=6, replace=False)
        truth[n, m, start : start + 15, joints] = 1.0
    return truth


def test_perfect_and_constant_actionlets(rng):
    truth = _ground_truth(rng)
    present = np.ones(truth.shape[:2], bool)
    perfect = localisation.downsample_time(truth, 13)
    scores = localisation.score_actionlets(perfect, truth, present)
    for level in ("cell", "joint"):
        assert scores[level] == {"iou": 1.0, "auc": 1.0}
    assert not scores["collapsed"] and "note" not in scores
    assert scores["actionlet_mean"] == pytest.approx(perfect.mean())

    zeros = localisation.score_actionlets(
        np.zeros_like(perfect), truth, present
    )
    for level in ("cell", "joint"):
        assert zeros[level] == {"iou": 0.0, "auc": 0.5}
    assert zeros["collapsed"] and "AUC 0.5" in zeros["note"]

    ones = localisation.score_actionlets(np.ones_like(perfect), truth, present)
    assert ones["saturated"]
    assert ones["cell"]["iou"] == pytest.approx(
        ones["ground_truth_rate"]["cell"]
    )


def test_hand_computed_scores_and_absent_bodies():
    # One present body, T = 8 -> 2 cells, 3 joints. Ground truth: joint 0
    # moves in frames 2-5 (cells 0 and 1), joint 1 never, joint 2 in 7.
    truth = np.zeros((1, 2, 8, 3), np.float32)
    truth[0, 0, 2:6, 0] = 1.0
    truth[0, 0, 7, 2] = 1.0
    actionlet = np.zeros((1, 2, 2, 3), np.float32)
    actionlet[0, 0] = [[0.9, 0.6, 0.1], [0.2, 0.0, 0.7]]
    # The absent body holds nonsense that must not count.
    truth[0, 1] = 1.0
    actionlet[0, 1] = 0.0
    present = np.array([[True, False]])
    scores = localisation.score_actionlets(actionlet, truth, present)
    # Cells: truth {(0,0), (1,0), (1,2)}; on {(0,0), (0,1), (1,2)}.
    assert scores["cell"]["iou"] == pytest.approx(2 / 4)
    # Cell AUC: positives 0.9, 0.2, 0.7; negatives 0.6, 0.1, 0.0; only
    # (0.2, 0.6) of the 9 pairs is misordered.
    assert scores["cell"]["auc"] == pytest.approx(8 / 9)
    # Joints: truth {0, 2}; on at some cell {0, 1, 2}; time means
    # 0.55, 0.3, 0.4: positives 0.55, 0.4 beat the negative 0.3.
    assert scores["joint"]["iou"] == pytest.approx(2 / 3)
    assert scores["joint"]["auc"] == 1.0
    assert scores["num_bodies"] == 1
    assert scores["actionlet_mean"] == pytest.approx(2.5 / 6)


def test_present_bodies():
    skeleton = np.zeros((2, 2, 4, 25, 3), np.float32)
    skeleton[0, 0, 1, 3, 2] = 0.5
    skeleton[1, 1, 0, 0, 0] = -1.0
    np.testing.assert_array_equal(
        localisation.present_bodies(skeleton), [[True, False], [False, True]]
    )


class _RecordingModel:
    """Stands in for ActCLR: records batch sizes, returns zero masks."""

    stream = "joint"

    def __init__(self):
        self.batches = []

    def actionlet(self, x):
        self.batches.append(int(x.shape[0]))
        return np.zeros((x.shape[0], x.shape[1], 1, x.shape[3]), "float32")


def test_predict_actionlets_never_makes_a_tiny_last_batch():
    model = _RecordingModel()
    skeleton = np.zeros((9, 2, 4, 25, 3), np.float32)
    out = localisation.predict_actionlets(model, skeleton, "ntu25", 4)
    assert out.shape == (9, 2, 1, 25)
    assert model.batches == [3, 3, 3]


def test_speed_actionlet_marks_the_moving_joint():
    skeleton = np.zeros((1, 2, 8, 3, 3), np.float32)
    # Joint 1 of body 0 moves 1 per frame in frames 4-7 (cell 1); body 1
    # stands still.
    skeleton[0, 0, 4:, 1, 0] = np.arange(1, 5)
    speed = localisation.speed_actionlet(skeleton, 2)
    expected = np.zeros((1, 2, 2, 3), np.float32)
    expected[0, 0, 1, 1] = 1.0
    np.testing.assert_allclose(speed, expected)
    with pytest.raises(KskelError, match="does not match"):
        localisation.speed_actionlet(skeleton, 3)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    from data_prep import synthetic

    path = tmp_path_factory.mktemp("localisation") / "data"
    synthetic.generate_dataset(str(path), 60, seed=1)
    return str(path)


@pytest.fixture(scope="module")
def actclr(synthetic_dir):
    """An untrained tiny ActCLR (the scores' plumbing, not their value)."""
    from kskel.pretraining import PretrainConfig
    from kskel.pretraining import build_model

    config = PretrainConfig(
        method="actclr",
        data_dir=synthetic_dir,
        base_width=4,
        hidden_dim=16,
        feature_dim=16,
        queue_size=64,
        batch_size=16,
        actclr_topk=16,
        key_init="copy",
    )
    manifest = schema.load_manifest(synthetic_dir)
    return build_model(config, schema.sample_shape(manifest))


def test_actionlet_scores_of_an_actclr_model(actclr, synthetic_dir):
    scores = localisation.actionlet_scores(
        actclr, synthetic_dir, "test", batch_size=16, threshold=0.5
    )
    test_size = schema.load_manifest(synthetic_dir)["splits"]["test"]
    assert scores["num_samples"] == test_size["num_samples"]
    assert scores["cells"] == 13 and scores["stream"] == "joint"
    assert scores["anchor"] == "dataset_mean"
    # The paper's actionlet is the pretraining CLI's default.
    assert (scores["gradient_activation"], scores["mask_smoothing"]) == (
        "relu",
        "adjacency",
    )
    assert scores["mask_threshold"] == 0.3
    assert 0.0 <= scores["actionlet_mean"] <= 1.0
    for level in ("cell", "joint"):
        for key in ("iou", "auc"):
            value = scores[level][key]
            assert value is None or 0.0 <= value <= 1.0
    # The model-free reference finds the moving joints on this data.
    baseline = scores["speed_baseline"]
    assert baseline["cell"]["auc"] > 0.65 and baseline["joint"]["auc"] > 0.6
    # Body 0 is always present, body 1 in two-person and some other
    # samples.
    assert test_size["num_samples"] <= scores["num_bodies"]
    assert scores["num_bodies"] <= 2 * test_size["num_samples"]


def test_actionlet_scores_errors(actclr, synthetic_dir, tmp_path):
    with pytest.raises(KskelError, match="threshold"):
        localisation.actionlet_scores(actclr, synthetic_dir, "test", 4, 1.0)
    with pytest.raises(KskelError, match="need an ActCLR"):
        localisation.actionlet_scores(_RecordingModel(), synthetic_dir, "test")
    with pytest.raises(KskelError, match="no split 'dev'"):
        localisation.actionlet_scores(actclr, synthetic_dir, "dev")
    plain = tmp_path / "plain"
    sample = schema.Sample(
        skeleton=np.ones((2, 50, 25, 3), np.float32),
        label=0,
        name="a",
        num_frames=50,
    )
    schema.write_dataset(
        plain,
        {"test": [sample]},
        layout="ntu25",
        class_names=["x"],
        preprocessing={},
    )
    with pytest.raises(KskelError, match="no ground-truth actionlets"):
        localisation.actionlet_scores(actclr, str(plain), "test")
    short = tmp_path / "short"
    sample.skeleton = np.ones((2, 20, 25, 3), np.float32)
    sample.actionlet = np.zeros((2, 20, 25), np.float32)
    sample.num_frames = 20
    schema.write_dataset(
        short,
        {"test": [sample]},
        layout="ntu25",
        class_names=["x"],
        preprocessing={},
    )
    with pytest.raises(KskelError, match="pretrained on"):
        localisation.actionlet_scores(actclr, str(short), "test")
