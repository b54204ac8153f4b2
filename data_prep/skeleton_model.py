"""An NTU-25 body model: rest pose, bone rotations and forward kinematics.

Used by the synthetic dataset generator (`data_prep.synthetic`). The body is
the NTU-25 tree of `kskel.graph.NTU25`, re-rooted at the spine base (joint
index 0, the pelvis), so that legs and spine hang from the pelvis the way a
standing person's do.

Coordinates are metres in a body frame with x towards the person's right,
y up and z towards their back (they face -z). This is the frame of the
preprocessed NTU data: there the shoulder vector joint9 - joint5 (right
minus left shoulder) is rotated onto +x (FACTS §3.2).

A pose is one rotation per joint (`angles[..., v, :]`, radians). For a
joint `v` other than the root it rotates the bone from `v`'s parent to `v`,
and everything below it, about the parent joint, in the parent's frame: the
upper arm is turned by the angles of the elbow joint, the forearm by those
of the wrist. The root's angles orient the whole body. Each rotation is
`R_y(ry) @ R_z(rz) @ R_x(rx)` (x first). With the body frame above and a
bone that hangs down at rest: rx > 0 swings it forward, rz > 0 swings it
towards the person's right, ry twists about the vertical. For a bone that
points up at rest (the spine, the neck), rx > 0 leans it backward.
"""

import numpy as np

from kskel.graph import NTU25

NUM_JOINTS = NTU25.num_joints
ROOT = 0  # spine base (pelvis)
CENTER = NTU25.center  # spine shoulder, the center of the preprocessed data

# Bones are named by the joint at their far end (see the module docstring).
PELVIS = ROOT  # its "bone" slot holds the orientation of the whole body
LOWER_SPINE = 1
UPPER_SPINE = 20
NECK = 2
HEAD = 3
LEFT_UPPER_ARM, LEFT_FOREARM, LEFT_HAND = 5, 6, 7
RIGHT_UPPER_ARM, RIGHT_FOREARM, RIGHT_HAND = 9, 10, 11
LEFT_THIGH, LEFT_SHIN, LEFT_FOOT = 13, 14, 15
RIGHT_THIGH, RIGHT_SHIN, RIGHT_FOOT = 17, 18, 19


def _tree(edges, root):
    """Parent of each joint and a parent-first order, rooted at `root`."""
    neighbours = {v: [] for v in range(NUM_JOINTS)}
    for a, b in edges:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parents = [-1] * NUM_JOINTS
    order = [root]
    for v in order:  # grows while iterating: a breadth-first walk
        for w in sorted(neighbours[v]):
            if w != root and parents[w] == -1:
                parents[w] = v
                order.append(w)
    return tuple(parents), tuple(order)


PARENTS, ORDER = _tree(NTU25.edges, ROOT)

# Bone vector from the parent (tree rooted at ROOT) to each joint, in metres,
# for an adult of about 1.75 m standing with the arms hanging. Left side
# here; the right side is its mirror image (x negated).
_SPINE = {
    LOWER_SPINE: (0.0, 0.26, -0.01),
    UPPER_SPINE: (0.0, 0.24, 0.0),
    NECK: (0.0, 0.07, 0.0),
    HEAD: (0.0, 0.13, -0.02),
}
_LEFT_SIDE = {
    4: (-0.17, -0.04, 0.0),  # shoulder, from the spine shoulder
    LEFT_UPPER_ARM: (-0.03, -0.27, 0.0),  # elbow
    LEFT_FOREARM: (0.0, -0.25, -0.02),  # wrist
    LEFT_HAND: (0.0, -0.07, -0.01),  # hand
    22: (0.02, -0.03, -0.03),  # thumb, from the hand
    21: (-0.02, -0.05, 0.025),  # hand tip, from the thumb (NTU's tree)
    12: (-0.08, -0.03, 0.0),  # hip, from the spine base
    LEFT_THIGH: (0.0, -0.42, -0.01),  # knee
    LEFT_SHIN: (0.0, -0.40, 0.02),  # ankle
    LEFT_FOOT: (0.0, -0.05, -0.12),  # foot
}


def _rest_offsets():
    offsets = np.zeros((NUM_JOINTS, 3))
    for joint, vec in _SPINE.items():
        offsets[joint] = vec
    for joint, (x, y, z) in _LEFT_SIDE.items():
        offsets[joint] = (x, y, z)
        offsets[NTU25.flip_permutation[joint]] = (-x, y, z)
    return offsets


REST_OFFSETS = _rest_offsets()
REST_OFFSETS.setflags(write=False)


def rotation_matrices(angles):
    """Rotation matrices `R_y(ry) @ R_z(rz) @ R_x(rx)` for Euler angles.

    Args:
        angles: array `(..., 3)` of (rx, ry, rz) in radians.

    Returns:
        float64 array `(..., 3, 3)`, acting on column vectors.
    """
    angles = np.asarray(angles, dtype=np.float64)
    cx, cy, cz = np.moveaxis(np.cos(angles), -1, 0)
    sx, sy, sz = np.moveaxis(np.sin(angles), -1, 0)
    out = np.empty(angles.shape + (3,))
    # The product R_y R_z R_x written out, one entry at a time.
    out[..., 0, 0] = cy * cz
    out[..., 0, 1] = sy * sx - cy * sz * cx
    out[..., 0, 2] = cy * sz * sx + sy * cx
    out[..., 1, 0] = sz
    out[..., 1, 1] = cz * cx
    out[..., 1, 2] = -cz * sx
    out[..., 2, 0] = -sy * cz
    out[..., 2, 1] = sy * sz * cx + cy * sx
    out[..., 2, 2] = cy * cx - sy * sz * sx
    return out


def _compose(a, b):
    # Written out: much faster than np.matmul on stacks of 3x3 matrices.
    out = a[..., :, 0, None] * b[..., None, 0, :]
    out += a[..., :, 1, None] * b[..., None, 1, :]
    out += a[..., :, 2, None] * b[..., None, 2, :]
    return out


def _apply(a, vector):
    out = a[..., :, 0] * vector[..., 0, None]
    out += a[..., :, 1] * vector[..., 1, None]
    out += a[..., :, 2] * vector[..., 2, None]
    return out


def forward_kinematics(offsets, angles):
    """Joint positions of posed bodies, with the root joint at the origin.

    Args:
        offsets: array `(..., V, 3)`, bone vectors from each joint's parent
            (row `ROOT` is ignored), e.g. `REST_OFFSETS` scaled per body.
        angles: array `(..., V, 3)` of per-joint rotations in radians (see
            the module docstring); broadcast against `offsets`.

    Returns:
        float64 array `(..., V, 3)` of joint positions.
    """
    offsets = np.asarray(offsets, dtype=np.float64)
    angles = np.asarray(angles, dtype=np.float64)
    lead = np.broadcast_shapes(offsets.shape[:-2], angles.shape[:-2])
    # Joints that never turn pass their parent's frame on unchanged.
    still = tuple(range(angles.ndim - 2)) + (angles.ndim - 1,)
    turns = np.any(angles != 0.0, axis=still)
    local = rotation_matrices(angles[..., np.flatnonzero(turns), :])
    local_index = np.cumsum(turns) - 1
    world = [None] * NUM_JOINTS
    position = [None] * NUM_JOINTS
    identity = np.broadcast_to(np.eye(3), lead + (3, 3))
    root_turns = turns[ROOT]
    world[ROOT] = local[..., 0, :, :] if root_turns else identity
    position[ROOT] = np.zeros(lead + (3,))
    for joint in ORDER[1:]:
        parent = PARENTS[joint]
        world[joint] = world[parent]
        if turns[joint]:
            rotation = local[..., local_index[joint], :, :]
            world[joint] = _compose(world[parent], rotation)
        bone = _apply(world[joint], offsets[..., joint, :])
        position[joint] = position[parent] + bone
    return np.stack(position, axis=-2)
