"""One training step gives the same result on TensorFlow, JAX and PyTorch.

SkeletonCLR, AimCLR and ActCLR start from the same variables (written by
the TensorFlow process) and take one `fit` step on the same batch, each
backend in its own process (`backend_step.py`). JAX also takes
SkeletonCLR's step under `keras.distribution.DataParallel` on two host
devices.

Tolerances (float32). Losses agree to ~1e-5 relative. The update of the
query weights passes through ten batch-norm layers over 8 skeletons, whose
gradients are small differences of large terms. Against TensorFlow with
the generic batch norm (the `keras.ops` path JAX and PyTorch run), JAX and
PyTorch agree to ~1e-5..7e-5 of the update's norm; the bound is 5e-4, far
below what a wrong gradient gives (an error of its own size). TensorFlow's
fused kernel (`FusedBatchNormV3`, the default there: another variance and
gradient formula) moves the update by up to ~4e-3 of its norm with some
initial weights, so the default path is held to the loss, the key EMA,
the statistics, the queue and 2e-2 on the update; it is the same kernel
in every method, so only SkeletonCLR takes that step (AimCLR and ActCLR
are held to the generic step alone). The key network's EMA, the queue and
the batch-norm statistics agree to ~1e-5. The initial weights are seeded
(`backend_step.build`); measured with them, run alone, JAX / PyTorch are
2.9e-5 / 8.1e-5 (SkeletonCLR), 1.1e-5 / 7.0e-5 (AimCLR) and 1.6e-5 /
5.0e-5 (ActCLR, with the official actionlet forms then; the step now
uses the paper's, the pretraining CLI's defaults) of the update away
from the generic step.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

# Alone. AimCLR's failure in CI and in one fresh-clone run (3.2e-2 of the
# update from TensorFlow's generic step, JAX and PyTorch agreeing) was
# TensorFlow's: with two processes sharing the cores its CPU filter
# gradient of block 4's strided 1x1 residual conv (4 input channels) came
# out wrong in 2 of 14 repeated steps, the loss and every other variable
# unchanged. The block now samples the frames before a stride-1 conv (0 of
# 25 wrong). Two earlier failures under load (1.8e-3, 3.3e-2) were not
# kept for diagnosis; the test stays alone in case other kernels race.
pytestmark = pytest.mark.serial

SCRIPT = pathlib.Path(__file__).with_name("backend_step.py")
ROOT = SCRIPT.parents[2]
METHODS = ("skeletonclr", "aimclr", "actclr")


def _run(backend, directory, *extra, env=()):
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(directory), *METHODS, *extra],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "KERAS_BACKEND": backend,
            **dict(env),
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    for module in ("jax", "torch"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (requirements-{module})")
    directory = tmp_path_factory.mktemp("backend_steps")
    _run("tensorflow", directory)  # Writes the initial variables too.
    _run(
        "jax",
        directory,
        "--data_parallel=2",
        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
    )
    _run("torch", directory)
    return directory


def _load(directory, method, name):
    data = np.load(directory / method / f"{name}.npz")
    return {
        "loss": float(data["loss"]),
        "paths": list(data["paths"]),
        "trainable": data["trainable"],
        "values": [data[f"v{i}"] for i in range(len(data["paths"]))],
    }


def _groups(step, init):
    """Updates of the query weights, key weights, batch-norm statistics;
    the queue and its pointer."""
    groups = {"query": [], "key": [], "statistics": []}
    for path, trainable, value, start in zip(
        step["paths"], step["trainable"], step["values"], init
    ):
        network = path.split("/")[0]
        if network.startswith("skeleton_classifier"):
            if trainable:
                # The query network is built first (no name suffix).
                name = "query" if network == "skeleton_classifier" else "key"
                groups[name].append((value - start).ravel())
            else:
                groups["statistics"].append(value.ravel())
        elif path.endswith("queue"):
            groups["queue"] = value
        elif path.endswith("queue_ptr"):
            groups["queue_ptr"] = int(value)
    return {
        k: np.concatenate(v) if isinstance(v, list) else v
        for k, v in groups.items()
    }


def _relative(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("method", METHODS)
def test_one_step_matches_across_backends(steps, method):
    init = np.load(steps / method / "init.npz")
    init = [init[f"v{i}"] for i in range(len(init["paths"]))]
    generic_step = _load(steps, method, "step_tensorflow_generic")
    generic = _groups(generic_step, init)
    # The default (fused batch-norm) step exists for the first method.
    reference = generic_step
    if method == METHODS[0]:
        reference = _load(steps, method, "step_tensorflow")
    expected = _groups(reference, init)
    for backend in ("jax", "torch"):
        step = _load(steps, method, f"step_{backend}")
        assert step["paths"] == reference["paths"]
        assert step["loss"] == pytest.approx(reference["loss"], rel=1e-4)
        got = _groups(step, init)
        assert _relative(got["query"], generic["query"]) < 5e-4, backend
        assert _relative(got["query"], expected["query"]) < 2e-2, backend
        assert _relative(got["key"], expected["key"]) < 1e-4, backend
        assert _relative(got["statistics"], expected["statistics"]) < 1e-5
        np.testing.assert_allclose(got["queue"], expected["queue"], atol=1e-4)
        assert got["queue_ptr"] == expected["queue_ptr"] == 4


def test_jax_data_parallel_matches_one_device(steps, method="skeletonclr"):
    init = np.load(steps / method / "init.npz")
    init = [init[f"v{i}"] for i in range(len(init["paths"]))]
    one = _load(steps, method, "step_jax")
    two = _load(steps, method, "step_jax_dataparallel")
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-5)
    expected, got = _groups(one, init), _groups(two, init)
    assert _relative(got["query"], expected["query"]) < 1e-4
    assert _relative(got["key"], expected["key"]) < 1e-5
    np.testing.assert_allclose(got["queue"], expected["queue"], atol=1e-5)
    assert got["queue_ptr"] == 4  # Keys of both shards, in batch order.
