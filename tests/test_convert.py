"""Official checkpoints converted to Keras reproduce the reference logits."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from kskel.conversion import build_model_from_state
from kskel.conversion import convert_checkpoint
from kskel.errors import KskelError
from kskel.torch_checkpoint import load_state_dict
from tests.torch_zip import write_checkpoint

CHECKPOINTS = {
    "actclr": "actclr_joint_linear_epoch100_acc87.14_model.pt",
    "aimclr": "aimclr_joint_linear_epoch100_acc77.76_model.pt",
}
# Issue tolerance: 5e-6 of the largest reference logit magnitude.
RELATIVE_TOLERANCE = 5e-6


def _reference(reference, method):
    data = np.load(reference / "checkpoints" / f"{method}_ref_io_eval.npz")
    x = np.transpose(data["x"], (0, 4, 2, 3, 1))  # NCTVM -> NMTVC
    return x, data["logits"]


def _assert_parity(logits, expected):
    scale = np.abs(expected).max()
    error = np.abs(np.asarray(logits) - expected).max()
    assert error <= RELATIVE_TOLERANCE * scale, (error, scale)
    np.testing.assert_array_equal(
        np.argmax(logits, axis=1), np.argmax(expected, axis=1)
    )


@pytest.fixture(scope="module", params=sorted(CHECKPOINTS))
def converted(request, reference):
    method = request.param
    model, report = convert_checkpoint(
        reference / "checkpoints" / CHECKPOINTS[method]
    )
    return method, model, report


def test_report(converted):
    _, model, report = converted
    assert report.head == "linear" and report.num_outputs == 60
    assert report.prefix == "encoder_q."
    assert len(report.loaded) == 154  # 179 minus A and 24 BN counters.
    assert model.is_classifier


def test_python_api_parity(converted, reference):
    method, model, _ = converted
    x, expected = _reference(reference, method)
    _assert_parity(model(x, training=False), expected)


def test_jit_compiled_parity(converted, reference):
    method, _, _ = converted
    model, _ = convert_checkpoint(
        reference / "checkpoints" / CHECKPOINTS[method]
    )
    x, expected = _reference(reference, method)
    model.compile(jit_compile=True)
    _assert_parity(model.predict(x, verbose=0), expected)


def test_saved_file_parity(converted, reference, tmp_path):
    from kskel.fileio import save_keras_atomic

    method, model, _ = converted
    path = tmp_path / "model.keras"
    save_keras_atomic(model, path)
    restored = keras.models.load_model(path)
    x, expected = _reference(reference, method)
    _assert_parity(restored(x, training=False), expected)
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True
    )


def test_cli_convert_and_predict_parity(reference, tmp_path):
    for method, name in CHECKPOINTS.items():
        out = tmp_path / f"{method}.keras"
        result = _run(
            "kskel.convert",
            f"--checkpoint={reference / 'checkpoints' / name}",
            f"--out={out}",
        )
        assert result.returncode == 0, result.stderr
        assert "loaded 154 tensors" in result.stdout
        x, expected = _reference(reference, method)
        np.save(tmp_path / "x.npy", np.transpose(x, (0, 4, 2, 3, 1)))
        result = _run(
            "kskel.predict",
            f"--model={out}",
            f"--input={tmp_path / 'x.npy'}",
            "--layout=NCTVM",
            f"--output={tmp_path / 'logits.npy'}",
        )
        assert result.returncode == 0, result.stderr
        _assert_parity(np.load(tmp_path / "logits.npy"), expected)
        first = int(np.argmax(expected[0]))
        assert f"sample 0: class {first}" in result.stdout


@pytest.fixture(scope="module")
def official_state(reference):
    return load_state_dict(reference / "checkpoints" / CHECKPOINTS["actclr"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("encoder_q.st_gcn_networks.3.tcn.2.bias"), "missing"),
        (
            lambda s: s.update({"encoder_q.extra.weight": np.ones(3)}),
            "unexpected",
        ),
        (
            lambda s: s.update(
                {
                    "encoder_q.st_gcn_networks.5.tcn.2.weight": np.ones(
                        (32, 32, 5, 1), "float32"
                    )
                }
            ),
            "has shape",
        ),
        (
            lambda s: s.update({"encoder_q.A": np.ones((3, 25, 25))}),
            "differs from",
        ),
        (lambda s: s.pop("encoder_q.fc.weight"), "no head"),
    ],
)
def test_mismatched_state_is_rejected(official_state, edit, message):
    state = dict(official_state)
    edit(state)
    with pytest.raises(KskelError, match=message):
        build_model_from_state(state, path="x.pt")


def test_pretraining_checkpoint_with_mlp_head_and_key_encoder(
    official_state,
):
    rng = np.random.default_rng(0)
    state = {
        k: v
        for k, v in official_state.items()
        if not k.startswith("encoder_q.fc")
    }
    state["encoder_q.fc.0.weight"] = rng.normal(size=(256, 256)).astype("f4")
    state["encoder_q.fc.0.bias"] = np.zeros(256, "f4")
    state["encoder_q.fc.2.weight"] = rng.normal(size=(128, 256)).astype("f4")
    state["encoder_q.fc.2.bias"] = np.zeros(128, "f4")
    state["encoder_k.data_bn.weight"] = np.ones(75, "f4")
    state["queue"] = np.zeros((128, 16), "f4")
    model, report = build_model_from_state(state)
    assert report.head == "mlp" and report.num_outputs == 128
    assert report.ignored == ["encoder_k.data_bn.weight", "queue"]
    out = model(np.zeros((1, 2, 50, 25, 3), "float32"), training=False)
    assert tuple(out.shape) == (1, 128)


def test_cli_bad_checkpoints_write_nothing(official_state, tmp_path):
    state = dict(official_state)
    del state["encoder_q.data_bn.bias"]
    broken = tmp_path / "broken.pt"
    write_checkpoint(broken, state)
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    for source, message in ((broken, "missing"), (text, "not a zip")):
        out = tmp_path / "out.keras"
        result = _run("kskel.convert", f"--checkpoint={source}", f"--out={out}")
        assert result.returncode == 1
        errors = [
            ln for ln in result.stderr.splitlines() if ln.startswith("error:")
        ]
        assert len(errors) == 1 and message in errors[0]
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken.pt",
        "text.pt",
    ]
