"""Skeleton joint layouts and the ST-GCN 'spatial' partition adjacency.

A layout is defined once here; bones, the left/right flip permutation, body
parts and the adjacency are all derived from it, so the encoder, the streams
and the augmentations never repeat the topology.

The adjacency reproduces the official ST-GCN `net/utils/graph.py` exactly,
including its quirk: hop distances are computed only up to `max_hop`, so
joints that are not within `max_hop` of the center have an infinite distance
and `inf == inf` pairs land in the "root + close" matrix. For NTU-25 this gives
25 / 40 / 8 non-zeros in the three matrices instead of 25 / 24 / 24.
"""

import dataclasses

import numpy as np

from kskel.errors import KskelError


@dataclasses.dataclass(frozen=True)
class SkeletonLayout:
    """A joint layout.

    Args:
        name: str, registry name.
        num_joints: int, number of joints V.
        edges: tuple of (child, parent) 0-based joint pairs, one per bone.
        center: int, 0-based index of the center joint.
        flip_permutation: tuple of V ints; after a left/right flip, new joint
            `i` is old joint `flip_permutation[i]`.
        body_parts: tuple of tuples of 0-based joints (used by ActCLR's
            actionlet smoothing and Skeleton Mix).
        joint_names: tuple of V names.
    """

    name: str
    num_joints: int
    edges: tuple
    center: int
    flip_permutation: tuple
    body_parts: tuple = ()
    joint_names: tuple = ()

    @property
    def bone_pairs(self):
        """(joint, parent) pairs for the bone stream, one per joint.

        The center joint is its own parent, so its bone is zero; this is
        the official NTU bone list (FACTS §3.3) when derived from NTU-25.
        """
        parent = {child: par for child, par in self.edges}
        return tuple(
            (v, parent.get(v, self.center)) for v in range(self.num_joints)
        )

    def adjacency(self, max_hop=1):
        """The (3, V, V) float32 'spatial' partition adjacency."""
        return spatial_adjacency(
            self.num_joints, self.edges, self.center, max_hop=max_hop
        )


def _one_based(pairs):
    return tuple((i - 1, j - 1) for i, j in pairs)


_NTU_EDGES = _one_based(
    [
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7),
        (9, 21), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14),
        (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 23), (23, 8),
        (24, 25), (25, 12),
    ]
)  # fmt: skip

_NTU_JOINT_NAMES = (
    "spine_base", "spine_mid", "neck", "head",
    "left_shoulder", "left_elbow", "left_wrist", "left_hand",
    "right_shoulder", "right_elbow", "right_wrist", "right_hand",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
    "spine_shoulder", "left_hand_tip", "left_thumb",
    "right_hand_tip", "right_thumb",
)  # fmt: skip

NTU25 = SkeletonLayout(
    name="ntu25",
    num_joints=25,
    edges=_NTU_EDGES,
    center=20,
    flip_permutation=(
        0,
        1,
        2,
        3,
        8,
        9,
        10,
        11,
        4,
        5,
        6,
        7,
        16,
        17,
        18,
        19,
        12,
        13,
        14,
        15,
        20,
        23,
        24,
        21,
        22,
    ),  # fmt: skip
    # ActCLR's five parts: trunk, the two arms (with hand tips), the legs.
    body_parts=(
        (0, 1, 2, 3, 20),
        (8, 9, 10, 11, 23, 24),
        (4, 5, 6, 7, 21, 22),
        (16, 17, 18, 19),
        (12, 13, 14, 15),
    ),
    joint_names=_NTU_JOINT_NAMES,
)

# OpenPose-18 as used by Kinetics-skeleton in ST-GCN (`layout='openpose'`).
OPENPOSE18 = SkeletonLayout(
    name="openpose18",
    num_joints=18,
    edges=(
        (4, 3),
        (3, 2),
        (7, 6),
        (6, 5),
        (13, 12),
        (12, 11),
        (10, 9),
        (9, 8),
        (11, 5),
        (8, 2),
        (5, 1),
        (2, 1),
        (0, 1),
        (15, 0),
        (14, 0),
        (17, 15),
        (16, 14),
    ),  # fmt: skip
    center=1,
    flip_permutation=(
        0,
        1,
        5,
        6,
        7,
        2,
        3,
        4,
        11,
        12,
        13,
        8,
        9,
        10,
        15,
        14,
        17,
        16,
    ),  # fmt: skip
    body_parts=(
        (0, 1, 14, 15, 16, 17),
        (2, 3, 4),
        (5, 6, 7),
        (8, 9, 10),
        (11, 12, 13),
    ),
    joint_names=(
        "nose",
        "neck",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_eye",
        "left_eye",
        "right_ear",
        "left_ear",
    ),  # fmt: skip
)

_REGISTRY = {}


def register_layout(layout):
    """Adds a layout to the registry so layers can refer to it by name."""
    if layout.name in _REGISTRY and _REGISTRY[layout.name] != layout:
        raise ValueError(
            f"A different layout named {layout.name!r} is already registered."
        )
    perm = sorted(layout.flip_permutation)
    if perm != list(range(layout.num_joints)):
        raise ValueError(
            f"Layout {layout.name!r}: flip_permutation is not a permutation "
            f"of range({layout.num_joints})."
        )
    _REGISTRY[layout.name] = layout
    return layout


def get_layout(name):
    """Returns the registered `SkeletonLayout` called `name`."""
    if isinstance(name, SkeletonLayout):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KskelError(
            f"Unknown joint layout {name!r}; known layouts: "
            f"{', '.join(sorted(_REGISTRY))}."
        ) from None


def layout_names():
    return sorted(_REGISTRY)


register_layout(NTU25)
register_layout(OPENPOSE18)


def hop_distance(num_joints, edges, max_hop=1):
    """Hop distances up to `max_hop`; farther pairs are `inf` (as official)."""
    adj = np.zeros((num_joints, num_joints))
    for i, j in edges:
        adj[j, i] = 1
        adj[i, j] = 1
    hop = np.full((num_joints, num_joints), np.inf)
    reach = [np.linalg.matrix_power(adj, d) > 0 for d in range(max_hop + 1)]
    for d in range(max_hop, -1, -1):
        hop[reach[d]] = d
    return hop


def _normalize_columns(adj):
    degree = adj.sum(axis=0)
    inv = np.where(degree > 0, 1.0 / np.maximum(degree, 1e-12), 0.0)
    return adj * inv[None, :]


def spatial_adjacency(num_joints, edges, center, max_hop=1):
    """ST-GCN's 'spatial' partition: (root, close, further) matrices.

    Entry `[k, v, w]` weighs the message from joint `v` to joint `w`.

    Returns:
        float32 array of shape (1 + 2 * max_hop, V, V).
    """
    self_links = [(i, i) for i in range(num_joints)]
    hop = hop_distance(num_joints, list(edges) + self_links, max_hop)
    normalized = _normalize_columns((hop <= max_hop).astype(np.float64))
    to_center = hop[:, center]
    matrices = []
    for h in range(max_hop + 1):
        at_hop = hop == h
        # Row j, column i; `inf == inf` is True, as in the official code.
        same = to_center[:, None] == to_center[None, :]
        farther = to_center[:, None] > to_center[None, :]
        root = np.where(at_hop & same, normalized, 0.0)
        close = np.where(at_hop & farther & ~same, normalized, 0.0)
        further = np.where(at_hop & ~same & ~farther, normalized, 0.0)
        if h == 0:
            matrices.append(root)
        else:
            matrices.append(root + close)
            matrices.append(further)
    return np.stack(matrices).astype(np.float32)
