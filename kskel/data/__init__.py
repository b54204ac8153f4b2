"""Skeleton datasets: the TFRecord format and the `tf.data` input pipeline.

- `kskel.data.schema`: one `tf.train.Example` per sample, sharded TFRecord
  files and the JSON manifest that describes them (`write_dataset`,
  `load_manifest`, `parse_example`).
- `kskel.data.pipeline`: `load_split`, `make_dataset` and
  `distributed_dataset`, graph-only `tf.data` pipelines built from a manifest.
"""
