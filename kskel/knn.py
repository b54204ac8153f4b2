"""KNN evaluation of a pretrained (or random) encoder.

Usage:
    python -m kskel.knn --pretrained=work_dir/actclr_ntu60_xsub_joint \\
        --data_dir=data/ntu60_xsub --model_dir=OUT [--k=20] \\
        [--temperature=0.1] [--features=auto|projection|encoder]
    python -m kskel.knn --flagfile=configs/knn.cfg

The official ActCLR KNN monitor (FACTS §7.5): the training split is the
bank, the test split is classified by a weighted vote of its k nearest
neighbours (cosine similarity, weights exp(sim / t)). Every flag is a field
of `kskel.evaluation.knn_eval.KnnConfig`. Writes `OUT/results.json` (top-1
for k = 10, 20, 40 under "knn"), `OUT/results.md`, `OUT/test_logits.npy`
(the KNN class scores) and `OUT/test_labels.npy`.
"""

from absl import flags

from kskel import cli
from kskel.evaluation.knn_eval import KnnConfig
from kskel.flag_config import config_from_flags
from kskel.flag_config import define_flags

define_flags(KnnConfig)


def main(argv):
    del argv
    from kskel.evaluation.knn_eval import run_knn

    config = config_from_flags(KnnConfig, flags.FLAGS).validate()
    results = run_knn(config)
    by_k = ", ".join(f"k={k}: {v:.4f}" for k, v in results["knn"].items())
    print(
        f"KNN top-1 {results['top1']:.4f}, top-5 {results['top5']:.4f} "
        f"(k={config.k}, {results['features']} features, "
        f"{results['num_samples']} samples); top-1 {by_k}"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
