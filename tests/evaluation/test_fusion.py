"""Late fusion of raw test logits (FACTS §8) on hand-made runs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kskel.errors import KskelError
from kskel.evaluation import fusion

LABELS = np.array([0, 1, 2, 1, 2], dtype=np.int32)
JOINT = [[2, 1, 0], [1.5, 1, 0], [0, 0.5, 1], [0, 0, 3], [0, 0, 5]]
BONE = [[0, 1, 0.5], [0, 2, 0], [1, 0, 0], [0, 2, 0], [0, 2, 0]]
MOTION = [[1, 0, 0], [0, 0, 1], [0, 0, 2], [0, 4, 0], [0, 2, 0]]
# 0.6 * joint + 0.6 * bone + 0.4 * motion, by hand; every argmax is right.
FUSED = [
    [1.6, 1.2, 0.3],
    [0.9, 1.8, 0.4],
    [0.6, 0.3, 1.4],
    [0.0, 2.8, 1.8],
    [0.0, 2.0, 3.0],
]
# Per stream, the argmaxes 0 0 2 2 2 / 1 1 0 1 1 / 0 2 2 1 1 are right on
# 3, 2 and 3 of the 5 samples. Sample 4 is right only with raw logits:
# fusing softmax outputs instead gives class 1 (0.79 against 0.70).


def _run(path, logits, labels=LABELS, stream=None):
    os.makedirs(path, exist_ok=True)
    np.save(os.path.join(path, "test_logits.npy"), np.float32(logits))
    np.save(os.path.join(path, "test_labels.npy"), np.int32(labels))
    if stream:
        with open(os.path.join(path, "results.json"), "w") as file:
            json.dump({"stream": stream, "method": "actclr"}, file)
    return str(path)


@pytest.fixture
def runs(tmp_path):
    return [
        _run(tmp_path / "joint", JOINT, stream="joint"),
        _run(tmp_path / "bone", BONE, stream="bone"),
        _run(tmp_path / "motion", MOTION, stream="motion"),
    ]


def test_fused_logits_and_accuracies_are_hand_computed(runs, tmp_path):
    out = str(tmp_path / "fused")
    results = fusion.fuse_runs(runs, model_dir=out)
    assert results["weights"] == [0.6, 0.6, 0.4]
    assert results["top1"] == 1.0
    assert results["top5"] == 1.0
    assert results["num_samples"] == 5
    assert [r["top1"] for r in results["runs"]] == [0.6, 0.4, 0.6]
    assert results["stream"] == "joint+bone+motion"
    assert results["method"] == "actclr"
    np.testing.assert_allclose(
        np.load(os.path.join(out, "test_logits.npy")), FUSED, atol=1e-6
    )
    np.testing.assert_array_equal(
        np.load(os.path.join(out, "test_labels.npy")), LABELS
    )
    with open(os.path.join(out, "results.json")) as file:
        written = json.load(file)
    assert written["protocol"] == "fusion"
    assert written["top1"] == 1.0


def test_explicit_weights_change_the_result(runs):
    # Joint alone: its own accuracy.
    assert fusion.fuse_runs(runs, [1, 0, 0])["top1"] == 0.6
    # 0.6 joint + 0.4 bone, by hand: [1.2, 1, .2], [.9, 1.4, 0],
    # [.4, .3, .6], [0, .8, 1.8], [0, .8, 3]: argmaxes 0 1 2 2 2, 4 right.
    assert fusion.fuse_runs(runs, [0.6, 0.4, 0.0])["top1"] == 0.8


def test_a_fusion_output_is_itself_a_run(runs, tmp_path):
    out = str(tmp_path / "fused")
    fusion.fuse_runs(runs, model_dir=out)
    again = fusion.fuse_runs([out], [2.0])
    assert again["top1"] == 1.0
    assert again["runs"][0]["protocol"] == "fusion"


def test_mismatched_labels_name_the_run(runs, tmp_path):
    other = _run(tmp_path / "other", MOTION, labels=[0, 1, 2, 1, 0])
    with pytest.raises(KskelError, match=f"{other}: test_labels.npy differs"):
        fusion.fuse_runs(runs[:2] + [other], [1, 1, 1])


def test_mismatched_shapes_name_the_run(runs, tmp_path):
    other = _run(tmp_path / "other", np.zeros((5, 4)))
    with pytest.raises(KskelError, match=f"{other}: logits of shape"):
        fusion.fuse_runs([runs[0], other], [1, 1])


def test_weight_count_must_match_runs(runs, tmp_path):
    with pytest.raises(KskelError, match="--weights: 2 weights for 3 runs"):
        fusion.fuse_runs(runs, [0.5, 0.5], model_dir=str(tmp_path / "o"))
    assert not os.path.exists(tmp_path / "o")


def test_default_weights_need_three_runs_in_stream_order(runs):
    with pytest.raises(KskelError, match="for three runs"):
        fusion.fuse_runs(runs[:2])
    with pytest.raises(KskelError, match="Reorder --runs or pass --weights"):
        fusion.fuse_runs([runs[1], runs[0], runs[2]])
    # Explicit weights accept any order.
    fusion.fuse_runs([runs[1], runs[0], runs[2]], [0.6, 0.6, 0.4])


def test_missing_run_and_missing_logits(runs, tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(KskelError, match=f"{missing}: no such run"):
        fusion.fuse_runs([runs[0], missing], [1, 1])
    os.remove(os.path.join(runs[2], "test_logits.npy"))
    with pytest.raises(KskelError, match="no test_logits.npy"):
        fusion.fuse_runs(runs)


def test_cli_writes_results(runs, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.fuse",
            f"--runs={','.join(runs)}",
            "--weights=1,0,0",
            f"--model_dir={out}",
        ],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "fused: top-1 0.6000" in proc.stdout
    with open(out / "results.json") as file:
        results = json.load(file)
    assert results["weights"] == [1.0, 0.0, 0.0]
    assert results["flags"]["runs"] == runs
