"""The pretraining CLI on the JAX and PyTorch backends.

The demo flag file runs, shrunk to two steps of a narrow encoder, on each
backend in its own process; it checkpoints as `.npz` files and resumes on
JAX; the `query_network.keras` a JAX run saves loads on TensorFlow and on
PyTorch and gives the same features there.
"""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import kskel.encoders  # noqa: F401  (registers the classes to load)

TINY = [
    "--flagfile=configs/skeletonclr_demo.cfg",
    "--synthetic_samples=24",
    "--steps_per_epoch=2",
    "--batch_size=8",
    "--queue_size=32",
    "--base_width=4",
    "--hidden_dim=16",
    "--feature_dim=16",
    "--verbose=0",
]


def _run(backend, *args):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed (requirements-{backend})")
    result = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("backends")
    data = f"--data_dir={root / 'data'}"
    for backend in ("jax", "torch"):
        out = _run(
            backend,
            "kskel.pretrain",
            *TINY,
            data,
            f"--model_dir={root / backend}",
            "--epochs=1",
        )
        assert "done: 1 epochs" in out
    return root


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_demo_pretraining_runs_and_checkpoints(runs, backend):
    model_dir = runs / backend
    assert (model_dir / "query_network.keras").exists()
    assert sorted(os.listdir(model_dir / "checkpoints")) == ["ckpt-1.npz"]
    with np.load(model_dir / "checkpoints" / "ckpt-1.npz") as saved:
        assert int(saved["completed_epochs"]) == 1


def test_jax_run_resumes_from_its_checkpoint(runs):
    out = _run(
        "jax",
        "kskel.pretrain",
        *TINY,
        f"--data_dir={runs / 'data'}",
        f"--model_dir={runs / 'jax'}",
        "--epochs=2",
    )
    assert "ckpt-1.npz (epoch 1)" in out and "done: 2 epochs" in out
    assert sorted(os.listdir(runs / "jax" / "checkpoints")) == [
        "ckpt-1.npz",
        "ckpt-2.npz",
    ]


def test_query_network_saved_on_jax_loads_on_tensorflow_and_torch(runs):
    path = runs / "jax" / "query_network.keras"
    x = np.random.default_rng(0).normal(size=(3, 2, 50, 25, 3))
    np.save(runs / "x.npy", x.astype("float32"))
    features = keras.models.load_model(path).predict(x, verbose=0)
    assert keras.backend.backend() == "tensorflow"
    _run(
        "torch",
        "kskel.predict",
        f"--model={path}",
        f"--input={runs / 'x.npy'}",
        f"--output={runs / 'torch.npy'}",
    )
    on_torch = np.load(runs / "torch.npy")
    assert on_torch.shape == features.shape == (3, 16)
    scale = np.abs(features).max()
    assert np.abs(on_torch - features).max() <= 1e-5 * scale


def test_whole_model_checkpoint_saved_on_torch_restores_on_tensorflow(runs):
    from kskel.pretraining import restore_model

    assert keras.backend.backend() == "tensorflow"
    model, config = restore_model(str(runs / "torch"))
    assert config.queue_size == 32
    with np.load(runs / "torch" / "checkpoints" / "ckpt-1.npz") as saved:
        arrays = {name: saved[name] for name in saved.files}
    # Both networks, batch-norm statistics, queue and pointer: every saved
    # value is in the TensorFlow model, in order (seed states have
    # backend-specific dtypes and are left out).
    variables = model.variables
    assert len(variables) == sum(
        k.startswith("model_variables/") for k in arrays
    )
    compared = 0
    for i, variable in enumerate(variables):
        if "seed_generator" in variable.path:
            continue
        np.testing.assert_array_equal(
            np.asarray(variable.numpy()), arrays[f"model_variables/{i}"]
        )
        compared += 1
    assert compared > 100
    queue = np.asarray(model.queue)
    np.testing.assert_allclose(np.linalg.norm(queue, axis=1), 1, rtol=1e-5)
    assert int(np.asarray(model.queue_ptr)) == (2 * 8) % 32
