"""Input pipeline throughput of each method's view recipe vs its train step.

Usage:
    python -m benchmarks.pipeline [--quick] [--threads 1]

Writes a synthetic TFRecord dataset to a temporary folder, then measures in
one process: samples/s of the `tf.data` pipeline (read, parse, batch,
augment into each method's views) on a private pool of `--threads`
threads without intra-op parallelism (one core by default), and samples/s
of that method's train step (all cores) on such batches. The last line is
one JSON object.
"""

import argparse
import json
import os
import tempfile
import time


def _pipeline_rate(data_dir, method, batch_size, threads, batches):
    import tensorflow as tf

    from kskel.data import pipeline
    from kskel.data.views import get_views_fn

    dataset = pipeline.make_dataset(
        data_dir,
        "train",
        batch_size,
        training=True,
        views_fn=get_views_fn(method),
        repeat=True,
    )
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    dataset = dataset.with_options(options).take(batches + 2)
    iterator = iter(dataset)
    next(iterator), next(iterator)  # Warm up (tracing, first shards).
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def _step_rate(data_dir, method, batch_size, steps, queue_size):
    import keras

    from kskel.data import pipeline
    from kskel.data.views import get_views_fn
    from kskel.optimizers import TorchSGD
    from kskel.pretraining import PretrainConfig
    from kskel.pretraining import build_model

    config = PretrainConfig(
        method=method,
        data_dir=data_dir,
        model_dir="-",
        queue_size=queue_size,
        actclr_anchor="batch_mean",
        actclr_topk=min(8192, queue_size),
    )
    model = build_model(config, (2, 50, 25, 3))
    model.compile(optimizer=TorchSGD(0.1), jit_compile=False)
    batches = list(
        pipeline.make_dataset(
            data_dir,
            "train",
            batch_size,
            training=True,
            views_fn=get_views_fn(method),
            repeat=True,
        ).take(steps + 1)
    )
    model.make_train_function()
    function = model.train_function
    function(iter([batches[0]]))  # Trace once, outside the timing.
    start = time.perf_counter()
    for batch in batches[1:]:
        function(iter([batch]))
    keras.ops.convert_to_numpy(model.queue_ptr)
    return steps * batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", default="skeletonclr,aimclr,actclr")
    args = parser.parse_args()
    from data_prep import synthetic

    batch_size = 32 if args.quick else 128
    results = {"batch_size": batch_size, "threads": args.threads}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "synthetic")
        synthetic.generate_dataset(data_dir, 600 if args.quick else 2000, 0)
        for method in args.methods.split(","):
            views = _pipeline_rate(
                data_dir,
                method,
                batch_size,
                args.threads,
                3 if args.quick else 10,
            )
            step = _step_rate(
                data_dir,
                method,
                batch_size,
                1 if args.quick else 2,
                1024 if args.quick else 32768,
            )
            results[method] = {
                "pipeline_samples_per_s": round(views, 1),
                "train_step_samples_per_s": round(step, 2),
                "ratio": round(views / step, 1),
            }
            print(
                f"{method:12s} pipeline {views:8.1f} samples/s "
                f"({args.threads} thread(s)); train step {step:6.2f} "
                f"samples/s; pipeline / step = {views / step:.1f}x"
            )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
