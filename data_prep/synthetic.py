"""A procedurally generated NTU-25 action dataset, the project's default data.

Usage:

    python -m data_prep.synthetic --out data/synthetic --num_samples 2000 \\
        --seed 0 [--num_frames 50] [--num_subjects 20]

writes TFRecord shards and `manifest.json` (`kskel.data.schema`) with the
splits `train`, `val` and `test`, split by subject.

What a sample is. Each sample has M = 2 bodies, T frames (50 by default)
and V = 25 NTU Kinect v2 joints, xyz in metres, and looks like the
preprocessed NTU data of FACTS §3.2: a person of random proportions is
posed by forward kinematics (`data_prep.skeleton_model`), placed in front
of a camera that views them from a random angle, jittered with sensor
noise, and then passed through the official preprocessing itself
(`data_prep.preprocess.preprocess_to_fixed_length`): every joint relative
to joint index 20 (spine shoulder) per frame and person, each person turned
about y so that the shoulder line lies on +x (y up, the person facing -z).
Joint 20 is therefore exactly 0 and global translation is gone, as in the
real data: a jump or a squat shows only through the relative motion of the
limbs (legs folding towards the trunk, arms swinging), which is how the
classes below are told apart. The y rotation also removes most of the
camera yaw; what remains of the viewpoint is the camera tilt, which after
the y alignment becomes a yaw-dependent mix of forward and sideways lean.

Classes (`CLASS_NAMES`): each animates the joint angles of a few body parts
with its own pattern, most in two styles (a high or a low wave, a front or
a side kick, clapping in front or above the head, ...). The left/right
variants, nod/shake and jump/squat form similar-looking pairs. `handshake`
and `push` are two-person classes; body 1 is present and moves in both.
An action lasts a fifth to two thirds of the clip (base duration over
speed) and starts at a random frame, so no class is a frame-aligned
template.

Nuisance, per sample unless said otherwise (`Nuisance` holds the ranges):
body proportions per subject (scale 0.85-1.15 and about 5 % per bone),
camera yaw of +-30 degrees and tilt of +-8 degrees, speed 0.7-1.4x (the
action window lasts its class's base fraction of the clip divided by the
speed), a random onset and oscillation phase, amplitude 0.6-1.2, Gaussian
noise of 1 cm on every raw coordinate, idle motion of every joint (sway,
breathing), a resting posture of each limb the class does not move (hand
on hip, arms crossed, a hand held up, a knee bent, ...) with, for 35 % of
such limbs, a gesture (a move to another posture and back), and, for
single-person classes, a second, idle body with probability 0.15. The
postures and gestures overlap the poses of the classes on purpose: a class
shows in how its parts move, not in where they are in one frame.

Actionlet. Every sample carries a ground-truth `actionlet` (M, T, V)
float32 mask: `actionlet[m, t, v] = 1` when frame t lies inside the window
in which person m performs the class's motion, and joint v is one that the
class's motion moves: its position relative to joint 20, computed from the
class's joint angles alone (no idle motion, no noise, no viewpoint), gets
farther than `ACTIONLET_THRESHOLD_M` (3 cm) from its rest position at some
frame of that window. Everything else is 0: idle bodies, absent bodies,
joints moved only by idle motion, frames before and after the action.

Subjects and splits. Subject ids 1..num_subjects each fix a body (proportions
drawn from the seed and the id). The subjects are shuffled and split 70/15/15
% into train/val/test (at least one each); samples are shared out to the
splits in proportion to their subjects, each subject performing every class
in turn. The second body (partner or bystander) is another subject of the
same split. Sample fields: `subject` is body 0's subject, `camera` the
viewpoint bucket of its yaw (1: below -10 degrees, 2: up to 10, 3: above),
`replication` how many times the subject has performed the class so far
(1-based), `name` "S{seed:03d}P{subject:03d}A{class:03d}N{index:05d}" with
a 1-based class as in NTU names and a running index over the dataset.

Everything is a function of the arguments: the same seed gives byte-identical
arrays, and another seed gives other data.
"""

import dataclasses
import functools
import json

import numpy as np
from absl import flags

from data_prep import skeleton_model as sm
from data_prep.preprocess import describe
from data_prep.preprocess import preprocess_to_fixed_length
from kskel import cli
from kskel import fileio
from kskel.data.schema import Sample
from kskel.data.schema import write_dataset
from kskel.errors import KskelError

NUM_BODIES = 2
ACTIONLET_THRESHOLD_M = 0.03
SPLITS = (("train", 0.70), ("val", 0.15), ("test", 0.15))
# Samples are generated in fixed chunks, so memory stays bounded and the
# output does not depend on anything but the arguments.
_CHUNK = 1024
# Offsets of the random streams drawn from one seed.
_STREAM_SPLITS, _STREAM_BODIES, _STREAM_SAMPLES = 0, 1, 2
_X, _Y, _Z = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Nuisance:
    """Ranges of the nuisance factors; `Nuisance()` is the default dataset.

    Args:
        scale_range: (low, high), uniform body scale of a subject.
        bone_jitter: float, std of a subject's per-bone length factor.
        yaw_deg: float, camera yaw is uniform in +-yaw_deg.
        tilt_deg: float, camera pitch is uniform in +-tilt_deg (roll in
            half that).
        speed_range: (low, high), uniform speed factor of the action.
        amplitude_range: (low, high), uniform amplitude factor.
        noise_std: float, std in metres of the noise on raw coordinates.
        idle_scale: float, factor on the idle motion, resting postures
            and gestures included (0 turns them off).
        gesture_prob: float, chance that a limb the class does not move
            makes a gesture (moves to another resting posture and back).
        second_body_prob: float, chance of an idle second body in a
            single-person class.
    """

    scale_range: tuple = (0.85, 1.15)
    bone_jitter: float = 0.05
    yaw_deg: float = 30.0
    tilt_deg: float = 8.0
    speed_range: tuple = (0.7, 1.4)
    amplitude_range: tuple = (0.6, 1.2)
    noise_std: float = 0.01
    idle_scale: float = 1.0
    gesture_prob: float = 0.35
    second_body_prob: float = 0.15


DEFAULT_NUISANCE = Nuisance()


# ----------------------------------------------------------------------------
# Motion programs: each fills class joint angles (degrees) into
# `angles[:, body, t, bone, axis]` and returns one bool (N, T) window per
# animated body: the frames in which that person performs the action.


@dataclasses.dataclass(frozen=True)
class _Side:
    """The bones of one side; `sign` flips the lateral (y, z) angles."""

    upper_arm: int
    forearm: int
    hand: int
    thigh: int
    shin: int
    foot: int
    sign: float


RIGHT = _Side(
    sm.RIGHT_UPPER_ARM,
    sm.RIGHT_FOREARM,
    sm.RIGHT_HAND,
    sm.RIGHT_THIGH,
    sm.RIGHT_SHIN,
    sm.RIGHT_FOOT,
    1.0,
)
LEFT = _Side(
    sm.LEFT_UPPER_ARM,
    sm.LEFT_FOREARM,
    sm.LEFT_HAND,
    sm.LEFT_THIGH,
    sm.LEFT_SHIN,
    sm.LEFT_FOOT,
    -1.0,
)
_OTHER = {RIGHT: LEFT, LEFT: RIGHT}


@dataclasses.dataclass(frozen=True)
class _Timing:
    """Per-sample timing and size of an action; (N, 1) arrays unless said.

    `rel` (N, T) is the time relative to the action window: 0 at its
    start, 1 at its end. `style` in [0, 1) picks a class's variant (say,
    a front or a side kick), so that no class is one pose.
    """

    rel: np.ndarray
    amp: np.ndarray
    pose: np.ndarray
    cycles: np.ndarray
    phase: np.ndarray
    count: np.ndarray
    style: np.ndarray

    def progress(self, start=0.0, stop=1.0):
        """Progress through the part [start, stop] of the window, in [0, 1]."""
        return np.clip((self.rel - start) / (stop - start), 0.0, 1.0)

    def window(self, start=0.0, stop=1.0):
        """Frames strictly inside the part [start, stop] of the window."""
        return (self.rel > start) & (self.rel < stop)

    def oscillation(self):
        """sin(2 pi cycles u + phase) over the window's progress u."""
        u = self.progress()
        return np.sin(2.0 * np.pi * self.cycles * u + self.phase)


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _plateau(u, ramp):
    """0 -> 1 over the first `ramp` of u in [0, 1], hold, 1 -> 0 at the end."""
    return np.minimum(_smoothstep(u / ramp), _smoothstep((1.0 - u) / ramp))


def _bump(u):
    return np.sin(np.pi * u) ** 2


def _wave(tm, angles, side):
    on = _plateau(tm.progress(), 0.25)
    osc = tm.oscillation()
    # Style 0: the whole arm up, waving in the frontal plane; style 1: the
    # upper arm low, the forearm up, wiping side to side about it.
    high = tm.style < 0.5
    body = angles[:, 0]
    body[..., side.upper_arm, _Z] = (
        side.sign * on * np.where(high, 130.0, 30.0) * tm.pose
    )
    body[..., side.upper_arm, _X] = on * np.where(high, 20.0, 30.0) * tm.pose
    swing = 30.0 * tm.amp * osc
    body[..., side.forearm, _Z] = (
        side.sign * on * np.where(high, 35.0 * tm.pose + swing, 0.0)
    )
    body[..., side.forearm, _X] = on * np.where(high, 0.0, 110.0 * tm.pose)
    body[..., side.forearm, _Y] = side.sign * on * np.where(high, 0.0, swing)
    body[..., side.hand, _Z] = side.sign * on * 15.0 * tm.amp * osc
    return (tm.window(),)


def _kick(tm, angles, side):
    u = tm.progress()
    lift = _bump(u) * tm.amp
    chamber = np.sin(2.0 * np.pi * u) ** 2 * tm.amp
    front = tm.style < 0.5  # else a side kick
    body = angles[:, 0]
    body[..., side.thigh, _X] = np.where(front, 80.0, 15.0) * lift
    body[..., side.thigh, _Z] = side.sign * np.where(front, 0.0, 60.0) * lift
    body[..., side.shin, _X] = -70.0 * chamber
    body[..., side.foot, _X] = -20.0 * lift
    # The opposite arm goes out for balance.
    other = _OTHER[side]
    body[..., other.upper_arm, _Z] = other.sign * 25.0 * lift
    return (tm.window(),)


def _punch(tm, angles, side):
    u = tm.progress()
    guard = _plateau(u, 0.2)
    strike = guard * np.sin(np.pi * tm.count * u) ** 4
    body = angles[:, 0]
    # Most people raise both fists; some leave the other arm down.
    both = tm.style < 0.6
    for arm in (side, _OTHER[side]):
        up = guard if arm is side else guard * both
        body[..., arm.upper_arm, _X] = up * 35.0 * tm.pose
        body[..., arm.upper_arm, _Z] = -arm.sign * up * 8.0
        body[..., arm.forearm, _X] = up * 110.0 * tm.pose
    body[..., side.upper_arm, _X] += strike * 50.0 * tm.amp
    body[..., side.forearm, _X] *= 1.0 - 0.9 * strike
    # The punching shoulder turns forward.
    body[..., sm.UPPER_SPINE, _Y] = side.sign * strike * 20.0 * tm.amp
    return (tm.window(),)


def _clap(tm, angles):
    on = _plateau(tm.progress(), 0.25)
    together = 0.5 + 0.5 * tm.oscillation()
    front = tm.style < 0.6  # else above the head
    body = angles[:, 0]
    for arm in (RIGHT, LEFT):
        inward = on * (8.0 + 22.0 * tm.amp * together)
        overhead = on * (150.0 * tm.pose + 40.0 * tm.amp * together)
        body[..., arm.upper_arm, _X] = on * np.where(front, 70.0, 20.0)
        body[..., arm.upper_arm, _Y] = arm.sign * np.where(front, inward, 0.0)
        body[..., arm.upper_arm, _Z] = arm.sign * np.where(front, 0.0, overhead)
        body[..., arm.forearm, _X] = on * np.where(front, 40.0, 10.0)
    return (tm.window(),)


def _raise_arms(tm, angles):
    on = _plateau(tm.progress(), 0.3) * tm.pose
    sideways = tm.style < 0.5  # else forward
    body = angles[:, 0]
    for arm in (RIGHT, LEFT):
        body[..., arm.upper_arm, _Z] = (
            arm.sign * on * np.where(sideways, 160, 0)
        )
        body[..., arm.upper_arm, _X] = on * np.where(sideways, 15.0, 160.0)
        body[..., arm.forearm, _Z] = arm.sign * on * 10.0
    return (tm.window(),)


def _bow(tm, angles):
    bend = _plateau(tm.progress(), 0.35) * tm.amp
    body = angles[:, 0]
    body[..., sm.LOWER_SPINE, _X] = -45.0 * bend
    body[..., sm.UPPER_SPINE, _X] = -15.0 * bend
    body[..., sm.NECK, _X] = -10.0 * bend
    # The arms keep hanging: they turn back against the trunk.
    for arm in (RIGHT, LEFT):
        body[..., arm.upper_arm, _X] = 40.0 * bend
    return (tm.window(),)


def _squat(tm, angles):
    on = _plateau(tm.progress(), 0.3)
    depth = on * tm.amp
    arms = tm.style < 0.6  # arms forward for balance, else left alone
    body = angles[:, 0]
    for leg in (RIGHT, LEFT):
        body[..., leg.thigh, _X] = 95.0 * depth
        body[..., leg.shin, _X] = -120.0 * depth
        body[..., leg.foot, _X] = 25.0 * depth  # keeps the foot flat
        body[..., leg.upper_arm, _X] = 80.0 * on * tm.pose * arms
    body[..., sm.LOWER_SPINE, _X] = -35.0 * depth
    return (tm.window(),)


def _jump(tm, angles):
    # `count` jumps, each: crouch, take off with legs straight and toes
    # pointed, land in a crouch, stand.
    w = (tm.count * tm.progress()) % 1.0
    crouch = np.sin(2.0 * np.pi * w) ** 2
    flight = np.sin(np.pi * w) ** 4
    swing = np.where(w < 0.5, -40.0, 30.0) * crouch + 120.0 * flight
    swing *= tm.style < 0.7  # else the arms do not swing
    body = angles[:, 0]
    for leg in (RIGHT, LEFT):
        body[..., leg.thigh, _X] = 55.0 * tm.amp * crouch + 10.0 * flight
        body[..., leg.shin, _X] = -95.0 * tm.amp * crouch - 15.0 * flight
        body[..., leg.foot, _X] = 20.0 * tm.amp * crouch - 30.0 * flight
        body[..., leg.upper_arm, _X] = tm.amp * swing
    body[..., sm.LOWER_SPINE, _X] = -25.0 * tm.amp * crouch
    return (tm.window(),)


def _nod(tm, angles):
    on = _plateau(tm.progress(), 0.2)
    down = on * np.sin(np.pi * tm.cycles * tm.progress()) ** 2 * tm.amp
    body = angles[:, 0]
    body[..., sm.NECK, _X] = -20.0 * down
    body[..., sm.HEAD, _X] = -45.0 * down
    return (tm.window(),)


def _shake_head(tm, angles):
    turn = _plateau(tm.progress(), 0.2) * tm.oscillation() * tm.amp
    body = angles[:, 0]
    body[..., sm.NECK, _Z] = 10.0 * turn
    body[..., sm.HEAD, _Z] = 35.0 * turn
    body[..., sm.HEAD, _Y] = 30.0 * turn
    return (tm.window(),)


def _walk(tm, angles):
    on = _plateau(tm.progress(), 0.15) * tm.amp
    step = tm.oscillation()
    arms = on * (tm.style < 0.6)  # else the arms do not swing
    body = angles[:, 0]
    for leg, phase in ((RIGHT, step), (LEFT, -step)):
        lift = on * np.maximum(phase, 0.0)
        body[..., leg.thigh, _X] = 45.0 * lift
        body[..., leg.shin, _X] = -80.0 * lift
        # Arms swing against the leg of their side.
        body[..., leg.upper_arm, _X] = -25.0 * arms * phase
        body[..., leg.forearm, _X] = 20.0 * arms
    return (tm.window(),)


def _handshake(tm, angles):
    windows = []
    # Body 1 reaches out a little ahead of body 0.
    for body_index, start in ((0, 0.0), (1, -0.05)):
        u = tm.progress(start, start + 1.0)
        on = _plateau(u, 0.25)
        shake = np.sin(2.0 * np.pi * tm.cycles * u + tm.phase)
        body = angles[:, body_index]
        body[..., sm.RIGHT_UPPER_ARM, _X] = on * 45.0 * tm.pose
        body[..., sm.RIGHT_UPPER_ARM, _Y] = on * 10.0
        shaken = on * (35.0 + 10.0 * tm.amp * shake)
        body[..., sm.RIGHT_FOREARM, _X] = shaken
        windows.append(tm.window(start, start + 1.0))
    return tuple(windows)


def _push(tm, angles):
    u = tm.progress()
    on = _plateau(u, 0.3)
    thrust = _bump(tm.progress(0.3, 0.7))
    pusher = angles[:, 0]
    one_hand = tm.style >= 0.6  # the right hand only
    for arm in (RIGHT, LEFT):
        use = on * (~one_hand if arm is LEFT else 1.0)
        pusher[..., arm.upper_arm, _X] = use * (40.0 + 40.0 * tm.amp * thrust)
        pusher[..., arm.forearm, _X] = use * 90.0 * (1.0 - thrust)
    pusher[..., sm.LOWER_SPINE, _X] = -15.0 * tm.amp * thrust
    # The pushed person recoils: leans back, arms fly out, steps back.
    recoil = _bump(tm.progress(0.4, 0.9)) * tm.amp
    pushed = angles[:, 1]
    pushed[..., sm.LOWER_SPINE, _X] = 20.0 * recoil
    for arm in (RIGHT, LEFT):
        pushed[..., arm.upper_arm, _Z] = arm.sign * 35.0 * recoil
        pushed[..., arm.upper_arm, _X] = -20.0 * recoil
    pushed[..., sm.RIGHT_THIGH, _X] = -25.0 * recoil
    pushed[..., sm.RIGHT_SHIN, _X] = -20.0 * recoil
    return tm.window(), tm.window(0.4, 0.9)


@dataclasses.dataclass(frozen=True)
class _Action:
    """A class: its motion program and base timing.

    `duration` is the fraction of the clip the action lasts at speed 1;
    `cycles` the base number of oscillations (or nods) in the window.
    """

    name: str
    program: object
    duration: float
    cycles: float = 3.0
    two_person: bool = False


# Actions are short against the clip (0.28-0.45 of it at speed 1)
# and start at a random time, so a class has no fixed frames: a classifier
# has to find the motion, not match a frame-aligned template.
_ACTIONS = (
    _Action("wave_right_hand", functools.partial(_wave, side=RIGHT), 0.4, 2.5),
    _Action("wave_left_hand", functools.partial(_wave, side=LEFT), 0.4, 2.5),
    _Action("kick_right_leg", functools.partial(_kick, side=RIGHT), 0.28),
    _Action("kick_left_leg", functools.partial(_kick, side=LEFT), 0.28),
    _Action("punch_right", functools.partial(_punch, side=RIGHT), 0.36),
    _Action("punch_left", functools.partial(_punch, side=LEFT), 0.36),
    _Action("clap", _clap, 0.36, cycles=3.0),
    _Action("raise_both_arms", _raise_arms, 0.36),
    _Action("bow", _bow, 0.34),
    _Action("squat", _squat, 0.38),
    _Action("jump", _jump, 0.38),
    _Action("nod_head", _nod, 0.32, cycles=3.0),
    _Action("shake_head", _shake_head, 0.32, cycles=2.5),
    _Action("walk_in_place", _walk, 0.45),
    _Action("handshake", _handshake, 0.4, two_person=True),
    _Action("push", _push, 0.32, two_person=True),
)
CLASS_NAMES = tuple(action.name for action in _ACTIONS)
NUM_CLASSES = len(CLASS_NAMES)
TWO_PERSON_CLASSES = tuple(
    i for i, action in enumerate(_ACTIONS) if action.two_person
)


def _draw_timing(action, n, num_frames, rng, nuisance):
    speed = rng.uniform(*nuisance.speed_range, size=(n, 1))
    duration = np.minimum(0.95, action.duration / speed)
    onset = rng.uniform(size=(n, 1)) * (1.0 - duration)
    times = np.linspace(0.0, 1.0, num_frames)[None, :]
    return _Timing(
        rel=(times - onset) / duration,
        amp=rng.uniform(*nuisance.amplitude_range, size=(n, 1)),
        pose=rng.uniform(0.85, 1.05, size=(n, 1)),
        cycles=action.cycles * rng.uniform(0.8, 1.25, size=(n, 1)),
        phase=rng.uniform(0.0, 2.0 * np.pi, size=(n, 1)),
        count=rng.integers(1, 4, size=(n, 1)),
        style=rng.uniform(size=(n, 1)),
    )


# ----------------------------------------------------------------------------
# Idle motion: a static posture offset, slow sway and breathing, in degrees
# per bone and axis (rx, ry, rz).

_IDLE_DEG = {
    sm.PELVIS: (2.0, 1.0, 2.0),
    sm.LOWER_SPINE: (2.0, 2.0, 1.5),
    sm.UPPER_SPINE: (1.5, 1.5, 1.0),
    sm.NECK: (3.0, 3.0, 2.0),
    sm.HEAD: (4.0, 4.0, 3.0),
    sm.LEFT_UPPER_ARM: (4.0, 3.0, 4.0),
    sm.RIGHT_UPPER_ARM: (4.0, 3.0, 4.0),
    sm.LEFT_FOREARM: (5.0, 3.0, 3.0),
    sm.RIGHT_FOREARM: (5.0, 3.0, 3.0),
    sm.LEFT_HAND: (6.0, 4.0, 4.0),
    sm.RIGHT_HAND: (6.0, 4.0, 4.0),
    sm.LEFT_THIGH: (1.5, 1.0, 1.5),
    sm.RIGHT_THIGH: (1.5, 1.0, 1.5),
    sm.LEFT_SHIN: (2.0, 0.0, 0.0),
    sm.RIGHT_SHIN: (2.0, 0.0, 0.0),
}


def _idle_sigma():
    sigma = np.zeros((sm.NUM_JOINTS, 3))
    for joint, values in _IDLE_DEG.items():
        sigma[joint] = values
    return sigma


_IDLE_SIGMA = _idle_sigma()


def _idle_angles(rng, lead, num_frames, scale):
    """Idle joint angles in degrees, shape `lead + (T, V, 3)`."""
    times = np.linspace(0.0, 1.0, num_frames)[:, None, None]
    size = lead + (1, sm.NUM_JOINTS, 3)
    offset = 0.5 * rng.standard_normal(size)
    freq = rng.uniform(0.3, 1.5, size)  # cycles per clip
    phase = rng.uniform(0.0, 2.0 * np.pi, size)
    sway = np.sin(2.0 * np.pi * freq * times + phase)
    idle = scale * _IDLE_SIGMA * (offset + sway)
    breath_freq = rng.uniform(2.0, 4.0, lead + (1,))
    breath_phase = rng.uniform(0.0, 2.0 * np.pi, lead + (1,))
    breath = np.sin(2.0 * np.pi * breath_freq * times[..., 0, 0] + breath_phase)
    idle[..., sm.UPPER_SPINE, _X] += scale * breath
    return idle


# Resting postures: per arm and for the legs, with how often a person
# holds each; angles (rx, ry, rz) in degrees for the right side, mirrored
# for the left. Some arm postures look like a frame of an action (an arm
# held up, a fist forward), so a class is not given away by a static pose.
# An arm or leg that the class moves starts from the neutral posture.
_ARM_POSTURES = (  # upper arm, forearm, hand
    ("hanging", 0.35, ((0, 0, 0), (0, 0, 0), (0, 0, 0))),
    ("hand_on_hip", 0.15, ((-15, 0, 35), (10, 0, -80), (0, 0, -20))),
    ("across_chest", 0.1, ((25, 50, -5), (95, 0, 0), (0, 0, 0))),
    ("hand_in_front", 0.15, ((20, 20, 0), (60, 0, 0), (10, 0, 0))),
    ("hand_raised", 0.08, ((20, 0, 120), (0, 0, 40), (0, 0, 0))),
    ("hand_at_head", 0.09, ((40, 30, 30), (140, 0, 0), (0, 0, 0))),
    ("arm_forward", 0.08, ((50, 10, 0), (60, 0, 0), (0, 0, 0))),
)
_LEG_POSTURES = (  # thigh, shin, foot
    ("straight", 0.6, ((0, 0, 0), (0, 0, 0), (0, 0, 0))),
    ("knee_bent", 0.15, ((20, 0, 0), (-35, 0, 0), (15, 0, 0))),
    ("foot_out", 0.15, ((0, 0, 12), (0, 0, -6), (0, 0, 0))),
    ("foot_forward", 0.1, ((20, 0, 0), (-5, 0, 0), (-10, 0, 0))),
)


def _posture_table(postures, bones_of):
    table = np.zeros((len(postures), 2, sm.NUM_JOINTS, 3))
    for i, (_, _, angles) in enumerate(postures):
        for side_index, side in enumerate((RIGHT, LEFT)):
            for bone, (rx, ry, rz) in zip(bones_of(side), angles):
                table[i, side_index, bone] = (
                    rx,
                    side.sign * ry,
                    side.sign * rz,
                )
    return table


def _arm_bones(side):
    return (side.upper_arm, side.forearm, side.hand)


def _leg_bones(side):
    return (side.thigh, side.shin, side.foot)


_LIMBS = tuple(
    (
        bones_of,
        _posture_table(postures, bones_of),
        np.array([p for _, p, _ in postures]),
    )
    for bones_of, postures in (
        (_arm_bones, _ARM_POSTURES),
        (_leg_bones, _LEG_POSTURES),
    )
)


def _rest_postures(rng, class_angles, nuisance):
    """Resting angles (N, M, T, V, 3) in degrees: postures and gestures.

    Each limb of each body holds a posture drawn from `_ARM_POSTURES` or
    `_LEG_POSTURES` (jittered) and, with probability
    `nuisance.gesture_prob`, moves to another one and back at a random time
    (a gesture, such as raising a hand for a while). A limb the class moves
    gets neither.
    """
    lead = class_angles.shape[:2]
    num_frames = class_angles.shape[2]
    times = np.linspace(0.0, 1.0, num_frames)
    postures = np.zeros(lead + (num_frames, sm.NUM_JOINTS, 3))
    for bones_of, table, probs in _LIMBS:
        for side_index, side in enumerate((RIGHT, LEFT)):
            bones = list(bones_of(side))
            base, visit = rng.choice(len(probs), size=(2,) + lead, p=probs)
            jitter = rng.uniform(0.8, 1.1, size=(2,) + lead + (1, 1))
            base = table[base, side_index] * jitter[0]
            visit = table[visit, side_index] * jitter[1]
            onset = rng.uniform(0.0, 0.7, size=lead + (1,))
            duration = rng.uniform(0.25, 0.6, size=lead + (1,))
            gesture = rng.uniform(size=lead + (1,)) < nuisance.gesture_prob
            share = _plateau(np.clip((times - onset) / duration, 0, 1), 0.3)
            share = share * gesture
            limb = (
                base[:, :, None]
                + share[..., None, None] * (visit - base)[:, :, None]
            )
            moved = np.any(class_angles[:, :, :, bones] != 0.0, axis=(2, 3, 4))
            postures += np.where(moved[:, :, None, None, None], 0.0, limb)
    return nuisance.idle_scale * postures


# ----------------------------------------------------------------------------
# Bodies, viewpoint and rendering.


def subject_bone_scales(seed, subjects, nuisance=DEFAULT_NUISANCE):
    """Per-bone length factors of subjects, fixed by (seed, subject id).

    Args:
        seed: int >= 0, the dataset seed.
        subjects: iterable of int subject ids.
        nuisance: `Nuisance`, gives the scale range and per-bone jitter.

    Returns:
        float64 array `(len(subjects), V)`: global scale times per-bone
        jitter, to multiply `skeleton_model.REST_OFFSETS` row-wise.
    """
    rows = []
    for subject in subjects:
        rng = np.random.default_rng([seed, _STREAM_BODIES, subject])
        scale = rng.uniform(*nuisance.scale_range)
        jitter = 1.0 + nuisance.bone_jitter * rng.standard_normal(sm.NUM_JOINTS)
        rows.append(scale * np.clip(jitter, 0.8, 1.2))
    return np.asarray(rows, dtype=np.float64).reshape(-1, sm.NUM_JOINTS)


def camera_bucket(yaw_deg):
    """Viewpoint bucket of yaws in degrees: 1 (< -10), 2 (< 10), 3 (>= 10)."""
    return np.digitize(yaw_deg, [-10.0, 10.0]) + 1


def _view_transforms(rng, n, two_person, nuisance):
    """Per-body rotations (N, M, 3, 3), translations (N, M, 3), body-0 yaw."""
    yaw0 = rng.uniform(-nuisance.yaw_deg, nuisance.yaw_deg, n)
    # Partners face each other; a bystander faces anywhere.
    facing = yaw0 + 180.0 + rng.uniform(-20.0, 20.0, n)
    yaw1 = np.where(two_person, facing, rng.uniform(-180.0, 180.0, n))
    pitch = rng.uniform(-nuisance.tilt_deg, nuisance.tilt_deg, n)
    roll = rng.uniform(-nuisance.tilt_deg, nuisance.tilt_deg, n) / 2.0
    zeros = np.zeros(n)
    camera = sm.rotation_matrices(np.deg2rad(np.stack([pitch, zeros, roll], 1)))
    yaws = np.deg2rad(np.stack([yaw0, yaw1], axis=1))
    turn = sm.rotation_matrices(
        np.stack([np.zeros_like(yaws), yaws, np.zeros_like(yaws)], axis=-1)
    )
    rotation = camera[:, None] @ turn
    # Kinect-like placement: about 3 m in front of the camera, side by side.
    place0 = np.stack(
        [rng.uniform(-0.5, 0.5, n), -0.2 + zeros, rng.uniform(2.5, 3.5, n)], 1
    )
    side = rng.choice([-1.0, 1.0], n) * rng.uniform(0.6, 1.0, n)
    place1 = place0 + np.stack([side, zeros, rng.uniform(-0.3, 0.3, n)], 1)
    return rotation, np.stack([place0, place1], axis=1), yaw0


def _actionlet(offsets, class_angles, windows):
    """The ground-truth mask (N, M, T, V) float32 (module docstring)."""
    moved = sm.forward_kinematics(offsets, np.deg2rad(class_angles))
    rest = sm.forward_kinematics(offsets, np.zeros_like(class_angles[:, :, :1]))
    moved -= moved[..., sm.CENTER : sm.CENTER + 1, :]
    rest -= rest[..., sm.CENTER : sm.CENTER + 1, :]
    distance = np.linalg.norm(moved - rest, axis=-1)
    active = np.zeros(distance.shape[:3], dtype=bool)
    for body, window in enumerate(windows):
        active[:, body] = window
    peak = np.where(active[..., None], distance, 0.0).max(axis=2)
    moving = peak > ACTIONLET_THRESHOLD_M
    return (active[..., None] & moving[:, :, None, :]).astype(np.float32)


def _render(class_id, scales, second_body, rng, num_frames, nuisance):
    """Skeletons, actionlets and camera buckets of samples of one class.

    Args:
        class_id: int, the class of all samples.
        scales: (N, M, V) per-bone length factors of the two bodies.
        second_body: (N,) bool, whether body 1 is present.
        rng: `np.random.Generator`.
        num_frames: int, T.
        nuisance: `Nuisance`.

    Returns:
        skeleton (N, M, T, V, 3) float32, actionlet (N, M, T, V) float32,
        camera (N,) int.
    """
    action = _ACTIONS[class_id]
    n = scales.shape[0]
    timing = _draw_timing(action, n, num_frames, rng, nuisance)
    class_angles = np.zeros((n, NUM_BODIES, num_frames, sm.NUM_JOINTS, 3))
    windows = action.program(timing, class_angles)
    idle = _idle_angles(rng, (n, NUM_BODIES), num_frames, nuisance.idle_scale)
    idle += _rest_postures(rng, class_angles, nuisance)
    offsets = (sm.REST_OFFSETS * scales[..., None])[:, :, None]
    pose = sm.forward_kinematics(offsets, np.deg2rad(class_angles + idle))
    rotation, place, yaw0 = _view_transforms(
        rng, n, action.two_person, nuisance
    )
    raw = pose @ np.swapaxes(rotation, -1, -2)[:, :, None]
    raw += place[:, :, None, None, :]
    raw += nuisance.noise_std * rng.standard_normal(raw.shape)
    present = np.stack([np.ones(n, bool), second_body], axis=1)
    raw *= present[:, :, None, None, None]
    skeleton = np.stack(
        [preprocess_to_fixed_length(sample, num_frames) for sample in raw]
    )
    actionlet = _actionlet(offsets, class_angles, windows)
    actionlet *= present[:, :, None, None]
    return skeleton, actionlet, camera_bucket(yaw0)


def _check_class(class_id):
    integer = isinstance(class_id, (int, np.integer))
    if isinstance(class_id, bool) or not integer:
        raise ValueError(f"class_id must be an int. Received: {class_id=}")
    if not 0 <= class_id < NUM_CLASSES:
        raise ValueError(
            f"class_id must be in [0, {NUM_CLASSES}). Received: {class_id=}"
        )


def _check_frames(num_frames):
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        raise ValueError(f"num_frames must be an int. Received: {num_frames=}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2. Received: {num_frames=}")


def generate_sample(
    class_id,
    rng,
    *,
    num_frames=50,
    subject=1,
    partner_subject=None,
    body_seed=0,
    second_body=None,
    nuisance=DEFAULT_NUISANCE,
    name=None,
):
    """Generates one sample of class `class_id`.

    Args:
        class_id: int, 0-based index into `CLASS_NAMES`.
        rng: `np.random.Generator`, source of the per-sample randomness.
        num_frames: int >= 2, T. Defaults to 50.
        subject: int, body 0's subject id. Defaults to 1.
        partner_subject: int, body 1's subject id. Defaults to
            `subject + 1`.
        body_seed: int >= 0, seed of the subjects' body proportions
            (`subject_bone_scales`). Defaults to 0.
        second_body: bool or None, whether body 1 is present; None draws
            it (always for two-person classes, else with probability
            `nuisance.second_body_prob`). Defaults to None.
        nuisance: `Nuisance`. Defaults to `DEFAULT_NUISANCE`.
        name: str or None, the sample name. Defaults to
            "P{subject:03d}A{class_id + 1:03d}".

    Returns:
        `kskel.data.schema.Sample` with skeleton (2, T, 25, 3), actionlet
        (2, T, 25), label, subject and camera set.

    Raises:
        ValueError: on a bad class id or frame count, or when
            `second_body` is False for a two-person class.
    """
    _check_class(class_id)
    _check_frames(num_frames)
    two_person = _ACTIONS[class_id].two_person
    if second_body is None:
        second_body = two_person or rng.uniform() < nuisance.second_body_prob
    if two_person and not second_body:
        raise ValueError(
            f"class {CLASS_NAMES[class_id]!r} needs two bodies. "
            f"Received: {second_body=}"
        )
    partner = subject + 1 if partner_subject is None else partner_subject
    scales = subject_bone_scales(body_seed, [subject, partner], nuisance)
    skeleton, actionlet, camera = _render(
        int(class_id),
        scales[None],
        np.array([bool(second_body)]),
        rng,
        num_frames,
        nuisance,
    )
    return Sample(
        skeleton=skeleton[0],
        label=int(class_id),
        name=name or f"P{subject:03d}A{class_id + 1:03d}",
        num_frames=num_frames,
        subject=int(subject),
        camera=int(camera[0]),
        actionlet=actionlet[0],
    )


# ----------------------------------------------------------------------------
# The dataset.


def split_subjects(num_subjects, seed):
    """Subject ids of each split, disjoint, 70/15/15 % (at least one each).

    Args:
        num_subjects: int >= 3.
        seed: int >= 0.

    Returns:
        dict split name -> sorted tuple of subject ids (1-based).
    """
    rng = np.random.default_rng([seed, _STREAM_SPLITS])
    order = rng.permutation(np.arange(1, num_subjects + 1))
    held_out = [max(1, round(share * num_subjects)) for _, share in SPLITS[1:]]
    sizes = [num_subjects - sum(held_out)] + held_out
    bounds = np.cumsum([0] + sizes)
    return {
        split: tuple(sorted(int(s) for s in order[lo:hi]))
        for (split, _), lo, hi in zip(SPLITS, bounds[:-1], bounds[1:])
    }


def _split_sizes(num_samples, subjects):
    """Samples per split, in proportion to its subjects; train takes the rest.

    Every split gets at least one sample.
    """
    total = sum(len(s) for s in subjects.values())
    sizes = {
        split: max(1, round(num_samples * len(subjects[split]) / total))
        for split, _ in SPLITS[1:]
    }
    sizes[SPLITS[0][0]] = num_samples - sum(sizes.values())
    return sizes


def _plan(size, subjects, rng):
    """Class, subject, partner and replication of each sample of a split.

    Sample j is class j % C of block j // C, and each block goes to the next
    subject in turn, so every subject performs every class; the order is
    then shuffled.
    """
    j = np.arange(size)
    block = j // NUM_CLASSES
    subjects = np.asarray(subjects)
    subject = subjects[block % len(subjects)]
    replication = block // len(subjects) + 1
    # A partner is another subject of the same split (itself if alone).
    shift = rng.integers(1, max(len(subjects), 2), size)
    partner = subjects[(block + shift) % len(subjects)]
    order = rng.permutation(size)
    return {
        "label": (j % NUM_CLASSES)[order],
        "subject": subject[order],
        "partner": partner[order],
        "replication": replication[order],
    }


def _split_samples(plan, rng, seed, first_index, num_frames, nuisance):
    """Yields the `Sample`s of one split, generated chunk by chunk."""
    ids = np.unique(np.concatenate([plan["subject"], plan["partner"]]))
    table = dict(zip(ids, subject_bone_scales(seed, ids, nuisance)))
    size = len(plan["label"])
    for start in range(0, size, _CHUNK):
        chunk = {k: v[start : start + _CHUNK] for k, v in plan.items()}
        n = len(chunk["label"])
        second = rng.uniform(size=n) < nuisance.second_body_prob
        second |= np.isin(chunk["label"], TWO_PERSON_CLASSES)
        shape = (n, NUM_BODIES, num_frames, sm.NUM_JOINTS, 3)
        skeleton = np.zeros(shape, np.float32)
        actionlet = np.zeros(skeleton.shape[:-1], np.float32)
        camera = np.zeros(n, np.int64)
        for class_id in range(NUM_CLASSES):
            rows = np.flatnonzero(chunk["label"] == class_id)
            if not rows.size:
                continue
            scales = np.stack(
                [
                    [table[chunk["subject"][r]], table[chunk["partner"][r]]]
                    for r in rows
                ]
            )
            out = _render(
                class_id, scales, second[rows], rng, num_frames, nuisance
            )
            skeleton[rows], actionlet[rows], camera[rows] = out
        for i in range(n):
            label, subject = int(chunk["label"][i]), int(chunk["subject"][i])
            index = first_index + start + i
            yield Sample(
                skeleton=skeleton[i],
                label=label,
                name=f"S{seed:03d}P{subject:03d}A{label + 1:03d}N{index:05d}",
                num_frames=num_frames,
                subject=subject,
                camera=int(camera[i]),
                replication=int(chunk["replication"][i]),
                actionlet=actionlet[i],
            )


def generate_splits(
    num_samples,
    seed,
    num_frames=50,
    num_subjects=20,
    nuisance=DEFAULT_NUISANCE,
):
    """The samples of each split, as lazy generators.

    Args:
        num_samples: int >= 3, samples over all splits.
        seed: int >= 0; the same arguments give byte-identical samples.
        num_frames: int >= 2, T. Defaults to 50.
        num_subjects: int >= 3. Defaults to 20.
        nuisance: `Nuisance`. Defaults to `DEFAULT_NUISANCE`.

    Returns:
        dict split name ("train", "val", "test") -> generator of `Sample`.

    Raises:
        ValueError: on an argument out of range.
    """
    _check_counts(num_samples, seed, num_frames, num_subjects)
    subjects = split_subjects(num_subjects, seed)
    sizes = _split_sizes(num_samples, subjects)
    splits, first_index = {}, 0
    for split_index, (split, _) in enumerate(SPLITS):
        rng = np.random.default_rng([seed, _STREAM_SAMPLES, split_index])
        plan = _plan(sizes[split], subjects[split], rng)
        splits[split] = _split_samples(
            plan, rng, seed, first_index, num_frames, nuisance
        )
        first_index += sizes[split]
    return splits


def _check_counts(num_samples, seed, num_frames, num_subjects):
    _check_frames(num_frames)
    for what, value, low in (
        ("num_samples", num_samples, 3),
        ("seed", seed, 0),
        ("num_subjects", num_subjects, 3),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} must be an int. Received: {value!r}")
        if value < low:
            raise ValueError(f"{what} must be >= {low}. Received: {value!r}")


def generate_dataset(
    out_dir,
    num_samples,
    seed,
    num_frames=50,
    num_subjects=20,
    nuisance=DEFAULT_NUISANCE,
    samples_per_shard=1024,
):
    """Generates the synthetic dataset and writes it with `write_dataset`.

    Args:
        out_dir: str, output directory (replaced if it holds a dataset).
        num_samples: int >= 3, samples over all splits.
        seed: int >= 0.
        num_frames: int >= 2, T. Defaults to 50.
        num_subjects: int >= 3. Defaults to 20.
        nuisance: `Nuisance`. Defaults to `DEFAULT_NUISANCE`.
        samples_per_shard: int, records per shard. Defaults to 1024.

    Returns:
        dict, the manifest written to `out_dir/manifest.json`.

    Raises:
        ValueError: on an argument out of range.
        KskelError: when the dataset cannot be written.
    """
    splits = generate_splits(
        num_samples, seed, num_frames, num_subjects, nuisance
    )
    subjects = split_subjects(num_subjects, seed)
    preprocessing = dict(describe(num_frames))
    preprocessing["synthetic"] = True
    preprocessing["generator"] = {
        "module": "data_prep.synthetic",
        "seed": seed,
        "num_subjects": num_subjects,
        "split_subjects": {k: list(v) for k, v in subjects.items()},
        "nuisance": json.loads(json.dumps(dataclasses.asdict(nuisance))),
        "actionlet_threshold_m": ACTIONLET_THRESHOLD_M,
    }
    return write_dataset(
        out_dir,
        splits,
        layout="ntu25",
        class_names=list(CLASS_NAMES),
        preprocessing=preprocessing,
        source=f"synthetic seed={seed}",
        samples_per_shard=samples_per_shard,
    )


# ----------------------------------------------------------------------------
# Command line.


# Flags are defined only when run as a program, so that importing this
# module from another CLI (kskel.pretrain generates the demo data) does not
# clash with that CLI's flags.
def _define_flags():
    flags.DEFINE_string("out", None, "Output dataset directory.")
    flags.DEFINE_integer("num_samples", 2000, "Samples over all splits (>= 3).")
    flags.DEFINE_integer("seed", 0, "Random seed (>= 0).")
    flags.DEFINE_integer("num_frames", 50, "Frames T (>= 2).")
    flags.DEFINE_integer(
        "num_subjects", 20, "Subjects, split 70/15/15 % (>= 3)."
    )


def main(argv):
    del argv
    values = flags.FLAGS
    if not values.out:
        raise KskelError("--out is required: the output dataset directory.")
    fileio.check_scheme(values.out, "out")
    for name, low in (
        ("num_samples", 3),
        ("seed", 0),
        ("num_frames", 2),
        ("num_subjects", 3),
    ):
        if values[name].value < low:
            raise KskelError(
                f"--{name}={values[name].value}: must be >= {low}."
            )
    manifest = generate_dataset(
        values.out,
        values.num_samples,
        values.seed,
        num_frames=values.num_frames,
        num_subjects=values.num_subjects,
    )
    counts = ", ".join(
        f"{split} {entry['num_samples']}"
        for split, entry in manifest["splits"].items()
    )
    print(f"wrote {values.out}: {counts} samples, {NUM_CLASSES} classes")
    return 0


if __name__ == "__main__":
    _define_flags()
    cli.run(main)
