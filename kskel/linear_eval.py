"""Linear evaluation of a pretrained (or random) encoder.

Usage:
    python -m kskel.linear_eval --flagfile=configs/linear_eval.cfg \\
        [--pretrained=DIR_OR_KERAS] [--data_dir=DIR] [--model_dir=OUT] ...
    python -m kskel.linear_eval --pretrained=actclr.keras --epochs=0 \\
        --data_dir=data/ntu60_xview --model_dir=OUT

Trains a linear classifier on the frozen encoder in eval mode, as the
official linear evaluation does (`configs/linear_eval.cfg`: Levigty/AimCLR
settings; `configs/linear_eval_actclr.cfg`: the ActCLR repository's).
`--epochs=0` evaluates the head of a classifier checkpoint (e.g. a
converted official one) instead. Every flag is a field of
`kskel.evaluation.linear.LinearEvalConfig`. Writes `OUT/results.json`,
`OUT/results.md`, `OUT/test_logits.npy`, `OUT/test_labels.npy` and, after
training, `OUT/classifier.keras` for `python -m kskel.predict`.
"""

from absl import flags

from kskel import cli
from kskel.evaluation.linear import LinearEvalConfig
from kskel.flag_config import config_from_flags
from kskel.flag_config import define_flags

define_flags(LinearEvalConfig)


def main(argv):
    del argv
    from kskel.evaluation.linear import run_linear_eval

    config = config_from_flags(LinearEvalConfig, flags.FLAGS).validate()
    results = run_linear_eval(config)
    print(
        f"linear evaluation: top-1 {results['top1']:.4f}, top-5 "
        f"{results['top5']:.4f} on {results['num_samples']} samples; best "
        f"top-1 {results['best_top1']:.4f} (epoch {results['best_epoch']})"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
