"""Datasets and checkpoints through `s3://`, and clear errors for schemes.

The round trip needs the optional tensorflow-io environment
(`pip install -r requirements-io.txt` in its own environment, plus
`moto[server]`); it starts moto's S3-compatible server on 127.0.0.1 and is
skipped with a reason where either package is missing.
"""

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
