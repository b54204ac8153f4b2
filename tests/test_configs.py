"""Every flag file in configs/ parses and validates."""

import dataclasses
import pathlib

import pytest

from kskel.flag_config import config_from_flagfile
from kskel.flag_config import to_flagfile
from kskel.pretraining import PretrainConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRETRAIN_CONFIGS = sorted(
    p
    for p in (ROOT / "configs").glob("*.cfg")
    if p.stem.split("_")[0] in ("skeletonclr", "aimclr", "actclr")
)


def _parse(path):
    return config_from_flagfile(PretrainConfig, path)


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=lambda p: p.name)
def test_pretrain_config_validates(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # Nested --flagfile paths are repo-relative.
    config = _parse(path)
    assert config.method == path.stem.split("_")[0]
    # init_from names the output of another run; everything else must hold.
    dataclasses.replace(config, init_from="").validate()


def test_paper_settings():
    by_name = {p.stem: p for p in PRETRAIN_CONFIGS}
    assert {"skeletonclr", "aimclr", "actclr"} <= by_name.keys()
    assert {"skeletonclr_demo", "aimclr_demo", "actclr_demo"} <= by_name.keys()


def test_flagfile_round_trip(tmp_path):
    config = PretrainConfig(
        method="aimclr", data_dir="d", model_dir="m", lr_milestones=(10, 20)
    )
    path = tmp_path / "x.cfg"
    path.write_text(to_flagfile(config))
    assert _parse(path) == config
