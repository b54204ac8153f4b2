"""The demo's synthetic dataset, shared by the tests of shipped encoders."""

import pytest

from data_prep import synthetic

# `--synthetic_samples=2000 --seed=0` of configs/skeletonclr_demo.cfg.
DEMO_SAMPLES = 2000
DEMO_SEED = 0


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory):
    """The demo's dataset, regenerated from its seed once per process."""
    data_dir = str(tmp_path_factory.mktemp("demo_data") / "synthetic")
    synthetic.generate_dataset(data_dir, DEMO_SAMPLES, seed=DEMO_SEED)
    return data_dir
