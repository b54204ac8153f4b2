"""Shared fixtures: the reference directory and small random inputs."""

import os
import pathlib

import numpy as np
import pytest

_DEFAULT_REFERENCE = (
    pathlib.Path(__file__).resolve().parents[2] / "shared" / "reference"
)


def reference_dir():
    return pathlib.Path(
        os.environ.get("KSKEL_REFERENCE_DIR", str(_DEFAULT_REFERENCE))
    )


@pytest.fixture(scope="session")
def reference():
    """`../shared/reference`, or skip when it is absent."""
    path = reference_dir()
    if not (path / "checkpoints").is_dir():
        pytest.skip(
            f"reference files not found at {path}; set KSKEL_REFERENCE_DIR"
        )
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same Python, NumPy and Keras seeds, so
    weight initialisations (and any test that depends on them) are the
    same in every run."""
    import keras

    keras.utils.set_random_seed(1234)
