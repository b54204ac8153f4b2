"""The converted encoder runs on the JAX and PyTorch backends too.

Each backend runs in its own process (Keras fixes the backend at import).
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from kskel.conversion import convert_checkpoint
from kskel.fileio import save_keras_atomic

CHECKPOINT = "actclr_joint_linear_epoch100_acc87.14_model.pt"


@pytest.fixture(scope="module")
def converted_file(reference, tmp_path_factory):
    directory = tmp_path_factory.mktemp("backends")
    model, _ = convert_checkpoint(reference / "checkpoints" / CHECKPOINT)
    save_keras_atomic(model, directory / "actclr.keras")
    data = np.load(reference / "checkpoints" / "actclr_ref_io_eval.npz")
    np.save(directory / "x.npy", data["x"])
    return directory, data["logits"]


@pytest.mark.parametrize(
    "backend, module", [("jax", "jax"), ("torch", "torch")]
)
def test_predict_parity_on_backend(converted_file, backend, module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (requirements-{module}.txt)")
    directory, expected = converted_file
    output = directory / f"logits_{backend}.npy"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.predict",
            f"--model={directory / 'actclr.keras'}",
            f"--input={directory / 'x.npy'}",
            "--layout=NCTVM",
            f"--output={output}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    logits = np.load(output)
    scale = np.abs(expected).max()
    assert np.abs(logits - expected).max() <= 5e-6 * scale
