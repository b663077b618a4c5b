"""Finding wrong labels in fixed features, with no network: every features-only detector on a dataset's pixels.

    python Compare_experiments/label_noise/fixed_features.py -corr 0.4 0.8 -run 1 2 3 -model pixels -dataset MNIST --subset 5000

The first --subset training images of the dataset, flattened to rows of raw pixel values (0-255),
with their labels corrupted at each p (run r draws its own corrupted labels: label seed
LABEL_SEED + r - 1, so run 1 has the reference's), are scored by MASC cross-fitted
(MASC.noise.find_label_issues) and in-sample, a k-nearest-neighbour vote, cleanlab on a
logistic-regression probe's K-fold out-of-sample probabilities, and cleanlab's Datalab from the
features (MASC/noise.py says how). No network is trained, so there is no softmax detector. Needs
cleanlab (requirements-study.txt).

Writes under results/label_noise_pixels/{ds}_pixels/ of --out: {p}/Run_{r}_metrics.csv (per
detector: precision, recall, F1, average precision, AUROC, lift@100, seconds; the settings in
every row), and detectors_summary.csv and table.md over the runs found. A rerun skips the runs
already scored with the same settings and scores the others again.
"""
# Defaults: edit them here or override them on the command line.
SUBSET = 5000         # first N training images
FOLDS = 5             # K of MASC's cross-fitting and of the probe's out-of-sample probabilities
FOLD_SEED = 0         # the folds' shuffle
LABEL_SEED = 42       # run r corrupts with LABEL_SEED + r - 1 (42: the reference's labels)
# The others are the settings groups' (--help lists them): MASC's THRESHOLD, and DEVICE, DATA, OUT.

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from MASC import cli, data, noise, results  # noqa: E402
from MASC.corruption import corrupt_labels  # noqa: E402
from MASC.devices import pick_device  # noqa: E402


@cli.main
def main(argv=None):
    p = cli.parser(__doc__.split("\n")[0], globals(), (cli.MASC, cli.COMMON), models=("pixels",),
                   many=True)
    args = p.parse_args(argv)
    noise._cleanlab()  # fail before any work
    split = data.load(args.dataset, args.data, True).first(args.subset)
    X, true = split.images.reshape(len(split), -1).float(), split.labels.numpy()
    num_classes = data.info(args.dataset).num_classes
    device = pick_device(args.device)
    for corrupt in cli.expand(args.corr, cli.CORRUPTIONS, cli.corruption):
        for run in cli.expand(args.run, cli.RUNS, int):
            key = results.RunKey(args.out, args.dataset, "pixels", corrupt, run)
            path = key.label_noise_csv("metrics", "pixels")
            # what changes the scores: a rerun with others scores again
            settings = {"threshold": args.threshold, "folds": args.folds,
                        "fold_seed": args.fold_seed, "label_seed": args.label_seed + run - 1,
                        "subset": len(X)}
            if path.exists() and results.same_settings(results.read_csv(path), settings):
                continue
            with results.lock(key.label_noise_lock("pixels"), wait=False, what="scored"):
                given = corrupt_labels(true, corrupt, num_classes, settings["label_seed"])
                found, seconds = noise.score_labels(X, given, num_classes, threshold=args.threshold,
                                                    folds=args.folds, seed=args.fold_seed,
                                                    device=device)
                scores = pd.concat([pd.DataFrame({"given": given, "true": true}), found], axis=1)
                metrics = noise.metrics_table(scores, key.ids(), seconds).assign(**settings)
                results.write_csv(metrics, path)
            print(f"{key}, {len(X)} images: {np.mean(given != true):.1%} of the labels wrong")
            print(metrics[["detector", "n_flagged"] + noise.METRICS + ["seconds"]].to_string(index=False))
    study = results.tidy_dir(args.out, results.LABEL_NOISE["pixels"], args.dataset, "pixels")
    detectors, _ = noise.study_summary(study)
    (study / "table.md").write_text(noise.markdown(detectors, pd.DataFrame()))
    print(noise.markdown(detectors, pd.DataFrame()), end="")
    print(f"results: {study}")


if __name__ == "__main__":
    main()
