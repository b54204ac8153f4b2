"""kskel.predict: batching, features and one clear error per bad input."""

import subprocess
import sys

import numpy as np
import pytest

from kskel.encoders import SkeletonClassifier
from kskel.encoders import STGCNEncoder
from kskel.errors import KskelError
from kskel.inference import evaluate_split
from kskel.inference import predict
from kskel.inference import run_prediction


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("predict") / "tiny.keras"
    model = SkeletonClassifier(STGCNEncoder(base_width=4, hidden_dim=16), 5)
    model.build((None, 2, 20, 25, 3))
    model.save(path)
    return path, model


def test_batching_does_not_change_results(model_file, rng):
    _, model = model_file
    x = rng.normal(size=(7, 2, 20, 25, 3)).astype("float32")
    whole = predict(model, x, batch_size=7)
    batched = predict(model, x, batch_size=3)
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)
    assert predict(model, x, batch_size=4, features=True).shape == (7, 16)


def _run(tmp_path, model, array, *flags):
    source = tmp_path / "x.npy"
    np.save(source, array)
    out = tmp_path / "out.npy"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kskel.predict",
            f"--model={model}",
            f"--input={source}",
            f"--output={out}",
            *flags,
        ],
        capture_output=True,
        text=True,
    )
    return result, out


def test_cli_features_in_official_layout(model_file, tmp_path, rng):
    x = rng.normal(size=(3, 3, 20, 25, 2)).astype("float32")  # NCTVM
    result, out = _run(
        tmp_path, model_file[0], x, "--layout=NCTVM", "--features"
    )
    assert result.returncode == 0, result.stderr
    assert np.load(out).shape == (3, 16)


def _nan_input():
    x = np.zeros((3, 2, 20, 25, 3), "float32")
    x[2, 0, 5, 3, 1] = np.nan
    return x


@pytest.mark.parametrize(
    "array, layout, message",
    [
        (np.zeros((2, 20, 25, 3), "float32"), "NMTVC", "expected a rank-5"),
        (np.zeros((2, 3, 20, 25, 2), "float32"), "NMTVC", "check --layout"),
        (np.zeros((1, 2, 20, 18, 3), "float32"), "NMTVC", "V=25 joints"),
        (_nan_input(), "NMTVC", "sample 2 holds NaN"),
        (np.zeros((1, 2, 20, 25, 3), "int32"), "NMTVC", "floating-point"),
        (np.zeros((1, 2, 20, 25, 3), "float32"), "NTVC", "--layout=NTVC"),
    ],
)
def test_bad_input_raises_and_writes_nothing(
    model_file, tmp_path, array, layout, message
):
    source = tmp_path / "x.npy"
    np.save(source, array)
    out = tmp_path / "out.npy"
    with pytest.raises(KskelError, match=message):
        run_prediction(model_file[0], source, layout, output=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_cli_bad_input_is_one_error_line(model_file, tmp_path):
    result, out = _run(tmp_path, model_file[0], _nan_input())
    assert result.returncode == 1
    errors = [
        ln for ln in result.stderr.splitlines() if ln.startswith("error:")
    ]
    assert len(errors) == 1 and "sample 2 holds NaN" in errors[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_missing_model(tmp_path):
    source = tmp_path / "x.npy"
    np.save(source, np.zeros((1, 2, 20, 25, 3), "f4"))
    with pytest.raises(KskelError, match="--model=.*not found"):
        run_prediction(tmp_path / "none.keras", source)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory):
    from kskel.data import schema

    path = tmp_path_factory.mktemp("split") / "data"
    rng = np.random.default_rng(0)
    samples = [
        schema.Sample(
            skeleton=rng.normal(size=(2, 20, 25, 3)).astype("float32"),
            label=i % 5,
            name=f"s{i}",
            num_frames=20,
        )
        for i in range(10)
    ]
    schema.write_dataset(
        path,
        {"test": iter(samples)},
        layout="ntu25",
        class_names=[f"c{i}" for i in range(5)],
        preprocessing={},
    )
    x = np.stack([s.skeleton for s in samples])
    return path, x, np.array([s.label for s in samples])


def test_accuracy_on_a_split_matches_direct_prediction(model_file, split_dir):
    path, x, labels = split_dir
    accuracy, count = evaluate_split(model_file[0], path, "test", batch_size=4)
    logits = predict(model_file[1], x)
    assert count == 10
    assert accuracy == pytest.approx(np.mean(logits.argmax(1) == labels))


def test_split_errors(model_file, split_dir, tmp_path):
    path = split_dir[0]
    with pytest.raises(KskelError, match="no split 'val'"):
        evaluate_split(model_file[0], path, "val")
    other = SkeletonClassifier(STGCNEncoder(base_width=4, hidden_dim=16), 7)
    other.build((None, 2, 20, 25, 3))
    other.save(tmp_path / "seven.keras")
    with pytest.raises(KskelError, match="7 outputs.*5 classes"):
        evaluate_split(tmp_path / "seven.keras", path, "test")


@pytest.fixture(scope="module")
def saved_model(model_file, tmp_path_factory):
    from kskel.exporting import export_saved_model

    path = tmp_path_factory.mktemp("predict") / "tiny_saved_model"
    export_saved_model(model_file[0], path)
    return path


def test_saved_model_predicts_like_the_keras_model(
    model_file, saved_model, rng
):
    from kskel.inference import load_model

    exported = load_model(saved_model)
    x = rng.normal(size=(5, 2, 20, 25, 3)).astype("float32")
    for features in (False, True):
        expected = predict(model_file[1], x, features=features)
        found = predict(exported, x, batch_size=2, features=features)
        assert found.shape == ((5, 16) if features else (5, 5))
        np.testing.assert_allclose(found, expected, rtol=1e-5, atol=1e-6)


def test_cli_on_a_saved_model(model_file, saved_model, tmp_path, rng):
    x = rng.normal(size=(3, 3, 20, 25, 2)).astype("float32")  # NCTVM
    result, out = _run(tmp_path, saved_model, x, "--layout=NCTVM")
    assert result.returncode == 0, result.stderr
    expected = predict(model_file[1], np.transpose(x, (0, 4, 2, 3, 1)))
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-6)
    assert f"sample 0: class {int(np.argmax(expected[0]))}" in result.stdout


@pytest.mark.parametrize(
    "shape, dtype, message",
    [
        ((1, 2, 21, 25, 3), "float32", r"= \(2, 20, 25, 3\), got \(2, 21,"),
        ((1, 1, 20, 25, 3), "float32", r"= \(2, 20, 25, 3\), got \(1, 20,"),
        ((1, 20, 25, 3), "float32", "expected a rank-5"),
        ((1, 2, 20, 25, 3), "int32", "expected floating-point values"),
    ],
)
def test_saved_model_input_is_checked_before_the_call(
    saved_model, tmp_path, shape, dtype, message
):
    source = tmp_path / "x.npy"
    np.save(source, np.zeros(shape, dtype))
    out = tmp_path / "out.npy"
    with pytest.raises(KskelError, match=f"--input=.*{message}"):
        run_prediction(saved_model, source, output=out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_cli_saved_model_bad_input_is_one_error_line(saved_model, tmp_path):
    x = np.zeros((2, 2, 30, 25, 3), "float32")
    result, out = _run(tmp_path, saved_model, x)
    errors = [
        ln for ln in result.stderr.splitlines() if ln.startswith("error:")
    ]
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert "--input=" in errors[0] and "(2, 20, 25, 3)" in errors[0]
    assert not out.exists()


def test_saved_model_on_a_split(model_file, saved_model, split_dir):
    path = split_dir[0]
    expected = evaluate_split(model_file[0], path, "test", batch_size=4)
    assert evaluate_split(saved_model, path, "test", batch_size=4) == (
        pytest.approx(expected[0]),
        expected[1],
    )
    with pytest.raises(KskelError, match="--stream=bone: .*'joint' stream"):
        evaluate_split(saved_model, path, "test", stream="bone")


def test_a_directory_that_is_not_a_saved_model(tmp_path):
    source = tmp_path / "x.npy"
    np.save(source, np.zeros((1, 2, 20, 25, 3), "f4"))
    with pytest.raises(KskelError, match="--model=.*not a SavedModel"):
        run_prediction(tmp_path, source)
