"""Offline converters that turn skeleton sources into kskel TFRecord datasets.

Each tool runs once, before training, as `python -m data_prep.<tool>`.
"""
