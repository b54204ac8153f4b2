"""kskel.export: SavedModels that hold only the query network, and serve."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from kskel import exporting
from kskel.data import schema
from kskel.encoders import SkeletonClassifier
from kskel.encoders import STGCNEncoder
from kskel.errors import KskelError
from kskel.models.moco import build_query_network
from kskel.pretraining import PretrainConfig

ACTCLR = "actclr_joint_linear_epoch100_acc87.14_model.pt"
# Issue tolerance: 5e-6 of the largest reference logit magnitude.
RELATIVE_TOLERANCE = 5e-6
SHAPE = (2, 20, 25, 3)
TINY = {"base_width": 4, "hidden_dim": 16}


def _write_dataset(path, frames=20, classes=5):
    rng = np.random.default_rng(0)
    samples = [
        schema.Sample(
            skeleton=rng.normal(size=(2, frames, 25, 3)).astype("float32"),
            label=i % classes,
            name=f"s{i}",
            num_frames=frames,
        )
        for i in range(4)
    ]
    schema.write_dataset(
        path,
        {"test": iter(samples)},
        layout="ntu25",
        class_names=[f"c{i}" for i in range(classes)],
        preprocessing={"frames": frames, "center_joint": 20},
    )
    return str(path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return _write_dataset(tmp_path_factory.mktemp("export") / "data")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "tiny.keras"
    model = SkeletonClassifier(STGCNEncoder(**TINY), 5)
    model.build((None, *SHAPE))
    model.save(path)
    return str(path), model


def _write_run(model_dir, data_dir, network, **config):
    """A pretraining --model_dir as `run_pretraining` leaves it."""
    os.makedirs(model_dir)
    settings = {
        "method": "aimclr",
        "stream": "motion",
        "feature_dim": 8,
        "head_batch_norm": True,
        **TINY,
        **config,
    }
    run = PretrainConfig(
        data_dir=str(data_dir), model_dir=str(model_dir), **settings
    )
    with open(os.path.join(model_dir, "config.json"), "w") as file:
        file.write(run.to_json())
    if network is not None:
        network.save(os.path.join(model_dir, "query_network.keras"))
    return str(model_dir)


@pytest.fixture(scope="module")
def query_network():
    network = build_query_network(TINY, feature_dim=8, head_batch_norm=True)
    network.build((None, *SHAPE))
    return network


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir, query_network):
    path = tmp_path_factory.mktemp("export") / "run"
    return _write_run(path, data_dir, query_network)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, classifier, data_dir):
    path = str(tmp_path_factory.mktemp("export") / "classifier")
    exporting.export_saved_model(classifier[0], path, class_names_from=data_dir)
    return path


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported)


def _saved_variables(path):
    """Names of the variables in a SavedModel's checkpoint."""
    names = tf.train.list_variables(
        os.path.join(path, "variables", "variables")
    )
    return [name for name, _ in names if "OBJECT_GRAPH" not in name]


def test_classifier_export_computes_what_keras_does(loaded, classifier, rng):
    model = classifier[1]
    x = rng.normal(size=(3, *SHAPE)).astype("float32")
    out = loaded.signatures["serving_default"](skeleton=tf.constant(x))
    assert sorted(out) == ["features", "logits"]
    np.testing.assert_allclose(
        out["features"], model.features(x), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        out["logits"], model(x, training=False), rtol=1e-5, atol=1e-6
    )


def test_only_encoder_and_head_weights_are_saved(exported, loaded, classifier):
    model = classifier[1]
    expected = model.encoder.weights + model.head.weights
    assert len(_saved_variables(exported)) == len(expected) == 148
    saved = loaded.encoder_variables + loaded.head_variables
    assert [tuple(v.shape) for v in saved] == [tuple(v.shape) for v in expected]
    names = [v.name for v in saved]
    assert not [n for n in names if "queue" in n or "key" in n]


def test_metadata_is_stored_twice_and_plain(exported, loaded, data_dir):
    with open(os.path.join(exported, "assets.extra", "kskel.json")) as file:
        stored = json.load(file)
    assert json.loads(loaded.metadata().numpy()) == stored
    assert exporting.read_metadata(exported) == stored
    manifest = schema.load_manifest(data_dir)
    assert stored["class_names"] == ["c0", "c1", "c2", "c3", "c4"]
    assert stored["preprocessing"] == manifest["preprocessing"]
    assert stored["input"]["shape"] == [None, *SHAPE]
    assert stored["outputs"] == {"features": [None, 16], "logits": [None, 5]}
    assert (stored["layout"], stored["num_joints"]) == ("ntu25", 25)
    assert stored["stream"] == "joint"
    assert stored["source"]["kind"] == "keras"


@pytest.mark.parametrize(
    "shape, dtype, message",
    [
        (
            (2, 20, 25, 3),
            "float32",
            r"tensor skeleton \[2,20,25,3\] is not compatible with "
            r"expected shape \[\?,2,20,25,3\]",
        ),
        (
            (1, 2, 21, 25, 3),
            "float32",
            r"tensor skeleton \[1,2,21,25,3\] is not compatible",
        ),
        (
            (1, 1, 20, 25, 3),
            "float32",
            r"tensor skeleton \[1,1,20,25,3\] is not compatible",
        ),
        (
            (1, *SHAPE),
            "int32",
            "expected to be a float tensor but is a int32 tensor",
        ),
    ],
)
def test_signature_rejects_bad_inputs(loaded, shape, dtype, message):
    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        serve(skeleton=tf.zeros(shape, dtype))


def test_restored_function_rejects_a_float64_input(loaded):
    with pytest.raises(TypeError, match="dtype=tf.float64"):
        loaded.serve(tf.zeros((1, *SHAPE), tf.float64))


def test_run_dir_export(run_dir, query_network, data_dir, tmp_path, rng):
    out = str(tmp_path / "run_model")
    metadata = exporting.export_saved_model(run_dir, out)
    assert metadata["outputs"] == {
        "features": [None, 16],
        "projection": [None, 8],
    }
    assert metadata["stream"] == "motion"  # From the run's config.json.
    assert metadata["source"]["method"] == "aimclr"
    assert (
        metadata["class_names"] == schema.load_manifest(data_dir)["class_names"]
    )
    x = rng.normal(size=(2, *SHAPE)).astype("float32")
    result = tf.saved_model.load(out).signatures["serving_default"](
        skeleton=tf.constant(x)
    )
    np.testing.assert_allclose(
        result["projection"],
        query_network(x, training=False),
        rtol=1e-5,
        atol=1e-6,
    )
    weights = query_network.encoder.weights + query_network.head.weights
    assert len(_saved_variables(out)) == len(weights)


def _not_kskel(tmp_path, _):
    path = tmp_path / "plain.keras"
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.save(path)
    return path


def _text(tmp_path, _):
    path = tmp_path / "text.keras"
    path.write_text("not a model")
    return path


def _run_variant(tmp_path, query_network, **config):
    data = config.pop("data", None) or _write_dataset(tmp_path / "data")
    return _write_run(tmp_path / "run", data, query_network, **config)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p, q: p / "none.keras", "--model=.*none.keras: not found"),
        (_text, "--model=.*text.keras: cannot load it"),
        (_not_kskel, "--model=.*holds a Sequential, expected a kskel"),
        (lambda p, q: p, "--model=.*a directory without config.json"),
        (
            lambda p, q: _run_variant(p, None),
            "--model=.*did the pretraining run finish",
        ),
        (
            lambda p, q: _run_variant(p, q, base_width=8),
            "--model=.*base_width=4, its config.json says 8",
        ),
        (
            lambda p, q: _run_variant(p, q, head_batch_norm=False),
            "--model=.*head_batch_norm=True, its config.json says False",
        ),
        (
            lambda p, q: _run_variant(
                p, q, data=_write_dataset(p / "long", frames=30)
            ),
            r"--model=.*\(2, 20, 25, 3\), but config.json's data_dir=.*"
            r"\(2, 30, 25, 3\)",
        ),
        (
            lambda p, q: _run_variant(p, q, data=str(p / "moved")),
            "--model=.*the run's dataset is unreadable.*--class_names_from",
        ),
    ],
)
def test_bad_models_raise_and_write_nothing(
    tmp_path, query_network, make, message
):
    source = make(tmp_path, query_network)
    before = sorted(os.listdir(tmp_path))
    out = tmp_path.parent / f"{tmp_path.name}-out"
    with pytest.raises(KskelError, match=message):
        exporting.export_saved_model(source, out)
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == before


def test_class_names_and_stream_must_agree(classifier, run_dir, tmp_path):
    seven = _write_dataset(tmp_path / "seven", classes=7)
    with pytest.raises(KskelError, match="7 classes, the network 5 logits"):
        exporting.export_saved_model(
            classifier[0], tmp_path / "a", class_names_from=seven
        )
    with pytest.raises(KskelError, match="--stream=joint: .*'motion'"):
        exporting.export_saved_model(run_dir, tmp_path / "b", stream="joint")
    assert sorted(os.listdir(tmp_path)) == ["seven"]


def test_without_a_dataset_class_indices_are_stored(classifier):
    source = exporting.load_source(classifier[0])
    metadata = exporting.build_metadata(source)
    assert metadata["class_names"] == ["0", "1", "2", "3", "4"]
    assert metadata["preprocessing"] is None
    assert "--class_names_from" in metadata["class_names_source"]


def _fake_save(module, path, **kwargs):
    """Stands in for `tf.saved_model.save` where only the files matter."""
    del module, kwargs
    with open(os.path.join(path, "saved_model.pb"), "w") as file:
        file.write("fake")


def test_out_must_be_free_or_a_saved_model(classifier, tmp_path, monkeypatch):
    monkeypatch.setattr(tf.saved_model, "save", _fake_save)
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("keep me")
    with pytest.raises(KskelError, match="--out=.*file: a file exists"):
        exporting.export_saved_model(classifier[0], tmp_path / "file")
    with pytest.raises(KskelError, match="--out=.*full: .*not a SavedModel"):
        exporting.export_saved_model(classifier[0], tmp_path / "full")
    assert os.listdir(tmp_path / "full") == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    exporting.export_saved_model(classifier[0], tmp_path / "empty")
    assert exporting.is_saved_model(tmp_path / "empty")
    assert sorted(os.listdir(tmp_path)) == ["empty", "file", "full"]


def test_reexport_replaces_atomically(
    exported, classifier, tmp_path, monkeypatch
):
    out = tmp_path / "model"
    shutil.copytree(exported, out)

    def crash(module, path, **kwargs):
        _fake_save(module, path)
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(tf.saved_model, "save", crash)
    with pytest.raises(RuntimeError, match="killed"):
        exporting.export_saved_model(classifier[0], out, stream="bone")
    assert os.listdir(tmp_path) == ["model"]
    assert exporting.read_metadata(out)["stream"] == "joint"
    monkeypatch.setattr(tf.saved_model, "save", _fake_save)
    exporting.export_saved_model(classifier[0], out, stream="bone")
    assert os.listdir(tmp_path) == ["model"]
    assert exporting.read_metadata(out)["stream"] == "bone"
    assert sorted(os.listdir(out)) == ["assets.extra", "saved_model.pb"]


def _cli(*flags):
    return subprocess.run(
        [sys.executable, "-m", "kskel.export", *flags],
        capture_output=True,
        text=True,
    )


def _one_error(result):
    errors = [
        ln for ln in result.stderr.splitlines() if ln.startswith("error:")
    ]
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return errors[0]


def test_cli_flag_errors_are_one_line(tmp_path, classifier):
    assert "--model and --out are required" in _one_error(
        _cli(f"--model={classifier[0]}")
    )
    (tmp_path / "notes.txt").write_text("x")
    error = _one_error(_cli(f"--model={classifier[0]}", f"--out={tmp_path}"))
    assert "not a SavedModel; refusing" in error
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_cli_mismatched_run_is_one_line(tmp_path, query_network):
    run = _run_variant(tmp_path, query_network, hidden_dim=32)
    out = tmp_path / "out"
    error = _one_error(_cli(f"--model={run}", f"--out={out}"))
    assert "hidden_dim=16, its config.json says 32" in error
    assert not out.exists()


@pytest.fixture(scope="module")
def official(reference, tmp_path_factory):
    """The official ActCLR checkpoint exported by the command-line tool."""
    out = tmp_path_factory.mktemp("official") / "actclr"
    checkpoint = reference / "checkpoints" / ACTCLR
    result = _cli(f"--model={checkpoint}", f"--out={out}")
    assert result.returncode == 0, result.stderr
    assert "logits (None, 60)" in result.stdout
    return out


_FRESH_PROCESS = textwrap.dedent(
    """
    import importlib.util
    import json
    import sys

    import numpy as np
    import tensorflow as tf

    model, reference = sys.argv[1:]
    loaded = tf.saved_model.load(model)
    data = np.load(reference)
    x = np.transpose(data["x"], (0, 4, 2, 3, 1))  # NCTVM -> NMTVC
    out = loaded.signatures["serving_default"](skeleton=tf.constant(x))
    logits = out["logits"].numpy()
    print(json.dumps({
        "error": float(np.abs(logits - data["logits"]).max()),
        "scale": float(np.abs(data["logits"]).max()),
        "top1": logits.argmax(1).tolist(),
        "expected_top1": data["logits"].argmax(1).tolist(),
        "features": list(out["features"].shape),
        "metadata": json.loads(loaded.metadata().numpy()),
        "kskel_imported": any(m.split(".")[0] == "kskel" for m in sys.modules),
        "kskel_importable": importlib.util.find_spec("kskel") is not None,
    }))
    """
)


def test_official_parity_in_a_process_without_kskel(
    official, reference, tmp_path
):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH_PROCESS,
            str(official),
            str(reference / "checkpoints" / "actclr_ref_io_eval.npz"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # Outside the repository: kskel cannot be imported.
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    # `import tensorflow` itself imports keras, so only kskel is checked.
    assert not report["kskel_imported"] and not report["kskel_importable"]
    assert report["error"] <= RELATIVE_TOLERANCE * report["scale"], report
    assert report["top1"] == report["expected_top1"]
    assert report["features"] == [4, 256]
    metadata = report["metadata"]
    assert len(metadata["class_names"]) == 60
    assert metadata["class_names"][0] == "drink water"
    assert metadata["preprocessing"]["frames"] == 50
    assert metadata["source"]["kind"] == "official_checkpoint"


def test_official_export_holds_only_the_query_network(official):
    # The converted official checkpoint is this architecture.
    expected = SkeletonClassifier(STGCNEncoder(), 60)
    expected.build((None, 2, 50, 25, 3))
    assert len(_saved_variables(str(official))) == len(expected.weights)
    loaded = tf.saved_model.load(str(official))
    names = [v.name for v in loaded.encoder_variables + loaded.head_variables]
    assert len(names) == len(expected.weights)
    assert not [n for n in names if "queue" in n or "key" in n]
