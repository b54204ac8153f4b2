"""PyTorch-semantics SGD, as the official repositories train with it."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kskel")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD with momentum and coupled L2 weight decay, as `torch.optim.SGD`.

    Per variable: `g <- g + l2 * theta`; `buf <- momentum * buf + g` (`buf
    = g` on the first step); `theta <- theta - lr * buf`, or with Nesterov
    `theta <- theta - lr * (g + momentum * buf)`. The buffer is free of the
    learning rate, so a step decay of the learning rate acts at once, unlike
    Keras' `SGD`, whose momentum stores `-lr * buf`; and the decay is coupled
    (it passes through the momentum), unlike Keras' decoupled
    `weight_decay`. The official code decays every trainable variable,
    batch-norm scales and biases included.

    Args:
        learning_rate: float, schedule or callable. Defaults to 0.1.
        momentum: float in [0, 1). Defaults to 0.9.
        nesterov: bool. Defaults to `False`.
        l2: float, coupled L2 coefficient (PyTorch's `weight_decay`).
            Defaults to 1e-4.
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        nesterov=False,
        l2=1e-4,
        name="torch_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"`momentum` must be in [0, 1). Received: momentum={momentum}"
            )
        if l2 < 0:
            raise ValueError(f"`l2` must be >= 0. Received: l2={l2}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.l2 = float(l2)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentum_buffers = [
            self.add_variable_from_reference(v, name="momentum")
            for v in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.l2:
            g = g + self.l2 * variable
        if not self.momentum:
            self.assign_sub(variable, lr * g)
            return
        buf = self.momentum_buffers[self._get_variable_index(variable)]
        first = ops.cast(ops.equal(self.iterations, 0), variable.dtype)
        # buf = g on the first step, as torch initialises it.
        new_buf = first * g + (1.0 - first) * (self.momentum * buf + g)
        self.assign(buf, new_buf)
        step = g + self.momentum * new_buf if self.nesterov else new_buf
        self.assign_sub(variable, lr * step)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "nesterov": self.nesterov,
                "l2": self.l2,
            }
        )
        return config
