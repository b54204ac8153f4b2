"""Converts official SkeletonCLR / AimCLR / ActCLR checkpoints to Keras.

The query encoder (`encoder_q.*`, or `encoder.*`, or unprefixed keys) and its
`fc` head become a `SkeletonClassifier`: a linear `fc` (linear-evaluation
checkpoints) gives a classifier, an MLP `fc.0`/`fc.2` (pretraining
checkpoints) a projection head. The key encoder and the queue are reported
as ignored. The architecture (base width, hidden dim, classes) is read from
the tensor shapes. Nothing is written unless every tensor maps.
"""

import dataclasses

import numpy as np

from kskel import graph
from kskel.errors import KskelError

_PREFIXES = ("encoder_q.", "encoder.", "")
_IGNORED_PREFIXES = ("encoder_k.", "queue", "queue_ptr")


@dataclasses.dataclass
class ConversionReport:
    """What the conversion used, ignored and could not match."""

    checkpoint: str
    prefix: str
    loaded: list
    ignored: list
    head: str
    num_outputs: int

    def summary(self):
        ignored = sorted({name.split(".")[0] for name in self.ignored})
        return (
            f"{self.checkpoint}: loaded {len(self.loaded)} tensors "
            f"(prefix {self.prefix!r}, head {self.head} -> "
            f"{self.num_outputs}); ignored {len(self.ignored)}"
            + (f" ({', '.join(ignored)})" if ignored else "")
        )


def _bn(state, key):
    return {
        "gamma": state[f"{key}.weight"],
        "beta": state[f"{key}.bias"],
        "moving_mean": state[f"{key}.running_mean"],
        "moving_variance": state[f"{key}.running_var"],
    }


def _conv(weight):
    # (O, I, kT, 1) -> (kT, 1, I, O).
    return np.transpose(weight, (2, 3, 1, 0))


def _dense(weight):
    # (O, I) or (O, I, 1, 1) -> (I, O).
    return weight.reshape(weight.shape[0], -1).T


def _split_prefix(state, path):
    for prefix in _PREFIXES:
        if f"{prefix}data_bn.weight" in state:
            return prefix
    raise KskelError(
        f"{path}: no ST-GCN encoder found (no 'encoder_q.data_bn.weight' "
        "or 'data_bn.weight'); is this a SkeletonCLR/AimCLR/ActCLR "
        "checkpoint?"
    )


def _expected_tensors(own, num_blocks):
    """Names of the encoder tensors the model uses (without the prefix)."""
    names = {f"data_bn.{k}" for k in _BN_KEYS}
    for i in range(num_blocks):
        block = f"st_gcn_networks.{i}"
        names.add(f"edge_importance.{i}")
        names.update(f"{block}.{k}" for k in _CONV_KEYS)
        bns = ["tcn.0", "tcn.3"]
        if f"{block}.residual.0.weight" in own:
            names.update(f"{block}.residual.0.{k}" for k in ("weight", "bias"))
            bns.append("residual.1")
        names.update(f"{block}.{bn}.{k}" for bn in bns for k in _BN_KEYS)
    return names


_BN_KEYS = ("weight", "bias", "running_mean", "running_var")
_CONV_KEYS = (
    "gcn.conv.weight",
    "gcn.conv.bias",
    "tcn.2.weight",
    "tcn.2.bias",
)


def build_model_from_state(state, path="checkpoint", layout="ntu25"):
    """Builds a `SkeletonClassifier` holding the checkpoint's weights.

    Args:
        state: `{name: np.ndarray}` from `load_state_dict`.
        path: str, used in error messages.
        layout: str, skeleton layout of the checkpoint.

    Returns:
        `(model, ConversionReport)`.

    Raises:
        KskelError: missing, unexpected or mis-shaped tensors.
    """
    from kskel.encoders import SkeletonClassifier
    from kskel.encoders import STGCNEncoder
    from kskel.encoders import linear_head
    from kskel.layers import ProjectionHead

    prefix = _split_prefix(state, path)
    own = {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)
    }
    ignored = sorted(k for k in state if not k.startswith(prefix))
    num_blocks = 1 + max(
        (int(k.split(".")[1]) for k in own if k.startswith("st_gcn_networks.")),
        default=-1,
    )
    if num_blocks != 10:
        raise KskelError(
            f"{path}: found {num_blocks} ST-GCN blocks under prefix "
            f"{prefix!r}; the encoder has 10."
        )
    layout_obj = graph.get_layout(layout)
    kernels = layout_obj.adjacency().shape[0]
    base_width = own["st_gcn_networks.0.gcn.conv.weight"].shape[0] // kernels
    hidden_dim = own["st_gcn_networks.9.tcn.2.weight"].shape[0]
    in_channels = own["st_gcn_networks.0.gcn.conv.weight"].shape[1]

    if "fc.weight" in own:
        head_kind, num_outputs = "linear", own["fc.weight"].shape[0]
        head = linear_head(num_outputs)
        head_tensors = ["fc.weight", "fc.bias"]
    elif "fc.0.weight" in own and "fc.2.weight" in own:
        head_kind, num_outputs = "mlp", own["fc.2.weight"].shape[0]
        head = ProjectionHead(own["fc.0.weight"].shape[0], num_outputs)
        head_tensors = ["fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias"]
    else:
        raise KskelError(
            f"{path}: no head found (expected '{prefix}fc.weight' or "
            f"'{prefix}fc.0.weight' and '{prefix}fc.2.weight')."
        )

    expected = _expected_tensors(own, num_blocks)
    expected.update(head_tensors)
    skippable = {
        k for k in own if k == "A" or k.endswith("num_batches_tracked")
    }
    missing = sorted(expected - own.keys())
    unexpected = sorted(own.keys() - expected - skippable)
    if missing or unexpected:
        raise KskelError(
            f"{path}: checkpoint does not match the ST-GCN encoder: "
            f"missing {[prefix + k for k in missing]}, "
            f"unexpected {[prefix + k for k in unexpected]}."
        )
    if "A" in own and not np.allclose(
        own["A"], layout_obj.adjacency(), atol=1e-6
    ):
        raise KskelError(
            f"{path}: the checkpoint's graph buffer '{prefix}A' differs from "
            f"the {layout_obj.name!r} layout's adjacency."
        )

    encoder = STGCNEncoder(
        layout=layout_obj.name,
        in_channels=in_channels,
        base_width=base_width,
        hidden_dim=hidden_dim,
    )
    model = SkeletonClassifier(encoder, head)
    frames = 50
    model.build((None, 2, frames, layout_obj.num_joints, in_channels))
    _assign_encoder(encoder, own, path, prefix)
    _assign_head(head, head_kind, own, path, prefix)
    report = ConversionReport(
        checkpoint=path,
        prefix=prefix,
        loaded=sorted(expected),
        ignored=ignored,
        head=head_kind,
        num_outputs=int(num_outputs),
    )
    return model, report


def _set(variable, value, name, path):
    value = np.asarray(value, dtype=np.float32)
    if tuple(variable.shape) != value.shape:
        raise KskelError(
            f"{path}: tensor {name} has shape {value.shape} after layout "
            f"conversion, the model expects {tuple(variable.shape)}."
        )
    variable.assign(value)


def _set_bn(layer, state, key, path, prefix):
    for attr, value in _bn(state, key).items():
        _set(getattr(layer, attr), value, prefix + key, path)


def _assign_encoder(encoder, own, path, prefix):
    _set_bn(encoder.data_bn, own, "data_bn", path, prefix)
    for i, block in enumerate(encoder.blocks):
        key = f"st_gcn_networks.{i}"
        _set(
            block.gcn.kernel,
            _dense(own[f"{key}.gcn.conv.weight"]),
            f"{prefix}{key}.gcn.conv.weight",
            path,
        )
        _set(
            block.gcn.bias,
            own[f"{key}.gcn.conv.bias"],
            f"{prefix}{key}.gcn.conv.bias",
            path,
        )
        _set(
            block.gcn.importance,
            own[f"edge_importance.{i}"],
            f"{prefix}edge_importance.{i}",
            path,
        )
        _set_bn(block.tcn_bn1, own, f"{key}.tcn.0", path, prefix)
        _set(
            block.tcn_conv.kernel,
            _conv(own[f"{key}.tcn.2.weight"]),
            f"{prefix}{key}.tcn.2.weight",
            path,
        )
        _set(
            block.tcn_conv.bias,
            own[f"{key}.tcn.2.bias"],
            f"{prefix}{key}.tcn.2.bias",
            path,
        )
        _set_bn(block.tcn_bn2, own, f"{key}.tcn.3", path, prefix)
        has_residual = f"{key}.residual.0.weight" in own
        if has_residual != (block.residual_conv is not None):
            raise KskelError(
                f"{path}: block {i} residual convolution "
                f"{'present' if has_residual else 'absent'} in the "
                "checkpoint but not in the encoder."
            )
        if has_residual:
            _set(
                block.residual_conv.kernel,
                _conv(own[f"{key}.residual.0.weight"]),
                f"{prefix}{key}.residual.0.weight",
                path,
            )
            _set(
                block.residual_conv.bias,
                own[f"{key}.residual.0.bias"],
                f"{prefix}{key}.residual.0.bias",
                path,
            )
            _set_bn(block.residual_bn, own, f"{key}.residual.1", path, prefix)


def _assign_head(head, kind, own, path, prefix):
    if kind == "linear":
        _set(head.kernel, _dense(own["fc.weight"]), prefix + "fc.weight", path)
        _set(head.bias, own["fc.bias"], prefix + "fc.bias", path)
        return
    for dense, key in ((head.hidden, "fc.0"), (head.output_layer, "fc.2")):
        _set(
            dense.kernel,
            _dense(own[f"{key}.weight"]),
            f"{prefix}{key}.weight",
            path,
        )
        _set(dense.bias, own[f"{key}.bias"], f"{prefix}{key}.bias", path)


def convert_checkpoint(checkpoint, layout="ntu25"):
    """Loads an official checkpoint into a `SkeletonClassifier`.

    Returns:
        `(model, ConversionReport)`.
    """
    from kskel import fileio
    from kskel.torch_checkpoint import load_state_dict

    # The zip reader takes local files; a remote checkpoint is copied.
    with fileio.local_copy(checkpoint) as local:
        try:
            state = load_state_dict(local)
        except KskelError as err:  # Name the checkpoint, not the copy.
            raise KskelError(str(err).replace(local, str(checkpoint))) from None
    return build_model_from_state(state, path=str(checkpoint), layout=layout)
