"""Multi-worker training with `tf.distribute.MultiWorkerMirroredStrategy`.

Each worker process reads its place in the cluster from the `TF_CONFIG`
environment variable (set before TensorFlow starts; `python -m
kskel.launch` sets it for local trials). Every worker runs the same
program; variables start from the first worker's values and stay in step
through collective all-reduces.

Writes follow TensorFlow's rule for multi-worker Keras: every worker takes
part in saving (checkpoints, the final model, logs), but only the chief
writes into the run's directory; the others write into a local temporary
directory that is removed at the end.
"""

import contextlib
import json
import os
import shutil
import tempfile

from kskel.errors import KskelError


def tf_config():
    """The parsed `TF_CONFIG`, or `None` when it is not set."""
    text = os.environ.get("TF_CONFIG", "")
    if not text:
        return None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as err:
        raise KskelError(f"TF_CONFIG is not valid JSON: {err}.") from None
    if not isinstance(config, dict) or "cluster" not in config:
        raise KskelError(
            'TF_CONFIG must be a JSON object with "cluster" and "task" '
            f"entries; got {text!r}."
        )
    return config


def multiworker_strategy():
    """`MultiWorkerMirroredStrategy` for the cluster of `TF_CONFIG`.

    Collectives use NCCL where GPUs are present and ring all-reduce over
    gRPC on CPU-only workers. Without `TF_CONFIG` the strategy spans the
    local devices of this one process.
    """
    import tensorflow as tf

    tf_config()  # Fail with a clear message on a malformed TF_CONFIG.
    comm = tf.distribute.experimental.CommunicationImplementation
    implementation = (
        comm.AUTO if tf.config.list_physical_devices("GPU") else comm.RING
    )
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=implementation
        )
    )


def is_chief(strategy):
    """Whether this process writes the run's outputs (True off-cluster)."""
    return bool(strategy.extended.should_checkpoint)


def barrier(strategy):
    """Blocks until every worker gets here (an all-reduce of one number)."""
    import tensorflow as tf

    value = strategy.run(lambda: tf.constant(1.0))
    strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)


@contextlib.contextmanager
def write_root(run_dir, strategy):
    """Yields where this worker writes the outputs meant for `run_dir`.

    The chief writes into `run_dir` itself; every other worker into a
    fresh local temporary directory, removed when the block ends.
    """
    if is_chief(strategy):
        yield run_dir
        return
    scratch = tempfile.mkdtemp(prefix="kskel-worker-")
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def shard_by_data(dataset):
    """`dataset` with TensorFlow's DATA auto-sharding across workers.

    Every worker runs the whole input pipeline and keeps its replicas'
    slices of each global batch, so N workers train on exactly the
    batches, augmentations included, of one process with the same global
    batch size (a pipeline with many shard files could instead be read by
    file, but the batches would then differ from a single process).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    return dataset.with_options(options)
