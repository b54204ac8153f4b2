"""The restricted PyTorch checkpoint reader."""

import os
import pickle
import zipfile

import numpy as np
import pytest

from kskel.errors import KskelError
from kskel.torch_checkpoint import load_state_dict
from tests.torch_zip import write_checkpoint


def test_reads_values_dtypes_and_strided_views(tmp_path, rng):
    state = {
        "a": rng.normal(size=(3, 4)).astype("float32"),
        "b.transposed": np.asfortranarray(rng.normal(size=(2, 5))),
        "c": np.arange(6, dtype="int64"),
        "module.d": np.float32(2.5) * np.ones((1,), "float32"),
    }
    path = tmp_path / "ckpt.pt"
    write_checkpoint(path, state)
    loaded = load_state_dict(path)
    assert sorted(loaded) == ["a", "b.transposed", "c", "d"]
    for name in ("a", "b.transposed", "c"):
        np.testing.assert_array_equal(loaded[name], state[name])
        assert loaded[name].dtype == state[name].dtype
    assert loaded["d"][0] == 2.5


def test_reads_official_checkpoint(reference):
    state = load_state_dict(
        reference / "checkpoints" / "aimclr_joint_linear_epoch100_acc77.76"
        "_model.pt"
    )
    assert len(state) == 179
    assert state["encoder_q.fc.weight"].shape == (60, 256, 1, 1)
    assert int(state["encoder_q.data_bn.num_batches_tracked"]) == 88_200


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo exploited > /dev/null",))


@pytest.mark.parametrize(
    "payload, refused",
    [
        (_Exploit(), "system"),
        (
            {
                "w": __builtins__["eval"]
                if isinstance(__builtins__, dict)
                else eval
            },
            "eval",
        ),
    ],
)
def test_refuses_any_other_global(tmp_path, payload, refused):
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(payload, 2))
    with pytest.raises(
        KskelError, match=f"refusing to load global .*{refused}"
    ):
        load_state_dict(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("hello")
    with pytest.raises(KskelError, match="not a zip-format PyTorch"):
        load_state_dict(path)
    with pytest.raises(KskelError, match="not found"):
        load_state_dict(tmp_path / "missing.pt")
    empty_zip = tmp_path / "empty.pt"
    zipfile.ZipFile(empty_zip, "w").close()
    with pytest.raises(KskelError, match="data.pkl"):
        load_state_dict(empty_zip)


def test_truncated_storage_and_corrupt_pickle(tmp_path):
    path = tmp_path / "short.pt"
    write_checkpoint(path, {"w": np.ones((4,), "float32")})
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["archive/data/0"] = members["archive/data/0"][:8]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(KskelError, match="holds 2 values"):
        load_state_dict(path)
    corrupt = tmp_path / "corrupt.pt"
    write_checkpoint(corrupt, {}, raw_pickle=b"\x80\x02garbage")
    with pytest.raises(KskelError, match="corrupt checkpoint pickle"):
        load_state_dict(corrupt)


def test_non_tensor_entries_rejected(tmp_path):
    path = tmp_path / "dict.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"lr": 0.1}, 2))
    with pytest.raises(KskelError, match="'lr' is not a tensor"):
        load_state_dict(path)
