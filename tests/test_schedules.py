"""The official per-epoch step decay."""

import numpy as np
import pytest

from kskel.schedules import EpochStepDecay


def test_decays_after_each_milestone_with_one_based_epochs():
    schedule = EpochStepDecay(0.1, steps_per_epoch=10, milestones=[2, 4])
    # Epoch 1: iterations 0-9, epoch 3: 20-29, epoch 5: 40-49.
    lrs = [float(schedule(step)) for step in (0, 19, 20, 39, 40, 99)]
    np.testing.assert_allclose(
        lrs, [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6
    )


def test_config_round_trip_and_validation():
    schedule = EpochStepDecay(3.0, 5, [80])
    clone = EpochStepDecay.from_config(schedule.get_config())
    assert float(clone(400)) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        EpochStepDecay(0.1, 0, [1])
