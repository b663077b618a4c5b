"""Find wrong labels from features alone: per-sample scores, ranks and flags, a per-class table and
a grid of the most suspicious images.

    python -m MASC.find_label_issues data.npz            # arrays: features, labels (images: optional)
    python -m MASC.find_label_issues features.npy labels.npy [images.npy] --report out/

Features are any numbers per sample (a layer's activations, a pretrained backbone's embeddings,
pixels). Each sample is judged by MASC subspaces fitted on the other folds (--folds, stratified,
--fold-seed; --in-sample: on every sample); its label is flagged when another class's subspace is
closer than its own (MASC/noise.py, label_report, says how). Writes under --report:

  label_issues.csv           one row per sample, most suspicious first: index (its row in the
                             input), given_label, suggested_label, label_quality (0-1, higher =
                             more likely right), is_label_issue (quality < 0.5), rank,
                             angle_given and angle_other (degrees to its label's subspace and to
                             the closest other class's)
  label_issues_by_class.csv  sample counts, given label (rows) x suggested label (columns)
  label_issues.png           the --top most suspicious flagged images, given -> suggested label
                             (only when images are given)
"""
# Defaults: edit them here or override them on the command line.
FOLDS = 5             # each sample judged by subspaces fitted on the other K - 1 folds
FOLD_SEED = 0         # the folds' shuffle
IN_SAMPLE = False     # True (--in-sample): fitted on every sample, each judging itself too
TOP = 36              # images in the grid
REPORT = "label_issues"
# The others are the settings groups' (--help lists them): MASC's THRESHOLD, and DEVICE.

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import cli, noise, plots, results  # noqa: E402
from .devices import pick_device  # noqa: E402
from .errors import MASCError  # noqa: E402

_KEYS = ("features", "labels", "images")  # the arrays of an .npz (images optional)


def _load(path):
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MASCError(f"{path} does not exist") from None
    except (ValueError, OSError) as e:
        raise MASCError(f"{path} is not a NumPy .npy/.npz file of numbers or strings "
                        f"({str(e).splitlines()[0]})") from None


def load_inputs(paths):
    """``(features, labels, images or None)`` from one .npz (arrays ``features``, ``labels`` and
    optionally ``images``) or from .npy files in that order (images optional)."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].suffix == ".npz":
        with _load(paths[0]) as found:
            missing = [k for k in _KEYS[:2] if k not in found.files]
            if missing:
                raise MASCError(f"{paths[0]} has no {' or '.join(map(repr, missing))} array (it "
                                f"holds {', '.join(found.files) or 'none'}); save it with "
                                f"np.savez(path, features=X, labels=y, images=I)")
            return tuple(found[k] if k in found.files else None for k in _KEYS)
    if len(paths) in (2, 3) and all(p.suffix == ".npy" for p in paths):
        arrays = [_load(p) for p in paths]
        return (*arrays, None) if len(arrays) == 2 else tuple(arrays)
    raise MASCError(f"give one .npz file (features, labels, optional images) or .npy files "
                    f"features.npy labels.npy [images.npy], not {' '.join(map(str, paths))}")


def per_class(report):
    """Sample counts, given label (rows) x suggested label (columns), every class on both."""
    classes = np.unique(np.concatenate([report.given_label, report.suggested_label]))
    return pd.crosstab(report.given_label, report.suggested_label).reindex(
        index=classes, columns=classes, fill_value=0)


@cli.main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("inputs", nargs="+", help="data.npz (features, labels, images), or "
                   "features.npy labels.npy [images.npy]")
    cli.add_settings(p, {**cli.MASC, **cli.without(cli.COMMON, "DATA", "OUT"),
                         **cli.constants(globals())})
    args = p.parse_args(argv)
    if not args.in_sample and args.folds < 2:
        p.error("argument --folds: cross-fitting needs 2 or more folds (or give --in-sample)")
    features, labels, images = load_inputs(args.inputs)
    if images is not None and len(images) != len(features):
        raise MASCError(f"{len(images)} images for {len(features)} feature rows; give one image "
                        f"per sample, in the same order")
    tic = time.perf_counter()
    report = noise.label_report(features, labels, threshold=args.threshold,
                                cv=None if args.in_sample else args.folds, seed=args.fold_seed,
                                device=pick_device(args.device))
    seconds = time.perf_counter() - tic
    folder = Path(args.report)
    written = [results.write_csv(report.sort_values("rank").rename_axis("index").reset_index(),
                                 folder / "label_issues.csv")]
    table = per_class(report)
    written.append(results.write_csv(table.rename_axis("given_label"),
                                     folder / "label_issues_by_class.csv", index=True))
    if images is not None and report.is_label_issue.any():
        fig = plots.label_issue_grid(images, report, top=args.top)
        written.append(folder / "label_issues.png")
        fig.savefig(written[-1], dpi=150)
        plots.plt.close(fig)
    how = "in-sample" if args.in_sample else f"cross-fitted, {args.folds} folds"
    flagged = int(report.is_label_issue.sum())
    print(f"{len(report)} samples, {len(table)} classes: {flagged} labels flagged "
          f"({flagged / len(report):.1%}) in {seconds:.1f} s ({how})")
    print("given label (rows) x suggested label (columns):")
    print(table.rename_axis(index="given", columns="suggested").to_string())
    print("wrote " + ", ".join(map(str, written)))


if __name__ == "__main__":
    main()
