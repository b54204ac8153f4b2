"""Contrastive pretraining of SkeletonCLR, AimCLR or ActCLR.

Usage:
    python -m kskel.pretrain --flagfile=configs/actclr.cfg \\
        [--data_dir=DIR] [--model_dir=DIR] [--epochs=N] ...

Every flag is a field of `kskel.pretraining.PretrainConfig`; all are
validated before any data is read. The run writes `MODEL_DIR/config.json`,
a checkpoint per epoch (`MODEL_DIR/checkpoints`, resumed automatically),
TensorBoard logs (`MODEL_DIR/logs`) and the final query network
(`MODEL_DIR/query_network.keras`).
"""

from absl import flags

from kskel import cli
from kskel.flag_config import config_from_flags
from kskel.flag_config import define_flags
from kskel.pretraining import PretrainConfig

define_flags(PretrainConfig)


def main(argv):
    del argv
    from kskel.pretraining import run_pretraining

    config = config_from_flags(PretrainConfig, flags.FLAGS).validate()
    result = run_pretraining(config)
    history = result["history"]
    last = {name: values[-1] for name, values in history.items() if values}
    summary = ", ".join(f"{k}={v:.4f}" for k, v in sorted(last.items()))
    print(f"done: {result['epochs']} epochs; last epoch {summary}")
    return 0


if __name__ == "__main__":
    cli.run(main)
