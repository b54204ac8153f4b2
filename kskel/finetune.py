"""Fine-tuning, semi-supervised and transfer evaluation.

Usage:
    python -m kskel.finetune --flagfile=configs/finetune.cfg \\
        --pretrained=work_dir/actclr_ntu60_xsub_joint \\
        [--label_fraction=0.1] [--bn_mode=train|frozen] [--stream=bone] ...

Every flag is a field of `kskel.evaluation.finetune.FinetuneConfig`; all
are validated before any data is read. The run writes to `--model_dir`:
`results.json` / `results.md` (protocol "finetune", "semi_<p>%" or
"transfer"; final and best test top-1), `test_logits.npy`,
`test_labels.npy` (for `python -m kskel.fuse`) and `classifier.keras`
(for `python -m kskel.predict`).
"""

from absl import flags

from kskel import cli
from kskel.evaluation.finetune import FinetuneConfig
from kskel.flag_config import config_from_flags
from kskel.flag_config import define_flags

define_flags(FinetuneConfig)


def main(argv):
    del argv
    from kskel.evaluation.finetune import run_finetune

    config = config_from_flags(FinetuneConfig, flags.FLAGS).validate()
    results = run_finetune(config)
    print(
        f"done: {results['protocol']} top-1 {results['top1']:.4f} "
        f"(best {results['best_top1']:.4f} at epoch "
        f"{results['best_epoch']}), top-5 {results['top5']:.4f} on "
        f"{results['num_samples']} samples; wrote {config.model_dir}"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
