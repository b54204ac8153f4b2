"""Train-step speed of one method on the current Keras backend.

Usage:
    KERAS_BACKEND=jax python -m benchmarks.backends [--method=skeletonclr]
        [--batch_size=32] [--base_width=16] [--steps=10]

Times `model.fit` over `--steps` batches of random views from an in-memory
`tf.data` dataset (after two warm-up steps that compile), with the paper's
encoder (256-d output, 50 frames, 2 bodies, dropout 0.5), a 128-d head and
a queue of 32768: a TensorFlow graph, a jitted JAX step or eager PyTorch,
as pretraining runs them. Prints one line: backend, method, samples/s.
"""

import argparse
import json
import time

import numpy as np

VIEWS = {"skeletonclr": 2, "aimclr": 3, "actclr": 4}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="skeletonclr", choices=VIEWS)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--base_width", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from kskel.optimizers import TorchSGD
    from kskel.pretraining import PretrainConfig
    from kskel.pretraining import build_model

    config = PretrainConfig(
        method=args.method,
        base_width=args.base_width,
        queue_size=32768,
        actclr_topk=8192,
    )
    view = (2, 50, 25, 3)
    model = build_model(config, view)
    model.compile(
        optimizer=TorchSGD(0.1),
        jit_compile=keras.backend.backend() == "jax",
    )
    rng = np.random.default_rng(0)
    views = tuple(
        rng.normal(size=(args.batch_size, *view)).astype("float32")
        for _ in range(VIEWS[args.method])
    )
    dataset = tf.data.Dataset.from_tensors(views).repeat()
    model.fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "method": args.method,
                "batch_size": args.batch_size,
                "base_width": args.base_width,
                "steps": args.steps,
                "samples_per_second": round(
                    args.batch_size * args.steps / seconds, 2
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
