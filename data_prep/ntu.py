"""Converts raw NTU RGB+D 60/120 `.skeleton` files into a kskel dataset.

Reproduces the official `tools/ntu_gendata.py` + `feeder/preprocess_ntu.py`
(FACTS §3.1, §3.2): the first two bodies of each frame in file order, at most
300 frames, files in sorted name order, the dataset's samples with missing
skeletons skipped, label = action number - 1, the official xsub / xview /
xset splits, then the 50-frame preprocessing of `data_prep.preprocess`.

Usage:

    python -m data_prep.ntu --raw_dir=/data/nturgb+d_skeletons \
        --out=/data/kskel/ntu60_xsub --dataset=ntu60 --benchmark=xsub

Splits are named "train" and "test". `--keep_raw_length` stores the raw
300-frame sequences instead (no centering, resizing or rotation). A file that
cannot be read stops the conversion with its name and line number, unless
`--skip_bad` is given, in which case it is counted, listed and left out.
"""

import dataclasses
import itertools
import os
import re

import numpy as np
from absl import flags

from data_prep import preprocess
from kskel import cli
from kskel import fileio
from kskel.data import schema
from kskel.errors import KskelError

MAX_FRAMES = 300
MAX_BODIES = 2
NUM_JOINTS = 25
# Fields per line of the format (FACTS §3.1); the first three are xyz.
BODY_FIELDS = 10
JOINT_FIELDS = 12

RESOURCES = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "resources"
)

NTU60_TRAIN_SUBJECTS = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81)
    + (82, 83, 84, 85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
)
XVIEW_TRAIN_CAMERAS = frozenset((2, 3))

_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
SUFFIX = ".skeleton"


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What distinguishes NTU60 from NTU120.

    Args:
        max_setup: int, largest setup number S that belongs to the dataset.
        max_action: int, largest action number A (= number of classes).
        benchmarks: tuple of str, valid `--benchmark` values.
        train_subjects: frozenset of int, xsub training subjects.
        missing_list: str, file name (in resources/) of the samples with
            missing skeletons.
        class_file: str, file name (in resources/) of the class names.
    """

    max_setup: int
    max_action: int
    benchmarks: tuple
    train_subjects: frozenset
    missing_list: str
    class_file: str


DATASETS = {
    "ntu60": DatasetSpec(
        max_setup=17,
        max_action=60,
        benchmarks=("xsub", "xview"),
        train_subjects=NTU60_TRAIN_SUBJECTS,
        missing_list="NTU_RGBD60_samples_with_missing_skeletons.txt",
        class_file="ntu60_classes.txt",
    ),
    "ntu120": DatasetSpec(
        max_setup=32,
        max_action=120,
        benchmarks=("xsub", "xset"),
        train_subjects=NTU120_TRAIN_SUBJECTS,
        missing_list="NTU_RGBD120_samples_with_missing_skeletons.txt",
        class_file="ntu120_classes.txt",
    ),
}
SPLITS = ("train", "test")


@dataclasses.dataclass(frozen=True)
class SampleIds:
    """The ids encoded in an NTU name `SsssCcccPpppRrrrAaaa` (1-based)."""

    setup: int
    camera: int
    subject: int
    replication: int
    action: int


@dataclasses.dataclass
class ConversionReport:
    """What a conversion wrote and left out.

    Args:
        skipped: list of (where, reason) for inputs left out by `skip_bad`
            before they became samples (unreadable files, bad names).
        notes: list of str, other things the user should know.
        manifest: dict, the manifest returned by `write_dataset`; its
            "skipped" entry lists samples the writer itself rejected.
    """

    skipped: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)
    manifest: dict = dataclasses.field(default_factory=dict)

    def summary(self):
        """Human-readable multi-line summary."""
        splits = self.manifest.get("splits", {})
        counts = ", ".join(
            f"{split} {entry['num_samples']}" for split, entry in splits.items()
        )
        lines = [f"wrote {counts} samples"]
        for split, rejected in self.manifest.get("skipped", {}).items():
            lines.extend(
                f"  writer skipped {split}/{r['name']}: {r['reason']}"
                for r in rejected
            )
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} bad input(s):")
            # Each reason already names its file and line.
            lines.extend(f"  {why}" for _, why in self.skipped)
        lines.extend(self.notes)
        return "\n".join(lines)


def check_options(dataset, benchmark):
    """Validates a dataset / benchmark pair before anything is read.

    Args:
        dataset: str, "ntu60" or "ntu120".
        benchmark: str, "xsub", "xview" (NTU60 only) or "xset" (NTU120
            only).

    Returns:
        DatasetSpec of `dataset`.

    Raises:
        KskelError: naming the flag that is wrong.
    """
    if dataset not in DATASETS:
        raise KskelError(
            f"--dataset={dataset!r} is not known: use one of "
            f"{', '.join(DATASETS)}."
        )
    spec = DATASETS[dataset]
    if benchmark not in spec.benchmarks:
        raise KskelError(
            f"--benchmark={benchmark!r} is not defined for {dataset}: use one "
            f"of {', '.join(spec.benchmarks)}."
        )
    return spec


def parse_sample_name(name):
    """Parses `SsssCcccPpppRrrrAaaa` (optionally with `.skeleton`).

    Args:
        name: str, a file or sample name.

    Returns:
        SampleIds.

    Raises:
        KskelError: if the name does not follow the NTU pattern.
    """
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    match = _NAME.match(stem)
    if match is None:
        raise KskelError(
            f"{name}: not an NTU sample name (expected SsssCcccPpppRrrrAaaa)."
        )
    return SampleIds(*(int(g) for g in match.groups()))


def is_training(ids, dataset, benchmark):
    """Whether a sample belongs to the training split (FACTS §3.1).

    Args:
        ids: SampleIds.
        dataset: str, "ntu60" or "ntu120".
        benchmark: str, "xsub", "xview" or "xset".

    Returns:
        bool.
    """
    spec = check_options(dataset, benchmark)
    if benchmark == "xsub":
        return ids.subject in spec.train_subjects
    if benchmark == "xview":
        return ids.camera in XVIEW_TRAIN_CAMERAS
    return ids.setup % 2 == 0


def read_lines_resource(file_name):
    """Non-empty stripped lines of a file in `data_prep/resources/`."""
    with open(os.path.join(RESOURCES, file_name), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def class_names(dataset):
    """The dataset's class names; index = label."""
    return read_lines_resource(DATASETS[dataset].class_file)


def missing_samples(dataset):
    """Names of the dataset's samples with missing skeletons."""
    return frozenset(read_lines_resource(DATASETS[dataset].missing_list))


class _Lines:
    """Cursor over a file's lines that reports the 1-based line number."""

    def __init__(self, path, lines):
        self.path = path
        self.lines = lines
        self.pos = 0

    def error(self, line_no, what):
        return KskelError(
            f"{self.path}, line {line_no}: {what}. The file is damaged; "
            "replace it or rerun with --skip_bad."
        )

    def take(self, count, what):
        """The next `count` lines and the 1-based number of the first."""
        first = self.pos + 1
        if self.pos + count > len(self.lines):
            raise self.error(
                len(self.lines) + 1, f"file ends early, expected {what}"
            )
        chunk = self.lines[self.pos : self.pos + count]
        self.pos += count
        return chunk, first

    def integer(self, what):
        (line,), line_no = self.take(1, what)
        try:
            value = int(line)
        except ValueError:
            raise self.error(
                line_no, f"expected {what}, found {line.strip()!r}"
            ) from None
        if value < 0:
            raise self.error(line_no, f"{what} is negative ({value})")
        return value, line_no


def _parse_joints(cursor, lines, first):
    """(25, 12) float64 joint block; errors name the offending line."""
    rows = [line.split() for line in lines]
    for i, row in enumerate(rows):
        if len(row) != JOINT_FIELDS:
            raise cursor.error(
                first + i,
                f"expected {JOINT_FIELDS} numbers per joint, found {len(row)}",
            )
    try:
        block = np.array(rows, dtype=np.float64)
    except ValueError:
        for i, row in enumerate(rows):
            try:
                np.array(row, dtype=np.float64)
            except ValueError:
                raise cursor.error(
                    first + i, f"not a number in {' '.join(row)!r}"
                ) from None
        raise
    bad = np.flatnonzero(~np.isfinite(block[:, :3]).all(axis=1))
    if bad.size:
        raise cursor.error(first + int(bad[0]), "NaN or infinite coordinate")
    return block


def parse_skeleton_text(text, path="<text>", max_frames=MAX_FRAMES):
    """Parses the contents of an NTU `.skeleton` file (FACTS §3.1).

    Keeps the first `MAX_BODIES` bodies of each frame in file order (no body
    tracking); frames without a body stay zero. Every body of every frame is
    validated, including dropped ones and frames past `max_frames`; only the
    first `max_frames` frames are kept (the official gendata would fail on
    a file longer than 300 frames).

    Args:
        text: str, the file contents.
        path: str, file name used in error messages.
        max_frames: int, frames kept. Defaults to 300.

    Returns:
        float32 array `(2, min(frames, max_frames), 25, 3)`.

    Raises:
        KskelError: naming `path` and the line, for an empty, truncated or
            garbled file, a joint count other than 25, or a non-finite
            coordinate.
    """
    cursor = _Lines(path, text.splitlines())
    if not text.strip():
        raise cursor.error(1, "empty file")
    num_frames, line_no = cursor.integer("the frame count")
    if num_frames == 0:
        raise cursor.error(line_no, "the file has 0 frames")
    kept = min(num_frames, max_frames)
    out = np.zeros((MAX_BODIES, kept, NUM_JOINTS, 3), np.float32)
    for t in range(num_frames):
        num_bodies, _ = cursor.integer(f"the body count of frame {t + 1}")
        for m in range(num_bodies):
            (info,), info_no = cursor.take(1, "a body info line")
            if len(info.split()) != BODY_FIELDS:
                raise cursor.error(
                    info_no,
                    f"expected {BODY_FIELDS} body fields, found "
                    f"{len(info.split())}",
                )
            joints, joints_no = cursor.integer("the joint count")
            if joints != NUM_JOINTS:
                raise cursor.error(
                    joints_no, f"expected {NUM_JOINTS} joints, found {joints}"
                )
            lines, first = cursor.take(NUM_JOINTS, f"{NUM_JOINTS} joint lines")
            block = _parse_joints(cursor, lines, first)
            if m < MAX_BODIES and t < kept:
                out[m, t] = block[:, :3]
    rest = cursor.lines[cursor.pos :]
    if any(line.strip() for line in rest):
        raise cursor.error(
            cursor.pos + 1,
            f"unexpected content after the {num_frames} announced frames",
        )
    return out


def read_skeleton(path, max_frames=MAX_FRAMES):
    """Reads one `.skeleton` file; see `parse_skeleton_text`.

    Args:
        path: str, file path.
        max_frames: int, frames kept. Defaults to 300.

    Returns:
        float32 array `(2, min(frames, max_frames), 25, 3)`.

    Raises:
        KskelError: if the file cannot be read or parsed.
    """
    try:
        with open(path, encoding="ascii") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise KskelError(
            f"{path}: not a text .skeleton file ({e.reason} at byte "
            f"{e.start}); replace it or rerun with --skip_bad."
        ) from None
    except OSError as e:
        raise KskelError(f"{path}: cannot read ({e.strerror}).") from None
    return parse_skeleton_text(text, path=path, max_frames=max_frames)


def pad_frames(x, num_frames=MAX_FRAMES):
    """Zero-pads (or cuts) axis 1 of `(M, T, V, C)` to `num_frames`."""
    out = np.zeros((x.shape[0], num_frames) + x.shape[2:], np.float32)
    keep = min(num_frames, x.shape[1])
    out[:, :keep] = x[:, :keep]
    return out


def preprocessing_entry(keep_raw_length, source):
    """The manifest `preprocessing` dict for either output mode."""
    if keep_raw_length:
        return {
            "frames": MAX_FRAMES,
            "center_joint": None,
            "y_rotation": False,
            "sampling": "none (raw frames, zero-padded)",
            "max_bodies": MAX_BODIES,
            "source": source,
        }
    entry = preprocess.describe()
    entry.update(max_bodies=MAX_BODIES, source=source)
    return entry


def make_sample(raw, *, keep_raw_length, path, **fields):
    """Builds a `schema.Sample` from raw frames `(2, T, 25, 3)`.

    Args:
        raw: float32 array `(2, T, 25, 3)`, `T <= 300`, the file's frames.
        keep_raw_length: bool, store the raw frames padded to 300 instead
            of the 50-frame preprocessing.
        path: str, source file for error messages.
        **fields: label, name, subject, camera, setup, replication.

    Returns:
        schema.Sample.

    Raises:
        KskelError: if person 0 is absent in every frame (nothing to
            preprocess).
    """
    if preprocess.sequence_length(raw) == 0:
        raise KskelError(
            f"{path}: body 0 is absent (joint 0 all zero) in all "
            f"{raw.shape[1]} frames; rerun with --skip_bad to leave it out."
        )
    if keep_raw_length:
        return schema.Sample(
            skeleton=pad_frames(raw), num_frames=raw.shape[1], **fields
        )
    return schema.Sample(
        skeleton=preprocess.preprocess_to_fixed_length(pad_frames(raw)),
        num_frames=preprocess.DEFAULT_NUM_FRAMES,
        **fields,
    )


def guarded(items, build, report, skip_bad):
    """Yields `build(item)` for each item; with `skip_bad`, records failures.

    Args:
        items: iterable of (path, payload).
        build: callable(path, payload) -> Sample, raising KskelError.
        report: ConversionReport, receives skipped files.
        skip_bad: bool, skip and record instead of raising.

    Yields:
        schema.Sample.
    """
    for path, payload in items:
        try:
            sample = build(path, payload)
        except KskelError as e:
            if not skip_bad:
                raise
            report.skipped.append((path, str(e)))
            continue
        yield sample


def list_samples(raw_dir, dataset, report, skip_bad):
    """Sorted `(file name, SampleIds)` of the dataset's usable files.

    Keeps `*.skeleton` files whose setup and action belong to `dataset` and
    that are not on its missing-skeleton list. A `.skeleton` file with a
    malformed name raises, or is recorded as skipped with `skip_bad`.

    Raises:
        KskelError: if `raw_dir` is not a directory or holds no usable file.
    """
    if not os.path.isdir(raw_dir):
        raise KskelError(f"--raw_dir={raw_dir!r} is not a directory.")
    spec = DATASETS[dataset]
    missing = missing_samples(dataset)
    found = []
    for file_name in sorted(os.listdir(raw_dir)):
        if not file_name.endswith(SUFFIX):
            continue
        try:
            ids = parse_sample_name(file_name)
        except KskelError as e:
            if not skip_bad:
                raise
            report.skipped.append((os.path.join(raw_dir, file_name), str(e)))
            continue
        name = file_name[: -len(SUFFIX)]
        if ids.setup > spec.max_setup or ids.action > spec.max_action:
            continue
        if name in missing:
            continue
        found.append((file_name, ids))
    if not found:
        raise KskelError(
            f"--raw_dir={raw_dir!r} holds no {dataset} .skeleton file "
            "(names SsssCcccPpppRrrrAaaa.skeleton)."
        )
    return found


def split_samples(raw_dir, dataset, benchmark, report, skip_bad):
    """dict split -> list of (path, SampleIds), in sorted name order."""
    splits = {split: [] for split in SPLITS}
    for file_name, ids in list_samples(raw_dir, dataset, report, skip_bad):
        split = "train" if is_training(ids, dataset, benchmark) else "test"
        splits[split].append((os.path.join(raw_dir, file_name), ids))
    return splits


def _build_ntu_sample(path, ids, keep_raw_length):
    name = os.path.basename(path)[: -len(SUFFIX)]
    return make_sample(
        read_skeleton(path),
        keep_raw_length=keep_raw_length,
        path=path,
        label=ids.action - 1,
        name=name,
        subject=ids.subject,
        camera=ids.camera,
        setup=ids.setup,
        replication=ids.replication,
    )


def convert_ntu(
    raw_dir,
    out_dir,
    dataset,
    benchmark,
    keep_raw_length=False,
    skip_bad=False,
    max_samples=None,
):
    """Converts a directory of NTU `.skeleton` files into a kskel dataset.

    Args:
        raw_dir: str, directory holding `SsssCcccPpppRrrrAaaa.skeleton`.
        out_dir: str, output directory for the shards and manifest.
        dataset: str, "ntu60" (S001-S017, A001-A060) or "ntu120".
        benchmark: str, "xsub", "xview" (ntu60) or "xset" (ntu120).
        keep_raw_length: bool, store raw 300-frame sequences instead of the
            50-frame preprocessing. Defaults to False.
        skip_bad: bool, leave out unreadable files (recorded in the
            report) instead of stopping. Defaults to False.
        max_samples: int or None, at most this many samples per split (the
            first in name order); None for all.

    Returns:
        ConversionReport.

    Raises:
        KskelError: on a bad option (before anything is read) or, without
            `skip_bad`, on the first unreadable file. Nothing that looks
            complete is left in `out_dir`.
    """
    check_options(dataset, benchmark)
    if max_samples is not None and max_samples < 1:
        raise KskelError(f"--max_samples={max_samples} must be >= 1.")
    report = ConversionReport()
    splits = split_samples(raw_dir, dataset, benchmark, report, skip_bad)

    def build(path, ids):
        return _build_ntu_sample(path, ids, keep_raw_length)

    streams = {
        split: itertools.islice(
            guarded(items, build, report, skip_bad), max_samples
        )
        for split, items in splits.items()
    }
    report.manifest = schema.write_dataset(
        out_dir,
        streams,
        layout="ntu25",
        class_names=class_names(dataset),
        preprocessing=preprocessing_entry(
            keep_raw_length, f"{dataset} {benchmark} raw .skeleton files"
        ),
        source=f"NTU RGB+D ({dataset}, {benchmark}) from {raw_dir}",
        skip_bad=skip_bad,
    )
    return report


FLAGS = flags.FLAGS


def define_flags():
    """Defines this tool's flags (only when run as a program, so that
    importing the module from another converter defines none)."""
    flags.DEFINE_string("raw_dir", None, "Directory of raw .skeleton files.")
    flags.DEFINE_string("out", None, "Output dataset directory.")
    flags.DEFINE_string("dataset", "ntu60", "ntu60 or ntu120.")
    flags.DEFINE_string(
        "benchmark", "xsub", "xsub, xview (ntu60 only) or xset (ntu120 only)."
    )
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
    flags.mark_flags_as_required(["raw_dir", "out"])


def main(argv):
    del argv  # kskel.cli.run rejects extra arguments
    fileio.check_scheme(FLAGS.out, "out")
    report = convert_ntu(
        raw_dir=FLAGS.raw_dir,
        out_dir=FLAGS.out,
        dataset=FLAGS.dataset,
        benchmark=FLAGS.benchmark,
        keep_raw_length=FLAGS.keep_raw_length,
        skip_bad=FLAGS.skip_bad,
        max_samples=FLAGS.max_samples,
    )
    print(report.summary())


if __name__ == "__main__":
    define_flags()
    cli.run(main)
