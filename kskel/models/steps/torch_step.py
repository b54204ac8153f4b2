"""The MoCo training step on the PyTorch backend (`loss.backward()`)."""

import torch

from kskel.models.steps import unpack_views
from kskel.models.steps import update_trackers


def train_step(model, data):
    """One eager step: backward pass, then the state updates without grad.

    The key network gets no gradient (its outputs are detached) and the
    momentum update, the optimizer and the queue write run under
    `torch.no_grad()`, so none of them is recorded by autograd.

    oneDNN convolutions are off during the step: in PyTorch 2.13 on CPU
    their weight gradient of a strided 1x1 convolution over a permuted
    (channels-last) input with few channels is wrong, which is what
    Keras' `conv` passes for the ST-GCN residual convolutions (e.g. 4 -> 8
    channels, stride 2: an error of the gradient's own size).
    """
    with torch.backends.mkldnn.flags(enabled=False):
        return _step(model, data)


def _step(model, data):
    views = unpack_views(data)
    with torch.no_grad():
        model.momentum_update()
    model.zero_grad()
    loss, metrics, keys = model.contrastive_loss(views)
    model.optimizer.scale_loss(loss).backward()
    variables = model.query.trainable_variables
    gradients = [v.value.grad for v in variables]
    with torch.no_grad():
        model.optimizer.apply(gradients, variables)
        model.enqueue(keys)
    metrics = {name: value.detach() for name, value in metrics.items()}
    return update_trackers(model, loss.detach(), metrics)
