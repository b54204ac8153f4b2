"""The NTU-25 layout and adjacency against FACTS §1 and the checkpoint."""

import numpy as np
import pytest

from kskel import graph
from kskel.errors import KskelError


def test_ntu25_partition_nonzeros_reproduce_official_quirk():
    adjacency = graph.NTU25.adjacency()
    assert adjacency.shape == (3, 25, 25)
    assert adjacency.dtype == np.float32
    assert [int((a != 0).sum()) for a in adjacency] == [25, 40, 8]


def test_ntu25_further_matrix_entries():
    further = graph.NTU25.adjacency()[2]
    rows, cols = np.nonzero(further)
    got = sorted(zip(rows + 1, cols + 1))
    assert got == [
        (2, 1), (3, 4), (5, 6), (9, 10), (21, 2), (21, 3), (21, 5), (21, 9)
    ]  # fmt: skip


def test_ntu25_columns_sum_to_one_and_degrees():
    adjacency = graph.NTU25.adjacency()
    np.testing.assert_allclose(adjacency.sum(axis=(0, 1)), 1.0, rtol=1e-6)
    degrees = {1: 4, 4: 2, 16: 2, 20: 2, 21: 5, 22: 2, 24: 2, 2: 3, 25: 3}
    diagonal = np.diag(adjacency[0])
    for joint, degree in degrees.items():
        assert diagonal[joint - 1] == pytest.approx(1.0 / degree)


def test_ntu25_adjacency_equals_checkpoint_buffer(reference):
    from kskel.torch_checkpoint import load_state_dict

    path = reference / "checkpoints"
    state = load_state_dict(
        path / "actclr_joint_linear_epoch100_acc87.14_model.pt"
    )
    np.testing.assert_allclose(
        state["encoder_q.A"], graph.NTU25.adjacency(), atol=1e-7
    )


def test_ntu25_bone_pairs_match_official_list():
    official = [
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7),
        (9, 21), (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14),
        (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (21, 21), (22, 23),
        (23, 8), (24, 25), (25, 12),
    ]  # fmt: skip
    assert [(a + 1, b + 1) for a, b in graph.NTU25.bone_pairs] == official


def test_flip_permutation_is_an_involution_swapping_sides():
    for layout in (graph.NTU25, graph.OPENPOSE18):
        perm = np.array(layout.flip_permutation)
        np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))
    names = graph.NTU25.joint_names
    for i, j in enumerate(graph.NTU25.flip_permutation):
        if i != j:
            assert (
                names[i].replace("left", "right") == names[j]
                or names[i].replace("right", "left") == names[j]
            )


def test_body_parts_cover_every_joint_once():
    for layout in (graph.NTU25, graph.OPENPOSE18):
        joints = sorted(j for part in layout.body_parts for j in part)
        assert joints == list(range(layout.num_joints))


def test_openpose_layout_adjacency():
    adjacency = graph.get_layout("openpose18").adjacency()
    assert adjacency.shape == (3, 18, 18)
    np.testing.assert_allclose(adjacency.sum(axis=(0, 1)), 1.0, rtol=1e-6)


def test_unknown_layout_is_a_clear_error():
    with pytest.raises(KskelError, match="Unknown joint layout 'kinect'"):
        graph.get_layout("kinect")


def test_registering_a_bad_flip_permutation_fails():
    bad = graph.SkeletonLayout(
        name="bad", num_joints=3, edges=((1, 0), (2, 1)), center=0,
        flip_permutation=(0, 0, 1),
    )  # fmt: skip
    with pytest.raises(ValueError, match="not a permutation"):
        graph.register_layout(bad)
