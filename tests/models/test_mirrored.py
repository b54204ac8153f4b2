"""Under MirroredStrategy every replica's keys reach the queue, in order.

Two replicas with synchronised batch norm take the same step as one replica
with the same global batch: same loss, same queue, same update.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np

SCRIPT = pathlib.Path(__file__).with_name("mirrored_step.py")
ROOT = SCRIPT.parents[2]


def _run(replicas, out):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "tensorflow"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(replicas), str(out)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(out)


def test_two_replicas_match_one(tmp_path):
    one = _run(1, tmp_path / "one.npz")
    two = _run(2, tmp_path / "two.npz")
    assert int(two["ptr"]) == int(one["ptr"]) == 8  # All 8 keys, not 4.
    np.testing.assert_allclose(two["queue"], one["queue"], atol=1e-6)
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    # Gradients are summed over replicas of a loss scaled by 1/replicas:
    # the update equals the single-replica one up to the float error of
    # cross-replica batch statistics (E[x^2] - E[x]^2).
    cosine = np.dot(one["update"], two["update"]) / (
        np.linalg.norm(one["update"]) * np.linalg.norm(two["update"])
    )
    ratio = np.linalg.norm(two["update"]) / np.linalg.norm(one["update"])
    assert cosine > 0.9999 and abs(ratio - 1) < 1e-2
