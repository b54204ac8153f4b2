"""Exports a kskel network as a TensorFlow SavedModel, and reads one back.

The SavedModel holds only the query network: the ST-GCN encoder and its
head (the linear classifier, or the projection MLP of a pretraining run),
never a key encoder, queue or optimizer. Its `serving_default` signature
takes `skeleton`, float32 `(None, M, T, V, C)`, and returns

- `features`: the pooled encoder features `(None, hidden_dim)`, and
- `logits` `(None, num_classes)` for a classifier, or `projection`
  `(None, feature_dim)` (the contrastive space) for a pretraining network.

Metadata (class names, joint layout, sample shape, the preprocessing and
stream the network expects, its source) is stored twice as the same JSON
text: in `assets.extra/kskel.json` (a plain file; TensorFlow Serving
ignores the folder) and as the loaded object's `metadata()` function.
Loading needs TensorFlow only:

    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures["serving_default"](skeleton=x)
    metadata = json.loads(loaded.metadata().numpy())

Paths may be remote (`gs://`, or `s3://` / `hdfs://` with tensorflow-io):
see `write_saved_model` for how a remote export stays safe.

TensorFlow and Keras are imported inside the functions that need them, so
the command-line tool validates its flags first.
"""

import dataclasses
import json
import os
import shutil
import tempfile
import types

from kskel import fileio
from kskel.errors import KskelError
from kskel.pretraining import STREAMS
from kskel.pretraining import load_config

FORMAT = "kskel.saved_model"
FORMAT_VERSION = 1
METADATA_FILE = os.path.join("assets.extra", "kskel.json")
SIGNATURE = "serving_default"
INPUT_NAME = "skeleton"
_NTU_CLASS_COUNTS = (60, 120)


@dataclasses.dataclass
class Source:
    """The network `--model` names and what is known about it.

    Attributes:
        network: the `SkeletonClassifier`.
        kind: "pretraining_run", "keras" or "official_checkpoint".
        path: the file the weights came from.
        config: the run's `PretrainConfig` (pretraining runs only).
    """

    network: object
    kind: str
    path: str
    config: object = None


def is_saved_model(path):
    """Whether the directory `path` holds a SavedModel."""
    return fileio.isfile(fileio.join(path, "saved_model.pb"))


def check_output(out, flag="--out"):
    """Raises `KskelError` unless `out` may become (or replace) a SavedModel.

    A missing path, an empty directory and an existing local SavedModel
    are accepted; a file or a directory with other contents is refused, and
    so is any non-empty remote directory (see `write_saved_model`).
    """
    out = os.fspath(out)
    remote = fileio.is_remote(out)
    if not (fileio.exists(out) if remote else os.path.lexists(out)):
        return
    if not fileio.isdir(out):
        raise KskelError(
            f"{flag}={out}: a file exists there; a SavedModel is a "
            "directory, choose another path."
        )
    if not fileio.listdir(out):
        return
    if remote:
        raise KskelError(
            f"{flag}={out}: already exists; remote storage cannot replace "
            "a directory atomically, so a remote export needs a new path. "
            "Choose another path or remove it."
        )
    if not is_saved_model(out):
        raise KskelError(
            f"{flag}={out}: an existing directory that is not a SavedModel; "
            "refusing to replace it. Choose another path or remove it."
        )


def _prefixed(flag, fn, *args, **kwargs):
    """Calls `fn`; a `KskelError` it raises is re-raised naming `flag`."""
    try:
        return fn(*args, **kwargs)
    except KskelError as err:
        raise KskelError(f"{flag}: {err}") from None


def load_source(model, flag="--model"):
    """Loads the network of a run directory, `.keras` or official `.pt`.

    Args:
        model: str, a pretraining `--model_dir` (its `query_network.keras`
            and `config.json`), a `.keras` `SkeletonClassifier`, or an
            official SkeletonCLR / AimCLR / ActCLR checkpoint (`.pt`,
            converted as `python -m kskel.convert` does).
        flag: str, the flag named in errors.

    Returns:
        A `Source`.
    """
    from kskel.evaluation.pretrained import QUERY_NETWORK

    model = os.fspath(model)
    if not fileio.exists(model):
        raise KskelError(f"{flag}={model}: not found.")
    if fileio.isdir(model):
        if not fileio.isfile(fileio.join(model, "config.json")):
            raise KskelError(
                f"{flag}={model}: a directory without config.json; expected "
                "a pretraining --model_dir, a .keras file or an official "
                ".pt checkpoint."
            )
        config = _prefixed(flag, load_config, model)
        path = fileio.join(model, QUERY_NETWORK)
        if not fileio.isfile(path):
            raise KskelError(
                f"{flag}={model}: the run has no {QUERY_NETWORK} (did the "
                "pretraining run finish?)."
            )
        return Source(_load_keras(path, flag), "pretraining_run", path, config)
    if model.endswith(".pt"):
        from kskel.conversion import convert_checkpoint

        network, _ = _prefixed(flag, convert_checkpoint, model)
        return Source(network, "official_checkpoint", model)
    if model.endswith(".keras"):
        return Source(_load_keras(model, flag), "keras", model)
    raise KskelError(
        f"{flag}={model}: expected a pretraining --model_dir, a .keras file "
        "or an official .pt checkpoint."
    )


def _load_keras(path, flag):
    from kskel.encoders import SkeletonClassifier
    from kskel.inference import load_model

    network = load_model(path, flag=flag)
    if not isinstance(network, SkeletonClassifier):
        raise KskelError(
            f"{flag}={path}: holds a {type(network).__name__}, expected a "
            "kskel SkeletonClassifier (a query network or a classifier)."
        )
    return network


def sample_shape(network):
    """The `(M, T, V, C)` the network was built for."""
    return tuple(network.get_build_config()["input_shape"][1:])


def _check_run(source, flag):
    """The run's network must have the architecture of its config.json."""
    encoder, head, config = (
        source.network.encoder,
        source.network.head,
        source.config,
    )
    found = {
        "base_width": encoder.base_width,
        "hidden_dim": encoder.hidden_dim,
        "feature_dim": getattr(head, "output_dim", None),
        "head_batch_norm": getattr(head, "batch_norm", None),
    }
    for name, value in found.items():
        if value != getattr(config, name):
            raise KskelError(
                f"{flag}={source.path}: the network has {name}={value}, its "
                f"config.json says {getattr(config, name)}; the file does "
                "not belong to this run."
            )


def _check_dataset(network, manifest, flag, path, where):
    """The network must read the dataset's samples as they are."""
    from kskel.data import schema

    expected = (network.encoder.layout, sample_shape(network))
    found = (manifest["layout"], schema.sample_shape(manifest))
    if expected != found:
        raise KskelError(
            f"{flag}={path}: the network reads {expected[0]} samples of "
            f"(M, T, V, C) = {expected[1]}, but {where} holds {found[0]} "
            f"samples of {found[1]}; they do not belong together."
        )


def _dataset(source, class_names_from, flag):
    """`(manifest, where)`: the dataset describing the network, if known."""
    from kskel.data import schema

    if class_names_from:
        where = f"--class_names_from={class_names_from}"
        manifest = _prefixed(
            "--class_names_from", schema.load_manifest, class_names_from
        )
    elif source.config is not None:
        data_dir = source.config.data_dir
        where = f"config.json's data_dir={data_dir}"
        try:
            manifest = schema.load_manifest(data_dir)
        except KskelError as err:
            raise KskelError(
                f"{flag}={fileio.parent(source.path)}: the run's dataset "
                f"is unreadable ({err}); run from the directory the run "
                "started in, or pass --class_names_from=DATA_DIR."
            ) from None
    else:
        return None, None
    _check_dataset(source.network, manifest, flag, source.path, where)
    return manifest, where


def _class_names(network, manifest, where):
    """`(names, how they were found)`; a classifier's names index its logits."""
    classes = network.num_outputs if network.is_classifier else None
    if manifest is not None:
        names = list(manifest["class_names"])
        if classes is not None and len(names) != classes:
            raise KskelError(
                f"{where}: the dataset has {len(names)} classes, the "
                f"network {classes} logits."
            )
        return names, f"manifest of {where}"
    if classes is None:
        return [], "none (no dataset and no logits)"
    if network.encoder.layout == "ntu25" and classes in _NTU_CLASS_COUNTS:
        from data_prep import numpy_import
        from kskel import graph

        names = numpy_import.default_class_names(
            classes, graph.get_layout("ntu25")
        )
        return names, (
            f"NTU RGB+D {classes} action names (data_prep/resources), "
            f"assumed from {classes} logits on the ntu25 layout; pass "
            "--class_names_from=DATA_DIR to take them from a dataset"
        )
    return [str(i) for i in range(classes)], (
        "class indices (no dataset known; pass --class_names_from=DATA_DIR)"
    )


def _preprocessing(source, manifest, where):
    """`(preprocessing dict or None, where it came from)`."""
    if manifest is not None:
        return manifest["preprocessing"], f"manifest of {where}"
    if source.kind == "official_checkpoint":
        from data_prep import preprocess

        return preprocess.describe(), (
            "the official 50-frame NTU preprocessing the official "
            "checkpoints were trained with"
        )
    return None, "unknown (pass --class_names_from=DATA_DIR)"


def _stream(source, stream):
    if stream is not None and stream not in STREAMS:
        raise KskelError(f"--stream={stream}: expected one of {STREAMS}.")
    if source.config is None:
        return stream or "joint"
    if stream is not None and stream != source.config.stream:
        raise KskelError(
            f"--stream={stream}: the run {source.path} was pretrained on the "
            f"{source.config.stream!r} stream; omit --stream."
        )
    return source.config.stream


def build_metadata(source, class_names_from=None, stream=None, flag="--model"):
    """The JSON-able metadata stored with the SavedModel of `source`.

    Args:
        source: a `Source`.
        class_names_from: optional dataset directory whose manifest gives
            the class names and preprocessing (a run's own `data_dir` is
            used otherwise).
        stream: optional "joint", "motion" or "bone"; defaults to the run's
            stream, else "joint".
        flag: str, the flag named in errors about `source`.

    Raises:
        KskelError: the network does not match its run's config.json or
            dataset, or the class names do not match its logits.
    """
    import kskel

    network = source.network
    if source.config is not None:
        _check_run(source, flag)
    manifest, where = _dataset(source, class_names_from, flag)
    names, names_source = _class_names(network, manifest, where)
    preprocessing, preprocessing_source = _preprocessing(
        source, manifest, where
    )
    shape = sample_shape(network)
    head = "logits" if network.is_classifier else "projection"
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kskel_version": kskel.__version__,
        "signature": SIGNATURE,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "shape": [None, *shape],
            "axes": "NMTVC (samples, bodies, frames, joints, coordinates)",
        },
        "outputs": {
            "features": [None, network.encoder.hidden_dim],
            head: [None, network.num_outputs],
        },
        "layout": network.encoder.layout,
        "num_bodies": shape[0],
        "num_frames": shape[1],
        "num_joints": shape[2],
        "channels": shape[3],
        "stream": _stream(source, stream),
        "class_names": names,
        "class_names_source": names_source,
        "preprocessing": preprocessing,
        "preprocessing_source": preprocessing_source,
        "encoder": {
            "base_width": network.encoder.base_width,
            "hidden_dim": network.encoder.hidden_dim,
        },
        "source": {
            "kind": source.kind,
            "path": source.path,
            "method": source.config.method if source.config else None,
        },
    }


def serving_module(network, metadata):
    """A `tf.Module` with the `serve` and `metadata` functions to save.

    Only the encoder's and the head's weights are tracked, so nothing else
    of a training model can end up in the SavedModel.
    """
    import tensorflow as tf

    encoder, head = network.encoder, network.head
    output = "logits" if network.is_classifier else "projection"
    spec = tf.TensorSpec(metadata["input"]["shape"], tf.float32, INPUT_NAME)
    text = json.dumps(metadata, sort_keys=True)

    @tf.function(input_signature=[spec])
    def serve(skeleton):
        # A signature call checks the dtype but not the shape of its input:
        # without this, a wrong rank or frame count fails deep inside the
        # encoder or, worse, is silently reshaped.
        x = tf.ensure_shape(skeleton, spec.shape, name="check_skeleton_shape")
        features = encoder(x, training=False)
        return {"features": features, output: head(features, training=False)}

    @tf.function(input_signature=[])
    def metadata_fn():
        return tf.constant(text)

    module = tf.Module()
    module.encoder_variables = [v.value for v in encoder.weights]
    module.head_variables = [v.value for v in head.weights]
    module.serve = serve
    module.metadata = metadata_fn
    return module


def write_saved_model(network, metadata, out, flag="--out"):
    """Saves `network` with `metadata` to the directory `out`, safely.

    A local `out` is written atomically: the SavedModel goes to a hidden
    temporary directory beside `out` and is renamed into place; an existing
    SavedModel at `out` is moved aside first and removed afterwards. On any
    error `out` is left as it was.

    Object stores have no atomic rename (a directory "rename" copies every
    file), so a remote `out` must not exist yet (or be empty): the
    SavedModel is written to a local temporary directory and copied file by
    file with `saved_model.pb` last. Until it arrives the directory is no
    SavedModel (TensorFlow cannot load it, `check_output` refuses to reuse
    it), so an interrupted export never looks complete. A copy that fails
    with an error is removed again.
    """
    check_output(out, flag)
    if fileio.is_remote(out):
        _write_remote(network, metadata, os.fspath(out))
        return
    out = os.path.abspath(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    prefix = f".tmp-{os.path.basename(out)}-"
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        _save(network, metadata, tmp)
        # mkdtemp makes the folder private; a model server may run as
        # another user.
        os.chmod(tmp, 0o777 & ~_umask())
        _replace_directory(tmp, out, prefix)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def _save(network, metadata, directory):
    """Writes the SavedModel and its metadata file into local `directory`."""
    import tensorflow as tf

    module = serving_module(network, metadata)
    tf.saved_model.save(module, directory, signatures={SIGNATURE: module.serve})
    os.makedirs(os.path.join(directory, "assets.extra"))
    with open(os.path.join(directory, METADATA_FILE), "w") as file:
        json.dump(metadata, file, indent=2, sort_keys=True)


def _write_remote(network, metadata, out):
    with tempfile.TemporaryDirectory(prefix="kskel-export-") as tmp:
        _save(network, metadata, tmp)
        fileio.copy_tree(tmp, out, last=("saved_model.pb",))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_directory(new, out, prefix):
    """Renames `new` to `out`, moving an existing non-empty `out` aside."""
    if os.path.isdir(out) and os.listdir(out):
        old = tempfile.mkdtemp(prefix=prefix, dir=os.path.dirname(out))
        os.replace(out, old)
        os.replace(new, out)
        shutil.rmtree(old)
    else:
        os.replace(new, out)


def export_saved_model(
    model, out, *, class_names_from=None, stream=None, flag="--model"
):
    """Exports the network `model` names as a SavedModel at `out`.

    Args:
        model: a pretraining run directory, `.keras` file or official `.pt`
            checkpoint (see `load_source`).
        out: str, the SavedModel directory to write.
        class_names_from: optional dataset directory (see `build_metadata`).
        stream: optional input stream (see `build_metadata`).
        flag: str, the flag named in errors about `model`.

    Returns:
        The metadata dict stored with the SavedModel.

    Raises:
        KskelError: a missing or foreign `model`, one that does not match
            its config or dataset, or an `out` that is not a SavedModel.
    """
    check_output(out)
    source = load_source(model, flag)
    metadata = build_metadata(source, class_names_from, stream, flag)
    write_saved_model(source.network, metadata, out)
    return metadata


def read_metadata(path, flag="--model"):
    """The metadata of the kskel SavedModel at `path` (no TensorFlow)."""
    path = os.fspath(path)
    if not is_saved_model(path):
        raise KskelError(
            f"{flag}={path}: a directory but not a SavedModel (no "
            "saved_model.pb); pass a .keras file or a directory written by "
            "python -m kskel.export."
        )
    metadata_path = fileio.join(path, METADATA_FILE)
    if not fileio.exists(metadata_path):
        raise KskelError(
            f"{flag}={path}: a SavedModel without kskel metadata "
            f"({METADATA_FILE}); export it with python -m kskel.export."
        )
    try:
        with fileio.open_file(metadata_path) as file:
            metadata = json.load(file)
    except ValueError as err:
        raise KskelError(
            f"{flag}={path}: {METADATA_FILE} is not JSON ({err})."
        ) from None
    if metadata.get("format") != FORMAT or (
        metadata.get("format_version", 0) > FORMAT_VERSION
    ):
        raise KskelError(
            f"{flag}={path}: {METADATA_FILE} is not kskel SavedModel metadata "
            f"of version <= {FORMAT_VERSION}; upgrade kskel or re-export."
        )
    return metadata


class ExportedNetwork:
    """A kskel SavedModel, called like a `SkeletonClassifier` in eval mode.

    It offers what `kskel.inference` uses of a network: `encoder.layout`,
    `encoder.num_joints`, `encoder.in_channels`, `is_classifier`,
    `num_outputs`, `features(x)` and calling it for the head's output
    (logits or projection), plus `sample_shape`, `stream`, `class_names`
    and `metadata`. Inputs must be float32 `(N, *sample_shape)`.

    Args:
        path: str, a directory written by `export_saved_model`.
        flag: str, the flag named in errors.
    """

    def __init__(self, path, flag="--model"):
        import tensorflow as tf

        self.path = os.fspath(path)
        self.metadata = meta = read_metadata(path, flag)
        try:
            self._loaded = tf.saved_model.load(self.path)
        except (OSError, ValueError, tf.errors.OpError) as err:
            raise KskelError(
                f"{flag}={path}: cannot load the SavedModel ({err})."
            ) from None
        self._serve = self._loaded.signatures[meta["signature"]]
        self.encoder = types.SimpleNamespace(
            layout=meta["layout"],
            num_joints=meta["num_joints"],
            in_channels=meta["channels"],
            hidden_dim=meta["outputs"]["features"][1],
        )
        self.sample_shape = tuple(meta["input"]["shape"][1:])
        self.is_classifier = "logits" in meta["outputs"]
        self.head_output = "logits" if self.is_classifier else "projection"
        self.num_outputs = meta["outputs"][self.head_output][1]
        self.stream = meta["stream"]
        self.class_names = meta["class_names"]

    def features(self, x, training=False):
        """Pooled encoder features, `(N, hidden_dim)`."""
        del training  # A SavedModel runs in eval mode only.
        return self._serve(skeleton=x)["features"]

    def __call__(self, x, training=False):
        del training
        return self._serve(skeleton=x)[self.head_output]
