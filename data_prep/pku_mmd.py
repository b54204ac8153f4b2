"""Converts PKU-MMD Part I / Part II skeletons into a kskel dataset.

Reproduces the official `tools/pku_part{1,2}_skeleton.py` +
`pku_part{1,2}_gendata.py` (FACTS §3.1) followed by the NTU 50-frame
preprocessing (FACTS §3.2):

- a video's skeleton file `<video>.txt` has one line per frame with 150
  numbers: person 1 is columns 0-74 (25 joints x xyz), person 2 columns
  75-149 (kept only when they do not sum to 0, like the official writer);
- its label file `<video>.txt` has one line per action,
  `class,start,end[,confidence]` with 1-based inclusive frames;
- every action becomes one sample, named `F{file}V{view}C{class}L{idx}`
  for Part I (video `0002-L` -> `F002V001C...`) and
  `A0{aa}N0{nn}V{view}C{class}L{idx}` for Part II (video `A01N01-L`),
  with view L/M/R = 001/002/003, `idx` the 1-based line of the label file
  and label = class - 1 (51 classes);
- an action longer than 300 frames keeps its middle 300 frames (the
  official `pku_read_skeleton.read_xyz`);
- train = the videos listed as training in the official
  `cross-subject.txt` / `cross-view.txt`; test = all others (official
  behaviour; videos in neither list are reported).

Usage:

    python -m data_prep.pku_mmd --skeleton_dir=PKU_Skeleton_Renew \
        --label_dir=Train_Label_PKU_final --split_file=cross-subject.txt \
        --out=/data/kskel/pku1_xsub --part=1
"""

import itertools
import os
import re

import numpy as np
from absl import flags

from data_prep import ntu
from kskel import cli
from kskel import fileio
from kskel.data import schema
from kskel.errors import KskelError

NUM_CLASSES = 51
COLUMNS = 150
PERSON_COLUMNS = 75
VIEWS = {"L": 1, "M": 2, "R": 3}
_VIDEO = {
    1: re.compile(r"^0(\d{3})-([LMR])$"),
    2: re.compile(r"^A(\d{2})N(\d{2})-([LMR])$"),
}
_TRAIN_HEADER = re.compile(r"^\s*training", re.IGNORECASE)
# The official files spell it "Validataion"; accept that and the usual ones.
_TEST_HEADER = re.compile(
    r"^\s*(validation|validataion|testing|test)\b", re.IGNORECASE
)


def read_split_file(path):
    """Reads an official PKU-MMD split file.

    The file holds a "Training videos:" header line followed by a
    comma-separated list of video ids, then a "Validation videos:" (or the
    official misspelling "Validataion videos:") header and its list. Lists
    may span several lines.

    Args:
        path: str, the split file.

    Returns:
        (train, test): two frozensets of video ids such as "0002-L".

    Raises:
        KskelError: if the file is unreadable, an id comes before any
            header, a video is in both lists, or the training list is empty.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise KskelError(f"--split_file={path!r}: cannot read ({e}).") from None
    lists = {"train": [], "test": []}
    current = None
    for line_no, line in enumerate(lines, start=1):
        if _TRAIN_HEADER.match(line):
            current = "train"
        elif _TEST_HEADER.match(line):
            current = "test"
        elif line.strip():
            if current is None:
                raise KskelError(
                    f"--split_file={path!r}, line {line_no}: video ids before "
                    "a 'Training videos:' or 'Validation videos:' header."
                )
            ids = (s.strip() for s in line.split(","))
            lists[current].extend(s for s in ids if s)
    train, test = frozenset(lists["train"]), frozenset(lists["test"])
    if not train:
        raise KskelError(
            f"--split_file={path!r}: no training videos found; expected a "
            "'Training videos:' line followed by comma-separated ids."
        )
    both = sorted(train & test)
    if both:
        raise KskelError(
            f"--split_file={path!r}: video {both[0]} is in both lists."
        )
    return train, test


def _error(path, line_no, what):
    return KskelError(
        f"{path}, line {line_no}: {what}. Replace the file or rerun with "
        "--skip_bad."
    )


def read_label_file(path):
    """Reads a PKU-MMD label file.

    Args:
        path: str, lines `class,start,end[,confidence]`.

    Returns:
        list of (class, start, end, line_no), one per non-empty line; class
        in 1..51, 1-based inclusive frames with `1 <= start <= end`.

    Raises:
        KskelError: naming the file and line of a malformed entry.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise KskelError(f"{path}: cannot read ({e}).") from None
    actions = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        fields = [s.strip() for s in line.split(",")]
        try:
            numbers = [float(s) for s in fields[:3]]
        except ValueError:
            numbers = []
        if len(numbers) < 3 or any(n != int(n) for n in numbers):
            raise _error(
                path, line_no, f"expected 'class,start,end', found {line!r}"
            )
        action, start, end = (int(n) for n in numbers)
        if not 1 <= action <= NUM_CLASSES:
            raise _error(
                path, line_no, f"class {action} is not in 1..{NUM_CLASSES}"
            )
        if not 1 <= start <= end:
            raise _error(path, line_no, f"bad frame range {start}..{end}")
        actions.append((action, start, end, line_no))
    return actions


def read_skeleton_file(path):
    """Reads a PKU-MMD per-video skeleton file.

    Args:
        path: str, one line of 150 numbers per frame.

    Returns:
        float64 array `(frames, 150)`.

    Raises:
        KskelError: naming the file and line of a short, garbled or
            non-finite line, or an empty file.
    """
    try:
        with open(path, encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise KskelError(f"{path}: cannot read ({e}).") from None
    rows = [line.split() for line in lines]
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise _error(path, 1, "empty skeleton file")
    for i, row in enumerate(rows):
        if len(row) != COLUMNS:
            raise _error(
                path, i + 1, f"expected {COLUMNS} numbers, found {len(row)}"
            )
    try:
        frames = np.array(rows, dtype=np.float64)
    except ValueError:
        for i, row in enumerate(rows):
            try:
                np.array(row, dtype=np.float64)
            except ValueError:
                raise _error(path, i + 1, "not a number") from None
        raise
    bad = np.flatnonzero(~np.isfinite(frames).all(axis=1))
    if bad.size:
        raise _error(path, int(bad[0]) + 1, "NaN or infinite value")
    return frames


def segment_to_raw(frames, start, end, max_frames=ntu.MAX_FRAMES):
    """Cuts one action out of a video as NTU-style raw frames.

    Args:
        frames: array `(F, 150)`, the video's skeleton file.
        start: int, first frame (1-based, inclusive).
        end: int, last frame (1-based, inclusive), `end <= F`.
        max_frames: int, longer actions keep their middle `max_frames`
            frames, starting at `(length - max_frames) // 2`. Defaults to
            300.

    Returns:
        float32 array `(2, T, 25, 3)`, `T = min(end - start + 1,
        max_frames)`.
    """
    segment = frames[start - 1 : end, :COLUMNS]
    if segment.shape[0] > max_frames:
        first = (segment.shape[0] - max_frames) // 2
        segment = segment[first : first + max_frames]
    people = segment.astype(np.float32).reshape(-1, 2, ntu.NUM_JOINTS, 3)
    # The official writer emits person 2 only when its columns sum to non-0.
    second_absent = segment[:, PERSON_COLUMNS:].sum(axis=1) == 0
    people[second_absent, 1] = 0.0
    return people.transpose(1, 0, 2, 3)


def sample_name(video, part, action, index):
    """Official sample name of the `index`-th (1-based) action of a video.

    Args:
        video: str, video id ("0002-L" for Part I, "A01N01-L" for Part II).
        part: int, 1 or 2.
        action: int, class id, 1-based.
        index: int, 1-based line of the action in the label file.

    Returns:
        (name, view): str such as "F002V001C008L003" and the view 1..3.

    Raises:
        KskelError: if `video` is not a Part `part` video id.
    """
    match = _VIDEO[part].match(video)
    if match is None:
        pattern = "0FFF-V" if part == 1 else "AaaNnn-V"
        raise KskelError(
            f"{video}: not a PKU-MMD Part {part} video id (expected "
            f"{pattern} with view L, M or R); check --part."
        )
    *ids, view_letter = match.groups()
    view = VIEWS[view_letter]
    tail = f"V{view:03d}C{action:03d}L{index:03d}"
    if part == 1:
        return f"F{ids[0]}{tail}", view
    return f"A0{ids[0]}N0{ids[1]}{tail}", view


def _video_actions(skeleton_dir, label_path, video, part):
    """(path, payload) items for every action of one video."""
    actions = read_label_file(label_path)
    skeleton_path = os.path.join(skeleton_dir, video + ".txt")
    frames = read_skeleton_file(skeleton_path)
    for index, (action, start, end, line_no) in enumerate(actions, start=1):
        name, view = sample_name(video, part, action, index)
        where = f"{label_path}, line {line_no}"
        yield where, (frames, action, start, end, name, view, skeleton_path)


def _iter_actions(skeleton_dir, label_dir, videos, part, report, skip_bad):
    """All actions of `videos`; an unreadable video is one skipped entry."""
    for video in videos:
        label_path = os.path.join(label_dir, video + ".txt")
        try:
            yield from _video_actions(skeleton_dir, label_path, video, part)
        except KskelError as e:
            if not skip_bad:
                raise
            report.skipped.append((label_path, str(e)))


def _build_sample(where, payload, keep_raw_length):
    frames, action, start, end, name, view, skeleton_path = payload
    if end > frames.shape[0]:
        raise KskelError(
            f"{where}: action ends at frame {end} but {skeleton_path} has "
            f"{frames.shape[0]} frames; rerun with --skip_bad to leave it out."
        )
    return ntu.make_sample(
        segment_to_raw(frames, start, end),
        keep_raw_length=keep_raw_length,
        path=where,
        label=action - 1,
        name=name,
        camera=view,
    )


def list_videos(label_dir, part):
    """Sorted video ids that have a label file in `label_dir`.

    Raises:
        KskelError: if `label_dir` is not a directory or has no label file
            of this part.
    """
    if not os.path.isdir(label_dir):
        raise KskelError(f"--label_dir={label_dir!r} is not a directory.")
    videos = sorted(
        name[: -len(".txt")]
        for name in os.listdir(label_dir)
        if name.endswith(".txt") and _VIDEO[part].match(name[: -len(".txt")])
    )
    if not videos:
        raise KskelError(
            f"--label_dir={label_dir!r} holds no Part {part} label file "
            f"({'0FFF-V' if part == 1 else 'AaaNnn-V'}.txt); check --part."
        )
    return videos


def convert_pku_mmd(
    skeleton_dir,
    label_dir,
    split_file,
    out_dir,
    part,
    keep_raw_length=False,
    skip_bad=False,
    max_samples=None,
):
    """Converts PKU-MMD skeleton + label files into a kskel dataset.

    Args:
        skeleton_dir: str, directory of per-video skeleton `<video>.txt`.
        label_dir: str, directory of per-video label `<video>.txt`.
        split_file: str, official `cross-subject.txt` or `cross-view.txt`.
        out_dir: str, output dataset directory.
        part: int, 1 or 2.
        keep_raw_length: bool, store raw 300-frame sequences instead of the
            50-frame preprocessing. Defaults to False.
        skip_bad: bool, leave out unreadable videos and actions (recorded in
            the report) instead of stopping. Defaults to False.
        max_samples: int or None, at most this many samples per split.

    Returns:
        ntu.ConversionReport.

    Raises:
        KskelError: on a bad option (before any skeleton is read) or,
            without `skip_bad`, on the first unreadable file.
    """
    if part not in _VIDEO:
        raise KskelError(f"--part={part!r} must be 1 or 2.")
    if max_samples is not None and max_samples < 1:
        raise KskelError(f"--max_samples={max_samples} must be >= 1.")
    if not os.path.isdir(skeleton_dir):
        raise KskelError(f"--skeleton_dir={skeleton_dir!r} is not a directory.")
    train_ids, test_ids = read_split_file(split_file)
    videos = list_videos(label_dir, part)
    report = ntu.ConversionReport()
    unlisted = [v for v in videos if v not in train_ids | test_ids]
    if unlisted:
        report.notes.append(
            f"{len(unlisted)} video(s) in neither list of {split_file} went to "
            f"test (official behaviour), e.g. {unlisted[0]}"
        )
    split_videos = {
        "train": [v for v in videos if v in train_ids],
        "test": [v for v in videos if v not in train_ids],
    }

    def build(where, payload):
        return _build_sample(where, payload, keep_raw_length)

    streams = {}
    for split, names in split_videos.items():
        actions = _iter_actions(
            skeleton_dir, label_dir, names, part, report, skip_bad
        )
        samples = ntu.guarded(actions, build, report, skip_bad)
        streams[split] = itertools.islice(samples, max_samples)
    report.manifest = schema.write_dataset(
        out_dir,
        streams,
        layout="ntu25",
        class_names=[f"C{k:03d}" for k in range(1, NUM_CLASSES + 1)],
        preprocessing=ntu.preprocessing_entry(
            keep_raw_length, f"PKU-MMD Part {part} skeleton + label files"
        ),
        source=f"PKU-MMD Part {part} from {skeleton_dir}, {label_dir}, "
        f"split {split_file}",
        skip_bad=skip_bad,
    )
    return report


FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (only when run as a program)."""
    flags.DEFINE_string("skeleton_dir", None, "Per-video skeleton .txt files.")
    flags.DEFINE_string("label_dir", None, "Per-video label .txt files.")
    flags.DEFINE_string(
        "split_file", None, "Official cross-subject.txt or cross-view.txt."
    )
    flags.DEFINE_string("out", None, "Output dataset directory.")
    flags.DEFINE_integer("part", 1, "PKU-MMD part: 1 or 2.")
    flags.DEFINE_bool(
        "keep_raw_length",
        False,
        "Store raw 300-frame sequences instead of the 50-frame preprocessing.",
    )
    flags.DEFINE_bool(
        "skip_bad",
        False,
        "Skip and report unreadable files instead of failing.",
    )
    flags.DEFINE_integer(
        "max_samples", None, "At most this many samples per split (debugging)."
    )
    flags.mark_flags_as_required(
        ["skeleton_dir", "label_dir", "split_file", "out"]
    )


def main(argv):
    del argv  # kskel.cli.run rejects extra arguments
    fileio.check_scheme(FLAGS.out, "out")
    report = convert_pku_mmd(
        skeleton_dir=FLAGS.skeleton_dir,
        label_dir=FLAGS.label_dir,
        split_file=FLAGS.split_file,
        out_dir=FLAGS.out,
        part=FLAGS.part,
        keep_raw_length=FLAGS.keep_raw_length,
        skip_bad=FLAGS.skip_bad,
        max_samples=FLAGS.max_samples,
    )
    print(report.summary())


if __name__ == "__main__":
    define_flags()
    cli.run(main)
