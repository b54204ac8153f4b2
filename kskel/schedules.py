"""Learning-rate schedules of the official training loops."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kskel")
class EpochStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`base * 0.1 ** #{s in milestones : epoch > s}` with 1-based epochs.

    The official `adjust_lr` sets this at the start of each epoch; here it is
    a function of the optimizer iteration, `epoch = iteration //
    steps_per_epoch + 1`. `milestones=[250]` trains epochs 251+ at
    `0.1 * base`.

    Args:
        base_learning_rate: float.
        steps_per_epoch: int >= 1.
        milestones: list of ints (epochs).
        factor: float, decay per milestone. Defaults to 0.1.
    """

    def __init__(
        self, base_learning_rate, steps_per_epoch, milestones, factor=0.1
    ):
        if steps_per_epoch < 1:
            raise ValueError(
                f"steps_per_epoch must be >= 1. Received: {steps_per_epoch}"
            )
        self.base_learning_rate = float(base_learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.milestones = [int(m) for m in milestones]
        self.factor = float(factor)

    def __call__(self, step):
        epoch = (
            ops.floor_divide(ops.cast(step, "int32"), self.steps_per_epoch) + 1
        )
        passed = 0.0
        for milestone in self.milestones:
            passed = passed + ops.cast(epoch > milestone, "float32")
        return self.base_learning_rate * ops.power(self.factor, passed)

    def get_config(self):
        return {
            "base_learning_rate": self.base_learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "milestones": self.milestones,
            "factor": self.factor,
        }
