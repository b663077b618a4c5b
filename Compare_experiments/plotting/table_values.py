"""The paper's summary table: the network's test accuracy against best-layer MASC, per model and p.

    python Compare_experiments/plotting/table_values.py [--out RESULTS_ROOT] [--plots FOLDER]

Per (dataset, model, p): the network's final test accuracy (mean over runs), the best test accuracy
it reached at any epoch of training (mean over runs of each run's maximum, from the training CSVs),
and the best layer's MASC test accuracy with corrupted and with true subspaces (max over layers of
the mean over runs). Writes table_values.csv (fractions) and table_values.md (%).
"""
# Defaults: edit them here or override them on the command line.
OUT = "."             # results root (the --out of the experiment scripts)
PLOTS = None          # None: Compare_experiments/plotting/plots

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from MASC import cli, plots, results  # noqa: E402
from MASC.errors import MASCError  # noqa: E402


@cli.main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=OUT, help="results root")
    p.add_argument("--plots", default=PLOTS or Path(__file__).resolve().parent / "plots")
    args = p.parse_args(argv)
    table = plots.summary_table(plots.load_accuracy(args.out), args.out)
    if table.empty:
        raise MASCError(f"no MASC results under {Path(args.out, 'results')}; run probe_layers.py "
                        f"or pytorch_MASC_all.py first, or pass its --out")
    print(results.write_csv(table, Path(args.plots) / "table_values.csv"))
    md = plots.markdown(table)
    (Path(args.plots) / "table_values.md").write_text(md)
    print(Path(args.plots) / "table_values.md")
    print(md, end="")


if __name__ == "__main__":
    main()
