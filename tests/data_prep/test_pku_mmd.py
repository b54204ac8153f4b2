"""Tests for data_prep.pku_mmd: PKU-MMD label, skeleton and split files."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_prep import ntu
from data_prep import pku_mmd
from kskel.data import schema
from kskel.errors import KskelError

REPO = pathlib.Path(__file__).resolve().parents[2]

# The official file's header spelling, a list spanning two lines, spaces.
SPLIT_TEXT = """Training videos:
0002-L, 0002-M,
0003-R
Validataion videos:
0004-L, 0005-M,
"""


def _frames(count, second_person=True):
    """(count, 150): frame f (1-based), column c holds f * 1000 + c."""
    f = np.arange(1, count + 1)[:, None] * 1000.0
    frames = f + np.arange(150)[None, :]
    if not second_person:
        frames[:, 75:] = 0.0
    return frames


def _write_frames(path, frames):
    path.write_text(
        "\n".join(" ".join(f"{v:g}" for v in row) for row in frames) + "\n"
    )


def test_read_split_file_official_spelling(tmp_path):
    path = tmp_path / "cross-subject.txt"
    path.write_text(SPLIT_TEXT)
    train, test = pku_mmd.read_split_file(str(path))
    assert train == {"0002-L", "0002-M", "0003-R"}
    assert test == {"0004-L", "0005-M"}


def test_read_split_file_correct_spelling(tmp_path):
    path = tmp_path / "cross-view.txt"
    path.write_text("Training videos: \n0002-L\nValidation videos: \n0002-R\n")
    assert pku_mmd.read_split_file(str(path)) == ({"0002-L"}, {"0002-R"})


@pytest.mark.parametrize(
    "text, words",
    [
        ("0002-L\nTraining videos:\n0003-L\n", "line 1: video ids before"),
        ("Training videos:\n0002-L\nValidation videos:\n0002-L\n", "both"),
        ("Validation videos:\n0002-L\n", "no training videos"),
    ],
)
def test_read_split_file_errors(tmp_path, text, words):
    path = tmp_path / "split.txt"
    path.write_text(text)
    with pytest.raises(KskelError, match=f"--split_file=.*{words}"):
        pku_mmd.read_split_file(str(path))


def test_read_label_file(tmp_path):
    path = tmp_path / "0002-L.txt"
    path.write_text("8,1,4,1\n\n13,3,6,0\n51,2,2\n")
    assert pku_mmd.read_label_file(str(path)) == [
        (8, 1, 4, 1),
        (13, 3, 6, 3),
        (51, 2, 2, 4),
    ]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("8,1,4,1\n52,1,4,1\n", 2, "class 52 is not in 1..51"),
        ("0,1,4,1\n", 1, "class 0"),
        ("8,5,4,1\n", 1, "bad frame range 5..4"),
        ("8,0,4,1\n", 1, "bad frame range 0..4"),
        ("8,1,4,1\n8;1;4\n", 2, "expected 'class,start,end'"),
        ("8,1.5,4,1\n", 1, "expected 'class,start,end'"),
        ("8,1\n", 1, "expected 'class,start,end'"),
    ],
)
def test_read_label_file_errors(tmp_path, text, line, words):
    path = tmp_path / "0002-L.txt"
    path.write_text(text)
    with pytest.raises(KskelError, match=f"line {line}: {words}"):
        pku_mmd.read_label_file(str(path))


def test_read_skeleton_file(tmp_path):
    path = tmp_path / "0002-L.txt"
    _write_frames(path, _frames(4))
    np.testing.assert_array_equal(
        pku_mmd.read_skeleton_file(str(path)), _frames(4)
    )


@pytest.mark.parametrize(
    "edit, line, words",
    [
        (lambda rows: rows[:2] + [rows[2][:-1]] + rows[3:], 3, "found 149"),
        (lambda rows: rows[:1] + [["x"] + rows[1][1:]] + rows[2:], 2, "number"),
        (
            lambda rows: rows[:3] + [rows[3][:7] + ["nan"] + rows[3][8:]],
            4,
            "NaN",
        ),
        (lambda rows: [rows[0][:-1] + ["inf"]] + rows[1:], 1, "infinite"),
        (lambda rows: [], 1, "empty"),
    ],
)
def test_read_skeleton_file_errors(tmp_path, edit, line, words):
    rows = [[f"{v:g}" for v in row] for row in _frames(4)]
    path = tmp_path / "0002-L.txt"
    path.write_text("\n".join(" ".join(r) for r in edit(rows)) + "\n")
    with pytest.raises(KskelError, match=f"0002-L.txt, line {line}: .*{words}"):
        pku_mmd.read_skeleton_file(str(path))


def test_segment_to_raw_layout():
    frames = _frames(6)
    frames[2, 75:] = 0.0  # person 2 absent in frame 3
    raw = pku_mmd.segment_to_raw(frames, 2, 4)
    assert raw.shape == (2, 3, 25, 3) and raw.dtype == np.float32
    # Person 1, joint 7, y at frame 2 is column 3 * 7 + 1 = 22.
    assert raw[0, 0, 7, 1] == 2022.0
    assert raw[1, 0, 7, 1] == 2000.0 + 75 + 22
    assert raw[1, 2, 24, 2] == 4000.0 + 149
    assert np.all(raw[1, 1] == 0.0)
    assert raw[0, 1, 0, 0] == 3000.0
    assert np.all(frames[2, :75] != 0.0)  # the input is not modified


def test_segment_to_raw_keeps_the_middle_300_frames():
    raw = pku_mmd.segment_to_raw(_frames(320), 5, 309)  # 305 frames
    assert raw.shape == (2, 300, 25, 3)
    # (305 - 300) // 2 = 2 frames dropped at the start: frame 7 first.
    assert raw[0, 0, 0, 0] == 7000.0
    assert raw[0, -1, 0, 0] == 306000.0


def test_sample_names():
    assert pku_mmd.sample_name("0002-L", 1, 8, 3) == ("F002V001C008L003", 1)
    assert pku_mmd.sample_name("0364-R", 1, 51, 12) == ("F364V003C051L012", 3)
    assert pku_mmd.sample_name("A01N12-M", 2, 41, 1) == (
        "A001N012V002C041L001",
        2,
    )
    with pytest.raises(KskelError, match="--part"):
        pku_mmd.sample_name("A01N12-M", 1, 41, 1)


def _dataset(tmp_path):
    """Three listed videos and one unlisted; labels 1-based and inclusive."""
    skeletons, labels = tmp_path / "skeleton", tmp_path / "label"
    skeletons.mkdir()
    labels.mkdir()
    videos = {
        "0002-L": "8,1,4,1\n13,3,6,1\n",
        "0002-M": "51,2,5,1\n",
        "0004-L": "1,1,6,1\n",
        "0009-R": "2,1,3,1\n",  # in neither list: test (official)
    }
    for video, text in videos.items():
        (labels / f"{video}.txt").write_text(text)
        _write_frames(skeletons / f"{video}.txt", _frames(6))
    (labels / "notes.md").write_text("ignored")
    split = tmp_path / "cross-subject.txt"
    split.write_text(SPLIT_TEXT)
    return skeletons, labels, split


def test_convert_end_to_end(tmp_path):
    skeletons, labels, split = _dataset(tmp_path)
    out = tmp_path / "out"
    report = pku_mmd.convert_pku_mmd(
        str(skeletons), str(labels), str(split), str(out), part=1
    )
    manifest = schema.load_manifest(str(out))
    assert manifest["splits"]["train"]["num_samples"] == 3
    assert manifest["splits"]["test"]["num_samples"] == 2
    assert manifest["num_classes"] == 51 and manifest["num_frames"] == 50
    assert "0009-R" in report.notes[0]
    import tensorflow as tf

    files = [
        str(out / s["file"]) for s in manifest["splits"]["train"]["shards"]
    ]
    examples = [
        schema.parse_example(r, manifest)
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    ]
    assert [e["name"].numpy().decode() for e in examples] == [
        "F002V001C008L001",
        "F002V001C013L002",
        "F002V002C051L001",
    ]
    assert [int(e["label"]) for e in examples] == [7, 12, 50]
    assert [int(e["camera"]) for e in examples] == [1, 1, 2]
    expected = ntu.make_sample(
        pku_mmd.segment_to_raw(_frames(6), 3, 6),
        keep_raw_length=False,
        path="",
        label=0,
        name="",
    ).skeleton
    np.testing.assert_array_equal(examples[1]["skeleton"].numpy(), expected)


def test_convert_raw_length(tmp_path):
    skeletons, labels, split = _dataset(tmp_path)
    out = tmp_path / "out"
    report = pku_mmd.convert_pku_mmd(
        str(skeletons),
        str(labels),
        str(split),
        str(out),
        part=1,
        keep_raw_length=True,
        max_samples=1,
    )
    assert report.manifest["num_frames"] == 300
    assert report.manifest["splits"]["train"]["num_samples"] == 1


def test_convert_action_past_the_end(tmp_path):
    skeletons, labels, split = _dataset(tmp_path)
    (labels / "0002-M.txt").write_text("51,2,9,1\n")
    out = tmp_path / "out"
    with pytest.raises(KskelError, match="0002-M.txt, line 1: .*frame 9"):
        pku_mmd.convert_pku_mmd(
            str(skeletons), str(labels), str(split), str(out), part=1
        )
    assert not (out / "manifest.json").exists()
    report = pku_mmd.convert_pku_mmd(
        str(skeletons), str(labels), str(split), str(out), part=1, skip_bad=True
    )
    assert report.manifest["splits"]["train"]["num_samples"] == 2
    assert len(report.skipped) == 1


def test_convert_bad_video_is_skipped_whole(tmp_path):
    skeletons, labels, split = _dataset(tmp_path)
    (skeletons / "0002-L.txt").write_text("1 2 3\n")
    out = tmp_path / "out"
    report = pku_mmd.convert_pku_mmd(
        str(skeletons), str(labels), str(split), str(out), part=1, skip_bad=True
    )
    assert report.manifest["splits"]["train"]["num_samples"] == 1
    assert report.skipped[0][0] == str(labels / "0002-L.txt")
    assert "found 3" in report.skipped[0][1]


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        (dict(part=3), "--part"),
        (dict(max_samples=0), "--max_samples"),
        (dict(skeleton_dir="/nonexistent"), "--skeleton_dir"),
        (dict(label_dir="/nonexistent"), "--label_dir"),
        (dict(part=2), "--label_dir"),  # no Part II label file there
    ],
)
def test_bad_options(tmp_path, kwargs, flag):
    skeletons, labels, split = _dataset(tmp_path)
    args = dict(
        skeleton_dir=str(skeletons),
        label_dir=str(labels),
        split_file=str(split),
        out_dir=str(tmp_path / "out"),
        part=1,
    )
    args.update(kwargs)
    with pytest.raises(KskelError, match=flag):
        pku_mmd.convert_pku_mmd(**args)
    assert not (tmp_path / "out").exists()


@pytest.mark.large
def test_cli(tmp_path):
    skeletons, labels, split = _dataset(tmp_path)
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "data_prep.pku_mmd",
            f"--skeleton_dir={skeletons}",
            f"--label_dir={labels}",
            f"--split_file={split}",
            f"--out={out}",
            "--part=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "wrote train 3, test 2 samples" in result.stdout
    assert schema.load_manifest(str(out))["splits"]["test"]["num_samples"] == 2
