"""Callbacks of a pretraining run: NaN guard and TensorBoard extras.

`PretrainMonitor` adds the learning rate and queue statistics to each
epoch's logs (so they reach the history, the progress line and the
TensorBoard callback after it) and, for ActCLR, writes the actionlet of a
fixed batch as images. A collapsed run shows up as a mean queue cosine
near 1; a collapsed actionlet as an all-dark image.
"""

import math

import keras
import numpy as np

from kskel.errors import KskelError

QUEUE_SAMPLE = 1024


class NaNGuard(keras.callbacks.Callback):
    """Stops with a `KskelError` as soon as the loss is not finite.

    Raised from the batch that produced it, so no checkpoint of the broken
    epoch is written and the last good one stays the latest.

    Args:
        checkpoint_dir: where the last good checkpoint lives (for the
            message).
    """

    def __init__(self, checkpoint_dir):
        super().__init__()
        self.checkpoint_dir = checkpoint_dir
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise KskelError(
                f"the loss became {float(loss)} at epoch {self._epoch}, "
                f"step {batch + 1}; training stopped. The last good "
                f"checkpoint is kept in {self.checkpoint_dir}; resume from "
                "it with a lower --learning_rate or check the data "
                "(python -m data_prep.validate)."
            )


def queue_statistics(queue, max_rows=QUEUE_SAMPLE):
    """Mean pairwise cosine and mean per-dimension std of queue rows."""
    queue = np.asarray(queue, np.float64)[:max_rows]
    unit = queue / np.maximum(
        np.linalg.norm(queue, axis=1, keepdims=True), 1e-12
    )
    n = len(unit)
    gram = unit @ unit.T
    mean_cos = (gram.sum() - np.trace(gram)) / max(n * n - n, 1)
    return {
        "queue_mean_cosine": float(mean_cos),
        "queue_std": float(unit.std(axis=0).mean()),
    }


class PretrainMonitor(keras.callbacks.Callback):
    """Learning rate, queue statistics and ActCLR actionlet images.

    Args:
        logdir: TensorBoard directory for the images.
        schedule: the optimizer's learning-rate schedule.
        actionlet_batch: optional `(N, M, T, V, C)` array whose actionlet
            is drawn each epoch (ActCLR only).
    """

    def __init__(self, logdir, schedule, actionlet_batch=None):
        super().__init__()
        self.logdir = logdir
        self.schedule = schedule
        self.actionlet_batch = actionlet_batch
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        # The rate of the epoch's last step (the optimizer's counter already
        # points at the next epoch's first).
        last_step = self.model.optimizer.iterations - 1
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.schedule(last_step))
        )
        logs.update(
            queue_statistics(keras.ops.convert_to_numpy(self.model.queue))
        )
        if self.actionlet_batch is not None:
            self._write_actionlet(epoch + 1)

    def _write_actionlet(self, step):
        import tensorflow as tf

        mask = keras.ops.convert_to_numpy(
            self.model.actionlet(self.actionlet_batch)
        )
        # One image per sample: rows are (body, time), columns joints.
        n, m, t, v = mask.shape
        images = mask.reshape(n, m * t, v, 1)
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.logdir)
        with self._writer.as_default():
            tf.summary.image(
                "actionlet",
                images,
                step=step,
                max_outputs=n,
                description="Key-network actionlet, rows (body, time), "
                "columns joints; white = moving.",
            )
            tf.summary.scalar("actionlet_mean", float(mask.mean()), step=step)
        self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
