"""Pretraining checkpoints as NumPy `.npz` files, for the JAX and PyTorch
backends.

`tf.train.Checkpoint` holds only TensorFlow variables, so on the other
backends a checkpoint is the flat lists `[v.numpy() for v in
model.variables]` and `optimizer.variables` plus the completed epochs, in
one `ckpt-<epoch>.npz` written atomically (a killed run leaves the previous
checkpoint as the latest). It mirrors the part of
`tf.train.CheckpointManager` that pretraining uses: `latest_checkpoint`,
`directory`, `save(checkpoint_number)` keeping the last `max_to_keep`, and
a `restore`; `kskel.checkpointing` picks it or TensorFlow's format.
"""

import os
import re

import numpy as np

from kskel import fileio
from kskel.checkpointing import CheckpointManager
from kskel.errors import KskelError

_NAME = re.compile(r"^ckpt-(\d+)\.npz$")


class ArrayCheckpointManager(CheckpointManager):
    """Saves and restores model and optimizer variables as `.npz` files
    (arguments as `kskel.checkpointing.CheckpointManager`)."""

    def checkpoints(self, directory=None):
        """Paths of the checkpoints in `directory` (default: the one
        restored from), oldest first."""
        directory = self.directory if directory is None else directory
        if not os.path.isdir(directory):
            return []
        numbered = []
        for name in os.listdir(directory):
            match = _NAME.match(name)
            if match:
                numbered.append((int(match.group(1)), name))
        return [os.path.join(directory, n) for _, n in sorted(numbered)]

    @property
    def latest_checkpoint(self):
        """The newest checkpoint's path, or None."""
        paths = self.checkpoints()
        return paths[-1] if paths else None

    def save(self, checkpoint_number):
        """Writes `ckpt-<checkpoint_number>.npz`; drops the oldest ones."""
        arrays = {
            f"model_variables/{i}": np.asarray(v.numpy())
            for i, v in enumerate(self.model_variables)
        }
        arrays.update(
            {
                f"optimizer_variables/{i}": np.asarray(v.numpy())
                for i, v in enumerate(self.optimizer_variables)
            }
        )
        if self.completed is not None:
            arrays["completed_epochs"] = np.asarray(self.completed.numpy())
        path = os.path.join(
            self.save_directory, f"ckpt-{int(checkpoint_number)}.npz"
        )
        with fileio.atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as file:
                np.savez(file, **arrays)
        for old in self.checkpoints(self.save_directory)[: -self.max_to_keep]:
            os.remove(old)
        return path

    def restore(self, path=None, optimizer=True):
        """Loads `path` (default: the latest) into the variables.

        Args:
            path: a checkpoint file, or None for the latest.
            optimizer: also restore the optimizer variables and the
                completed epochs.

        Raises:
            KskelError: no checkpoint, or one of another architecture.
        """
        path = path or self.latest_checkpoint
        if path is None:
            raise KskelError(f"{self.directory}: no checkpoint to restore.")
        with np.load(path) as saved:
            groups = [("model_variables", self.model_variables)]
            if optimizer:
                groups.append(("optimizer_variables", self.optimizer_variables))
            for group, variables in groups:
                count = sum(k.startswith(group + "/") for k in saved.files)
                if count != len(variables):
                    raise KskelError(
                        f"{path}: {count} {group.replace('_', ' ')}, the "
                        f"model has {len(variables)}; it was saved by "
                        "another architecture."
                    )
                for i, variable in enumerate(variables):
                    value = saved[f"{group}/{i}"]
                    if value.shape != tuple(variable.shape):
                        raise KskelError(
                            f"{path}: {variable.path} has shape "
                            f"{value.shape}, expected {tuple(variable.shape)}."
                        )
                    variable.assign(value)
            if optimizer and self.completed is not None:
                self.completed.assign(int(saved["completed_epochs"]))
        return path
