"""Datasets and checkpoints through `s3://`, and clear errors for schemes;
exports, evaluation outputs and searches on TensorFlow's `ram://`.

The S3 round trips need the optional tensorflow-io environment
(`pip install -r requirements-io.txt` in its own environment, plus
`moto[server]`); it starts moto's S3-compatible server on 127.0.0.1 and is
skipped with a reason where either package is missing.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from kskel import fileio
from kskel.errors import KskelError


def _has(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_local_paths_and_builtin_schemes_pass():
    fileio.check_scheme("", "data_dir")
    fileio.check_scheme("relative/dir", "data_dir")
    fileio.check_scheme("/abs/dir", "model_dir")
    fileio.check_scheme("gs://bucket/dir", "model_dir")  # Built into TF.


def test_scheme_and_join():
    assert fileio.scheme("s3://b/x") == "s3"
    assert fileio.scheme("HDFS://nn/x") == "hdfs"
    assert fileio.scheme("/tmp/a:b") == ""
    assert fileio.join("s3://b/run/", "logs", "x") == "s3://b/run/logs/x"
    assert fileio.join("run", "logs") == os.path.join("run", "logs")


@pytest.mark.skipif(_has("tensorflow_io"), reason="tensorflow-io installed")
@pytest.mark.parametrize("scheme", ["s3", "hdfs"])
def test_tfio_schemes_name_the_missing_extra(scheme):
    with pytest.raises(KskelError) as err:
        fileio.check_scheme(f"{scheme}://bucket/data", "data_dir")
    message = str(err.value)
    assert message.startswith(f"--data_dir={scheme}://bucket/data: ")
    assert "tensorflow-io" in message and "requirements-io.txt" in message


def test_unknown_scheme_is_refused():
    with pytest.raises(KskelError, match=r"--out=nope://x: .*nope://"):
        fileio.check_scheme("nope://x", "out")


@pytest.mark.skipif(_has("tensorflow_io"), reason="tensorflow-io installed")
def test_pretrain_cli_refuses_s3_without_the_extra(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.pretrain",
            "--data_dir=s3://bucket/data",
            f"--model_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
        timeout=120,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --data_dir=s3://bucket/data: s3:// needs")


def test_remote_atomic_write_through_gfile():
    """`atomic_path` to a URL: TensorFlow's in-memory `ram://` filesystem."""
    import tensorflow as tf

    path = "ram://kskel-test/run/config.json"
    with fileio.atomic_path(path) as tmp:
        with open(tmp, "w") as file:
            file.write('{"a": 1}')
    with fileio.open_file(path) as file:
        assert file.read() == '{"a": 1}'
    assert tf.io.gfile.listdir("ram://kskel-test/run") == ["config.json"]
    with pytest.raises(RuntimeError):
        with fileio.atomic_path(path) as tmp:
            with open(tmp, "w") as file:
                file.write("half")
            raise RuntimeError("killed")
    with fileio.open_file(path) as file:
        assert file.read() == '{"a": 1}'  # Untouched, no temporary left.
    assert tf.io.gfile.listdir("ram://kskel-test/run") == ["config.json"]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port, process, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto server exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"moto server did not listen on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def s3_bucket():
    """A bucket on moto's S3 server on 127.0.0.1 (stopped afterwards).

    The server runs in its own process: TensorFlow's S3 writes hold the
    GIL while they upload, so a server thread in this process would
    never answer them.
    """
    if not _has("tensorflow_io"):
        pytest.skip(
            "tensorflow-io is not installed (optional environment: "
            "pip install -r requirements-io.txt 'moto[server]')"
        )
    if not _has("moto.server"):
        pytest.skip(
            "moto[server] is not installed (pip install 'moto[server]')"
        )
    import boto3

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1"]
        + ["-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    saved = dict(os.environ)
    try:
        _wait_for_port(port, server)
        endpoint = f"http://127.0.0.1:{port}"
        # Read by tensorflow-io's S3 filesystem when it first connects.
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
            S3_ENDPOINT=endpoint,
            S3_USE_HTTPS="0",
            S3_VERIFY_SSL="0",
        )
        boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1"
        ).create_bucket(Bucket="kskel")
        yield "s3://kskel"
    finally:
        os.environ.clear()
        os.environ.update(saved)
        server.terminate()
        server.wait(30)


def test_dataset_round_trip_through_s3(s3_bucket, tmp_path):
    from data_prep import synthetic
    from kskel.data import pipeline

    remote = f"{s3_bucket}/data"
    fileio.check_scheme(remote, "data_dir")
    synthetic.generate_dataset(remote, 24, seed=0, num_frames=8)
    local = str(tmp_path / "data")
    synthetic.generate_dataset(local, 24, seed=0, num_frames=8)

    def batches(data_dir):
        dataset = pipeline.make_dataset(data_dir, "train", 4, training=False)
        return [(x.numpy(), y.numpy()) for x, y in dataset]

    got, expected = batches(remote), batches(local)
    assert len(got) == len(expected) > 0
    for (gx, gy), (ex, ey) in zip(got, expected):
        np.testing.assert_array_equal(gx, ex)
        np.testing.assert_array_equal(gy, ey)


def test_checkpoint_round_trip_through_s3(s3_bucket):
    import keras
    import tensorflow as tf

    from kskel.pretraining import PretrainConfig
    from kskel.pretraining import restore_model
    from kskel.pretraining import run_pretraining

    config = PretrainConfig(
        data_dir=f"{s3_bucket}/ckpt_data",
        model_dir=f"{s3_bucket}/run",
        synthetic_samples=24,
        epochs=1,
        batch_size=4,
        steps_per_epoch=1,
        queue_size=8,
        feature_dim=8,
        base_width=4,
        hidden_dim=16,
        verbose=0,
    )
    run_pretraining(config)
    names = tf.io.gfile.listdir(config.model_dir)
    assert {"config.json", "query_network.keras"} <= {
        n.rstrip("/") for n in names
    }
    model, saved = restore_model(config.model_dir)
    assert saved == config
    query = keras.models.load_model(f"{config.model_dir}/query_network.keras")
    for a, b in zip(model.query.weights, query.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Resuming reads the checkpoint back from S3.
    result = run_pretraining(PretrainConfig(**{**config.__dict__, "epochs": 2}))
    assert result["epochs"] == 2
    assert tf.train.latest_checkpoint(
        f"{config.model_dir}/checkpoints"
    ).endswith("ckpt-2")


def test_export_round_trip_through_s3(s3_bucket, tmp_path, rng):
    import tensorflow as tf

    from kskel import exporting
    from kskel.encoders import SkeletonClassifier
    from kskel.encoders import STGCNEncoder

    network = SkeletonClassifier(STGCNEncoder(base_width=4, hidden_dim=16), 5)
    network.build((None, 2, 8, 25, 3))
    model = str(tmp_path / "model.keras")
    fileio.save_keras_atomic(network, model)
    out = f"{s3_bucket}/export/model"
    exporting.export_saved_model(model, out)
    x = rng.normal(size=(2, 2, 8, 25, 3)).astype("float32")
    served = tf.saved_model.load(out).signatures["serving_default"](
        skeleton=tf.constant(x)
    )
    np.testing.assert_allclose(
        served["logits"], np.asarray(network(x, training=False)), atol=1e-5
    )
    assert exporting.read_metadata(out)["source"]["kind"] == "keras"


# --- Exports, evaluation outputs and searches on a remote filesystem -------
# TensorFlow's in-process `ram://` filesystem stands in for gs:// and s3://:
# a URL reaches it only through tf.io.gfile, so a spot that still treats it
# as a local path fails or leaves a local `ram:` directory behind.

TINY = {"base_width": 4, "hidden_dim": 16}
SAMPLE = (2, 8, 25, 3)


@pytest.fixture
def ram_root():
    """A fresh `ram://` directory (the filesystem lives as long as the
    process)."""
    import uuid

    return f"ram://kskel-{uuid.uuid4().hex}"


@pytest.fixture
def no_local_writes(tmp_path, monkeypatch):
    """Runs the test in an empty directory that must stay empty."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield
    assert os.listdir(cwd) == []


@pytest.fixture(scope="module")
def tiny_classifier():
    from kskel.encoders import SkeletonClassifier
    from kskel.encoders import STGCNEncoder

    network = SkeletonClassifier(STGCNEncoder(**TINY), 5)
    network.build((None, *SAMPLE))
    return network


@pytest.fixture(scope="module")
def ram_dataset():
    """A small synthetic dataset (train, val and test splits) on ram://."""
    from data_prep import synthetic

    path = "ram://kskel-remote-dataset/data"
    synthetic.generate_dataset(path, 80, seed=0, num_frames=SAMPLE[1])
    return path


def test_remote_export_serves_and_predicts(
    tiny_classifier, ram_root, no_local_writes, rng
):
    import tensorflow as tf

    from kskel import exporting
    from kskel import inference

    model = f"{ram_root}/model.keras"
    fileio.save_keras_atomic(tiny_classifier, model)
    out = f"{ram_root}/saved/model"
    metadata = exporting.export_saved_model(model, out)
    assert metadata["source"] == {
        "kind": "keras",
        "path": model,
        "method": None,
    }
    x = rng.normal(size=(3, *SAMPLE)).astype("float32")
    expected = np.asarray(tiny_classifier(x, training=False))
    loaded = tf.saved_model.load(out)
    outputs = loaded.signatures["serving_default"](skeleton=tf.constant(x))
    np.testing.assert_allclose(outputs["logits"], expected, atol=1e-5)
    assert json.loads(loaded.metadata().numpy()) == metadata
    assert exporting.read_metadata(out) == metadata
    # kskel.predict: the SavedModel, its input and its output all remote.
    fileio.save_array_atomic(f"{ram_root}/x.npy", x)
    logits = inference.run_prediction(
        out, f"{ram_root}/x.npy", output=f"{ram_root}/logits.npy"
    )
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    np.testing.assert_array_equal(
        fileio.load_array(f"{ram_root}/logits.npy"), logits
    )
    # An object store cannot swap a directory in atomically: no replacing.
    with pytest.raises(KskelError, match=f"^--out={out}: already exists; "):
        exporting.export_saved_model(model, out)


def test_failed_remote_export_copies_saved_model_pb_last_and_cleans_up(
    tiny_classifier, ram_root, tmp_path, monkeypatch
):
    import tensorflow as tf

    from kskel import exporting

    model = str(tmp_path / "model.keras")
    tiny_classifier.save(model)
    out = f"{ram_root}/model"
    tf.io.gfile.makedirs(out)  # An empty directory is a free --out.
    copied = []
    copy = tf.io.gfile.copy

    def failing_copy(source, target, overwrite=False):
        copied.append(target[len(out) + 1 :])
        if target.endswith("/saved_model.pb"):
            raise tf.errors.UnavailableError(None, None, "connection lost")
        copy(source, target, overwrite=overwrite)

    monkeypatch.setattr(tf.io.gfile, "copy", failing_copy)
    with pytest.raises(tf.errors.UnavailableError, match="connection lost"):
        exporting.export_saved_model(model, out)
    # Until saved_model.pb arrives the directory is no SavedModel.
    assert copied[-1] == "saved_model.pb"
    assert {
        "assets.extra/kskel.json",
        "variables/variables.index",
        "fingerprint.pb",
    } <= set(copied)
    assert fileio.listdir(out) == []  # What was copied is removed again.
    monkeypatch.undo()
    exporting.export_saved_model(model, out)  # So a retry goes through.
    assert exporting.is_saved_model(out)


@pytest.mark.skipif(_has("tensorflow_io"), reason="tensorflow-io installed")
def test_export_cli_refuses_s3_without_the_extra(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.export",
            f"--model={tmp_path / 'model.keras'}",
            "--out=s3://bucket/saved/model",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
        timeout=120,
    )
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error")]
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert errors == [
        "error: --out=s3://bucket/saved/model: s3:// needs the optional "
        "tensorflow-io install: pip install -r requirements-io.txt (a "
        "separate environment, see README)."
    ]
    assert os.listdir(tmp_path) == []


def test_evaluation_outputs_on_a_remote_model_dir(
    ram_dataset, ram_root, no_local_writes
):
    from kskel.data import schema
    from kskel.encoders import SkeletonClassifier
    from kskel.encoders import STGCNEncoder
    from kskel.evaluation import plots
    from kskel.evaluation.fusion import fuse_runs
    from kskel.evaluation.knn import topk_accuracy
    from kskel.evaluation.knn_eval import KnnConfig
    from kskel.evaluation.knn_eval import run_knn
    from kskel.layers.projection_head import ProjectionHead

    # A pretraining --model_dir as far as evaluation reads it.
    run = f"{ram_root}/pretrain"
    network = SkeletonClassifier(STGCNEncoder(**TINY), ProjectionHead(16, 8))
    network.build((None, *SAMPLE))
    fileio.save_keras_atomic(network, f"{run}/query_network.keras")
    with fileio.atomic_path(f"{run}/config.json") as tmp:
        with open(tmp, "w") as file:
            json.dump({"method": "aimclr"}, file)
    out = f"{ram_root}/knn"
    config = KnnConfig(
        pretrained=run, data_dir=ram_dataset, model_dir=out, k=5, **TINY
    )
    results = run_knn(config)
    with fileio.open_file(f"{out}/results.json") as file:
        assert json.load(file) == results
    assert results["method"] == "aimclr"  # From the remote config.json.
    assert results["checkpoint"] == f"{run}/query_network.keras"
    classes = schema.load_manifest(ram_dataset)["class_names"]
    logits = fileio.load_array(f"{out}/test_logits.npy")
    labels = fileio.load_array(f"{out}/test_labels.npy")
    assert logits.shape == (results["num_samples"], len(classes))
    assert results["top1"] == topk_accuracy(logits, labels, 1)

    fused_dir = f"{ram_root}/fused"
    fused = fuse_runs([out, out], [1.0, 0.5], fused_dir)
    np.testing.assert_allclose(
        fileio.load_array(f"{fused_dir}/test_logits.npy"), 1.5 * logits
    )
    with fileio.open_file(f"{fused_dir}/results.json") as file:
        assert json.load(file) == fused
    assert fused["top1"] == results["top1"]  # Same ranking.

    png = plots.plot_confusion(logits, labels, classes, f"{out}/confusion.png")
    with fileio.open_file(png, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    plots.log_images_to_tensorboard(f"{out}/logs", {"confusion": png}, 1)
    assert any(n.startswith("events.") for n in fileio.listdir(f"{out}/logs"))


def test_tuning_on_a_remote_tune_dir(
    ram_dataset, ram_root, no_local_writes, monkeypatch
):
    """A Hyperband search with a stand-in for pretraining that counts its
    epochs in the run directory, as a checkpoint would."""
    from kskel import pretraining
    from kskel import tuning
    from kskel.pretraining import PretrainConfig
    from kskel.tuning import TuneConfig

    calls = []

    def fake_pretraining(config, callbacks=()):
        del callbacks
        run = config.model_dir
        trial = run.rsplit("/", 1)[1]
        progress = f"{run}/progress.json"
        done = 0
        if fileio.exists(progress):
            with fileio.open_file(progress) as file:
                done = json.load(file)["epochs"]
        found = sorted(fileio.listdir(run)) if fileio.exists(run) else []
        calls.append((trial, done, config.epochs, found))
        for name, text in (
            ("logs/events", "x"),
            ("checkpoints/checkpoint", ""),
        ):
            with fileio.atomic_path(f"{run}/{name}") as tmp:
                with open(tmp, "w") as file:
                    file.write(text)
        with fileio.atomic_path(progress) as tmp:
            with open(tmp, "w") as file:
                json.dump({"epochs": config.epochs}, file)
        score = 1.0 - abs(config.temperature - 0.2) + 0.01 * config.epochs
        return {"history": {"val_knn_top1": [score]}, "epochs": config.epochs}

    monkeypatch.setattr(pretraining, "run_pretraining", fake_pretraining)
    base = PretrainConfig(
        data_dir=ram_dataset,
        model_dir=f"{ram_root}/final",
        epochs=3,
        batch_size=4,
        queue_size=8,
        feature_dim=8,
        verbose=0,
        **TINY,
    )
    tune = TuneConfig(
        tune_dir=f"{ram_root}/tune",
        search="temperature:float:0.05:0.5:log",
        tuner="hyperband",
        max_trials=4,
    )
    result = tuning.run_tuning(tune, base)
    # Hyperband (3 epochs, factor 3): three 1-epoch trials, then the best
    # promoted: trial 3 resumes from a copy of its run, logs left out.
    assert [c[:3] for c in calls] == [
        ("0", 0, 1),
        ("1", 0, 1),
        ("2", 0, 1),
        ("3", 1, 3),
    ]
    assert calls[3][3] == ["checkpoints", "progress.json"]
    assert result["best_trial"] == "3"
    assert result["table"] == f"{tune.tune_dir}/trials.md"
    with fileio.open_file(result["table"]) as file:
        rows = [ln for ln in file.read().splitlines() if ln.startswith("| ")]
    assert len(rows) == 5  # Header and four trials.
    with fileio.open_file(result["best_flagfile"]) as file:
        best = file.read()
    temperature = result["values"]["temperature"]
    assert f"\n--temperature={temperature!r}\n" in best
    assert f"\n--model_dir={ram_root}/final_best\n" in best
    assert "copy it first" in best
    # (Resuming is not tried here: ram:// appends when a file is opened
    # for writing again, which KerasTuner does with its trial records.)
