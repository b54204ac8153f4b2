"""Analytic floating-point operation counts of the ST-GCN encoder.

One multiply-add counts as 2 operations. Only the matrix products are
counted (1x1 and temporal convolutions, the joint mixing of the graph
convolution, the residual convolutions); batch norm, ReLU, dropout and
pooling are memory-bound and left out, so the achieved GFLOP/s figures
are conservative. The joint mixing is counted on the narrower of the input
and output channels, as `kskel.layers.GraphConv` computes it (the official
code mixes the 3x wider output, about 4% more work in total).
"""

from kskel.encoders import block_specs

TEMPORAL_KERNEL = 9

# Encoder passes per sample in each method's train step: forward only
# (key network, actionlet masks) and forward + backward (query views).
PASSES = {
    # Query fwd+bwd on im_q, key fwd on im_k.
    "skeletonclr": {"forward": 1, "forward_backward": 1},
    # Query fwd+bwd on im_q and on im_q_extreme (EADM reuses the
    # extreme view's feature map), key fwd on im_k.
    "aimclr": {"forward": 1, "forward_backward": 2},
    # Key fwd on im_k, query fwd for the actionlets of im_q and im_p, query
    # fwd+bwd on the three mixed views (the one-sample anchor is ignored).
    "actclr": {"forward": 3, "forward_backward": 3},
}


def block_flops(
    in_channels, filters, stride, residual, frames, joints, partitions=3
):
    """Forward FLOPs of one ST-GCN block on one sequence (one body)."""
    out_frames = (frames - 1) // stride + 1
    mixing = frames * joints * joints * partitions * min(in_channels, filters)
    pointwise = frames * joints * partitions * in_channels * filters
    temporal = out_frames * joints * TEMPORAL_KERNEL * filters * filters
    shortcut = 0
    if residual and (in_channels != filters or stride != 1):
        shortcut = out_frames * joints * in_channels * filters
    return 2 * (mixing + pointwise + temporal + shortcut)


def encoder_flops(
    base_width=16, hidden_dim=256, frames=50, joints=25, bodies=2, in_channels=3
):
    """Forward FLOPs of the encoder on one sample of `bodies` bodies."""
    total = 0
    channels = in_channels
    for filters, stride, residual in block_specs(base_width, hidden_dim):
        total += block_flops(
            channels, filters, stride, residual, frames, joints
        )
        frames = (frames - 1) // stride + 1
        channels = filters
    return bodies * total


def step_flops(method, forward_flops):
    """Train-step FLOPs per sample; a backward pass costs 2 forwards."""
    passes = PASSES[method]
    return forward_flops * (passes["forward"] + 3 * passes["forward_backward"])
