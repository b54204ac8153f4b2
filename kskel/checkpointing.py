"""Pretraining checkpoints: one interface, a file format per backend.

A checkpoint holds flat lists of every model variable (weights, batch-norm
statistics of both networks, queue, epoch and random-number states) and
every optimizer variable, plus the completed epochs, so a resumed run
continues exactly as an uninterrupted one. The lists are explicit because
TensorFlow's object graph does not see layers Keras 3 keeps in Python
lists (the encoder blocks), and Keras seed generators (dropout, ActCLR's
mixing) are no trackables at all.

TensorFlow saves them with `tf.train.Checkpoint` (`ckpt-<n>.index` and
data files, `TFCheckpointManager`); `tf.train.Checkpoint` holds only
TensorFlow variables, so JAX and PyTorch save `.npz` files
(`kskel.array_checkpoint.ArrayCheckpointManager`), which load on any
backend. Both managers have `latest_checkpoint`, `save(checkpoint_number)`
and `restore(path=None, optimizer=True)`.
"""

import abc
import os

import keras

from kskel.errors import KskelError

TENSORFLOW = "tensorflow"
ARRAYS = "npz"


def make_checkpoint_manager(
    model,
    optimizer,
    directory,
    max_to_keep=3,
    completed=None,
    save_directory=None,
    file_format=None,
):
    """The checkpoint manager of `model` (and `optimizer`) in `directory`.

    Args:
        model: a built Keras model; all of `model.variables` is saved.
        optimizer: its built optimizer, or None to restore the model alone.
        directory: where checkpoints are restored from.
        max_to_keep: int, checkpoints kept in `save_directory`.
        completed: a variable of the completed epochs, saved and restored
            with the optimizer, or None.
        save_directory: where `save` writes; defaults to `directory`
            (multi-worker runs restore from the chief's directory and save
            into their own).
        file_format: `TENSORFLOW` or `ARRAYS`; defaults to the current
            backend's (`backend_format()`).
    """
    from kskel.array_checkpoint import ArrayCheckpointManager

    file_format = file_format or backend_format()
    if file_format == TENSORFLOW:
        manager = TFCheckpointManager
    else:
        manager = ArrayCheckpointManager
    return manager(
        directory,
        model.variables,
        optimizer.variables if optimizer is not None else (),
        completed,
        max_to_keep=max_to_keep,
        save_directory=save_directory,
    )


def backend_format():
    """The format the current Keras backend saves checkpoints in."""
    return TENSORFLOW if keras.backend.backend() == "tensorflow" else ARRAYS


def saved_format(directory):
    """The format of the checkpoints in `directory` to restore on this
    backend: `.npz` files first (any backend loads them), then TensorFlow's.

    Raises:
        KskelError: no checkpoint, or a TensorFlow one off TensorFlow.
    """
    from kskel.array_checkpoint import ArrayCheckpointManager

    if ArrayCheckpointManager(directory, []).latest_checkpoint:
        return ARRAYS
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        raise KskelError(f"{directory}: no checkpoint to restore.")
    if backend_format() != TENSORFLOW:
        raise KskelError(
            f"{latest}: a TensorFlow checkpoint restores on "
            "KERAS_BACKEND=tensorflow only."
        )
    return TENSORFLOW


class CheckpointManager(abc.ABC):
    """What both formats share: the variable lists and the directories.

    Args:
        directory: where checkpoints are restored from.
        model_variables: list of Keras variables (every model variable:
            weights, batch-norm statistics, queue, epoch, seed states).
        optimizer_variables: list of Keras variables, or empty.
        completed: a variable of the completed epochs (`assign`, `numpy`),
            or None.
        max_to_keep: int, checkpoints kept in `save_directory`.
        save_directory: where `save` writes; defaults to `directory`.
    """

    def __init__(
        self,
        directory,
        model_variables,
        optimizer_variables=(),
        completed=None,
        max_to_keep=3,
        save_directory=None,
    ):
        self.directory = os.fspath(directory)
        self.save_directory = os.fspath(save_directory or directory)
        self.model_variables = list(model_variables)
        self.optimizer_variables = list(optimizer_variables)
        self.completed = completed
        self.max_to_keep = int(max_to_keep)

    @property
    @abc.abstractmethod
    def latest_checkpoint(self):
        """The newest checkpoint's path, or None."""

    @abc.abstractmethod
    def save(self, checkpoint_number):
        """Writes checkpoint `checkpoint_number`; drops the oldest ones."""

    @abc.abstractmethod
    def restore(self, path=None, optimizer=True):
        """Loads `path` (default: the latest) into the variables; with
        `optimizer` also the optimizer variables and the completed epochs.
        Returns the path restored."""


class TFCheckpointManager(CheckpointManager):
    """`tf.train.CheckpointManager` of the flat variable lists."""

    def __init__(self, directory, model_variables, *args, **kwargs):
        import tensorflow as tf

        super().__init__(directory, model_variables, *args, **kwargs)
        self._model_values = [v.value for v in self.model_variables]
        objects = {
            "model_variables": self._model_values,
            "optimizer_variables": [v.value for v in self.optimizer_variables],
        }
        if self.completed is not None:
            objects["completed_epochs"] = self.completed
        # One object restores and saves, so its save counter carries on.
        self._checkpoint = tf.train.Checkpoint(**objects)
        self._manager = None

    @property
    def latest_checkpoint(self):
        """The newest checkpoint's path prefix, or None."""
        import tensorflow as tf

        return tf.train.latest_checkpoint(self.directory)

    def save(self, checkpoint_number):
        """Writes `ckpt-<checkpoint_number>`; drops the oldest ones."""
        import tensorflow as tf

        if self._manager is None:
            self._manager = tf.train.CheckpointManager(
                self._checkpoint,
                self.save_directory,
                max_to_keep=self.max_to_keep,
            )
        return self._manager.save(checkpoint_number=checkpoint_number)

    def restore(self, path=None, optimizer=True):
        """Loads `path` (default: the latest) into the variables.

        Args:
            path: a checkpoint path prefix, or None for the latest.
            optimizer: also restore the optimizer variables and the
                completed epochs; every saved value must then be used.
                Otherwise the model variables alone are restored.

        Raises:
            KskelError: no checkpoint.
        """
        import tensorflow as tf

        path = path or self.latest_checkpoint
        if path is None:
            raise KskelError(f"{self.directory}: no checkpoint to restore.")
        if optimizer:
            self._checkpoint.restore(path).assert_consumed()
        else:
            model_only = tf.train.Checkpoint(model_variables=self._model_values)
            status = model_only.restore(path)
            status.assert_existing_objects_matched().expect_partial()
        return path
