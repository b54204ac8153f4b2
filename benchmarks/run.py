"""Training speed against this machine's float32 peak, in one process.

Usage:
    python -m benchmarks.run [--quick] [--methods=skeletonclr,aimclr,actclr]
        [--xla] [--precision=float32|mixed_bfloat16|mixed_float16]

Measures, in this order:

1. the float32 peak: the best GFLOP/s of a large NumPy matmul and a large
   `tf.linalg.matmul`;
2. the ST-GCN encoder (the paper configuration: base width 16, 256-d
   output, 50 frames, 2 bodies, dropout 0.5, training mode) forward and
   forward + backward at batch 128, with `--xla` also under `jit_compile`;
3. each method's full train step (`model.train_function`: views from the
   `tf.data` pipeline, momentum update, queue, optimizer) at batch 128 with
   its paper flag file's queue size, views and temperatures;
4. each method's input pipeline (read, parse, augment into its views) on
   one thread.

For each it prints samples/s, the analytic FLOPs per sample
(`benchmarks.flops`), the achieved GFLOP/s and its fraction of the peak,
and the process's peak resident memory so far. The last line is one JSON
object with every figure. `--quick` uses batch 32 and one timed repeat
(a smoke test, not a measurement). `--precision` builds every network
under that Keras dtype policy, as `kskel.pretrain --precision` does; the
fractions stay those of the float32 peak.
"""

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

import numpy as np

from benchmarks import flops
from kskel.pretraining import PRECISIONS

METHODS = ("skeletonclr", "aimclr", "actclr")


def peak_memory_mb():
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(function, repeats):
    """Median wall seconds of `repeats` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_peak(size):
    """`{numpy, tensorflow, peak}` GFLOP/s of a size x size matmul."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    work = 2 * size**3 / 1e9
    numpy_rate = work / timed(lambda: a @ b, 3)
    ta, tb = tf.constant(a), tf.constant(b)
    tf_rate = work / timed(lambda: tf.linalg.matmul(ta, tb).numpy(), 3)
    return {
        "numpy_gflops": round(numpy_rate, 1),
        "tensorflow_gflops": round(tf_rate, 1),
        "peak_gflops": round(max(numpy_rate, tf_rate), 1),
    }


def rate_figures(samples, seconds, flops_per_sample, peak):
    achieved = samples * flops_per_sample / seconds / 1e9
    return {
        "samples_per_s": round(samples / seconds, 2),
        "gflop_per_sample": round(flops_per_sample / 1e9, 3),
        "gflops": round(achieved, 1),
        "fraction_of_peak": round(achieved / peak, 3),
        "peak_memory_mb": round(peak_memory_mb()),
    }


def measure_encoder(batch_size, repeats, peak, jit_compile):
    """Encoder forward and forward + backward figures."""
    import tensorflow as tf

    from kskel.encoders import STGCNEncoder

    encoder = STGCNEncoder(dropout=0.5)
    x = tf.random.normal((batch_size, 2, 50, 25, 3), seed=0)
    encoder(x[:1])
    variables = encoder.trainable_variables

    @tf.function(jit_compile=jit_compile)
    def forward(x):
        return encoder(x, training=True)

    @tf.function(jit_compile=jit_compile)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(encoder(x, training=True)))
        return tape.gradient(loss, variables)

    def run(function):
        return lambda: [t.numpy() for t in tf.nest.flatten(function(x))]

    per_sample = flops.encoder_flops()
    results = {}
    for name, function, factor in (
        ("forward", forward, 1),
        ("forward_backward", forward_backward, 3),
    ):
        seconds = timed(run(function), repeats)
        results[name] = rate_figures(
            batch_size, seconds, factor * per_sample, peak
        )
    return results


def _method_config(method, data_dir, batch_size):
    from kskel.flag_config import config_from_flagfile
    from kskel.pretraining import PretrainConfig

    return config_from_flagfile(
        PretrainConfig,
        os.path.join("configs", f"{method}.cfg"),
        data_dir=data_dir,
        model_dir="-",
        batch_size=batch_size,
        init_from="",
    )


def measure_step(method, data_dir, batch_size, repeats, peak, precision):
    """One method's full train step: samples/s and fraction of peak."""
    import keras

    from kskel.data import pipeline
    from kskel.optimizers import TorchSGD
    from kskel.pretraining import build_model
    from kskel.pretraining import scaled_for_precision
    from kskel.pretraining import views_for_epoch

    config = _method_config(method, data_dir, batch_size)
    views_fn = views_for_epoch(config, 1, "ntu25")
    batches = list(
        pipeline.make_dataset(
            data_dir,
            "train",
            batch_size,
            training=True,
            views_fn=views_fn,
            repeat=True,
        ).take(repeats + 1)
    )
    model = build_model(config, (2, 50, 25, 3))
    if method == "actclr" and config.actclr_anchor == "dataset_mean":
        model.set_average_motion(np.mean(batches[0][0][-1].numpy(), axis=0))
    model.compile(
        optimizer=scaled_for_precision(TorchSGD(0.1), precision),
        jit_compile=config.jit_compile,
    )
    traces = []
    train_step = model.train_step

    def counted_train_step(data):  # Runs in Python once per trace.
        traces.append(1)
        return train_step(data)

    model.train_step = counted_train_step
    model.make_train_function()
    function = model.train_function
    function(iter([batches[0]]))  # Traced once, outside the timing.
    times = []
    for batch in batches[1:]:
        start = time.perf_counter()
        function(iter([batch]))
        keras.ops.convert_to_numpy(model.queue_ptr)
        times.append(time.perf_counter() - start)
    per_sample = flops.step_flops(method, flops.encoder_flops())
    figures = rate_figures(
        batch_size, statistics.median(times), per_sample, peak
    )
    figures["queue_size"] = config.queue_size
    figures["traces"] = len(traces)
    return figures


def measure_pipeline(method, data_dir, batch_size, batches):
    """The method's view recipe on one thread, samples/s."""
    from benchmarks.pipeline import _pipeline_rate

    return round(_pipeline_rate(data_dir, method, batch_size, 1, batches), 1)


def _print(name, figures):
    print(
        f"{name:28s} {figures['samples_per_s']:8.2f} samples/s  "
        f"{figures['gflop_per_sample']:6.2f} GFLOP/sample  "
        f"{figures['gflops']:6.1f} GFLOP/s  "
        f"{100 * figures['fraction_of_peak']:5.1f} % of peak  "
        f"peak memory {figures['peak_memory_mb']} MB"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument(
        "--xla", action="store_true", help="Also time the encoder with XLA."
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=PRECISIONS,
        help="Keras dtype policy of every network.",
    )
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; use {METHODS}.")
    # kskel sets the TensorFlow options, so it is imported before TensorFlow.
    import kskel  # noqa: F401, I001
    import keras
    import tensorflow as tf

    from data_prep import synthetic

    keras.mixed_precision.set_global_policy(args.precision)

    batch_size = 32 if args.quick else 128
    repeats = 1 if args.quick else 3
    results = {
        "batch_size": batch_size,
        "tensorflow": tf.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "cpu_count": os.cpu_count(),
        "precision": args.precision,
    }
    results.update(measure_peak(2048 if args.quick else 4096))
    peak = results["peak_gflops"]
    print(
        f"float32 peak: NumPy {results['numpy_gflops']} GFLOP/s, "
        f"tf.linalg.matmul {results['tensorflow_gflops']} GFLOP/s"
    )
    for jit in (False, True) if args.xla else (False,):
        suffix = "_xla" if jit else ""
        encoder = measure_encoder(batch_size, repeats, peak, jit)
        for name, figures in encoder.items():
            results[f"encoder_{name}{suffix}"] = figures
            _print(f"encoder {name}{suffix}", figures)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "synthetic")
        synthetic.generate_dataset(data_dir, 600 if args.quick else 2000, 0)
        for method in methods:
            figures = measure_step(
                method, data_dir, batch_size, repeats, peak, args.precision
            )
            figures["pipeline_samples_per_s"] = measure_pipeline(
                method, data_dir, batch_size, 3 if args.quick else 10
            )
            results[f"{method}_train_step"] = figures
            _print(f"{method} train step", figures)
            print(
                f"{method:28s} input pipeline (1 thread) "
                f"{figures['pipeline_samples_per_s']} samples/s; "
                f"queue {figures['queue_size']}; "
                f"traced {figures['traces']}x"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
