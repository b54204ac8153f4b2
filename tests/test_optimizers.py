"""TorchSGD follows torch.optim.SGD (momentum, coupled L2, Nesterov)."""

import keras
import numpy as np
import pytest

from kskel.optimizers import TorchSGD


def torch_sgd_reference(theta, grads, lrs, momentum, l2, nesterov):
    """The update rule of torch.optim.SGD (dampening 0), in numpy."""
    theta = theta.copy()
    buf = None
    for g, lr in zip(grads, lrs):
        g = g + l2 * theta
        buf = g.copy() if buf is None else momentum * buf + g
        step = g + momentum * buf if nesterov else buf
        theta = theta - lr * step
    return theta


@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_torch_rule_across_a_learning_rate_drop(nesterov, rng):
    theta0 = rng.normal(size=(4, 3)).astype("float32")
    grads = [rng.normal(size=(4, 3)).astype("float32") for _ in range(6)]
    lrs = [0.4, 0.4, 0.4, 0.04, 0.04, 0.04]  # A step decay after 3 steps.
    variable = keras.Variable(theta0)
    optimizer = TorchSGD(
        # Steps 0, 1, 2 use 0.4 (boundary inclusive), then 0.04.
        learning_rate=keras.optimizers.schedules.PiecewiseConstantDecay(
            [2], [0.4, 0.04]
        ),
        momentum=0.9,
        nesterov=nesterov,
        l2=1e-2,
    )
    for g in grads:
        optimizer.apply_gradients([(keras.ops.convert_to_tensor(g), variable)])
    expected = torch_sgd_reference(theta0, grads, lrs, 0.9, 1e-2, nesterov)
    np.testing.assert_allclose(
        np.asarray(variable), expected, rtol=1e-5, atol=1e-6
    )


def test_differs_from_keras_sgd_after_a_decay(rng):
    """Keras' buffer holds -lr * buf, so it lags a learning-rate drop."""
    theta0 = rng.normal(size=(5,)).astype("float32")
    grads = [rng.normal(size=(5,)).astype("float32") for _ in range(4)]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [2], [0.5, 0.05]
    )
    ours, keras_var = keras.Variable(theta0), keras.Variable(theta0)
    torch_like = TorchSGD(schedule, momentum=0.9, l2=0.0)
    keras_sgd = keras.optimizers.SGD(schedule, momentum=0.9)
    for g in grads:
        g = keras.ops.convert_to_tensor(g)
        torch_like.apply_gradients([(g, ours)])
        keras_sgd.apply_gradients([(g, keras_var)])
    assert not np.allclose(np.asarray(ours), np.asarray(keras_var))


def test_config_round_trip_and_validation():
    optimizer = TorchSGD(0.1, momentum=0.9, nesterov=True, l2=1e-4)
    clone = TorchSGD.from_config(optimizer.get_config())
    assert (clone.momentum, clone.nesterov, clone.l2) == (0.9, True, 1e-4)
    with pytest.raises(ValueError, match="momentum"):
        TorchSGD(momentum=1.0)
    with pytest.raises(ValueError, match="l2"):
        TorchSGD(l2=-1.0)
