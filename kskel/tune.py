"""Hyperparameter search over pretraining flags (KerasTuner).

Usage:
    python -m kskel.tune --flagfile=configs/tune_actclr_temperature.cfg
    python -m kskel.tune --flagfile=configs/actclr_demo.cfg \\
        --tune_dir=work_dir/tune_actclr \\
        --search=tau_q:float:0.05:0.3:log,tau_k:float:0.02:0.1:log \\
        [--tuner=random|bayesian|hyperband] [--max_trials=10] \\
        [--objective=knn|linear] [--validation_split=val]

The command takes every flag of `kskel.pretrain` (the base settings of
each trial, usually from a pretraining flag file) and the search flags of
`kskel.tuning.TuneConfig`; all are validated before any data is read.
Each trial pretrains into `TUNE_DIR/trials/<id>` and is scored after every
epoch on `--validation_split`. The search writes `TUNE_DIR/trials.md` (all
trials) and `TUNE_DIR/best.cfg` (the best flags, for
`python -m kskel.pretrain --flagfile=TUNE_DIR/best.cfg`); running the same
command again resumes an interrupted search.
"""

from absl import flags

from kskel import cli
from kskel.flag_config import config_from_flags
from kskel.flag_config import define_flags
from kskel.pretraining import PretrainConfig
from kskel.tuning import TuneConfig
from kskel.tuning import run_tuning

define_flags(PretrainConfig)
define_flags(TuneConfig)


def main(argv):
    del argv
    # The search flags first: they need no TensorFlow.
    tune = config_from_flags(TuneConfig, flags.FLAGS).validate()
    base = config_from_flags(PretrainConfig, flags.FLAGS).validate()
    result = run_tuning(tune, base)
    values = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(result["values"].items())
    )
    print(
        f"done: {result['trials']} trials; best trial {result['best_trial']} "
        f"({values}) {result['objective']}={result['score']:.4f}; wrote "
        f"{result['table']} and {result['best_flagfile']}"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
