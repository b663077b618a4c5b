#!/usr/bin/env bash
# The paper's effect in a few minutes on a CPU: a CNN memorises MNIST labels that are 80% shuffled,
# its own test accuracy collapses, yet MASC reads the true classes out of its layers.
#   ./run_demo.sh            (SUBSET=N ./run_demo.sh trains on N images instead of 1,000: slower)
set -euo pipefail
cd "$(dirname "$0")"
SUBSET=${SUBSET:-1000}
OUT=${OUT:-demo}
python -m pip install -q -r requirements.txt
python -m MASC.data fetch MNIST
python pytorch_training.py -corr 0.8 -model CNN -dataset MNIST -run 1 --subset "$SUBSET" \
    --test-subset 1000 --epochs 500 --out "$OUT"
python pytorch_MASC_all.py -corr 0.8 -model CNN -dataset MNIST -run 1 -exp1 True -exp2 True \
    --out "$OUT" > "$OUT/masc_table.txt"
python - "$OUT" <<'PY'
import sys
import pandas as pd
out = sys.argv[1]
masc = pd.concat(pd.read_csv(f"{out}/results/masc/MNIST_CNN/0.8/Run_1_exp{n}.csv") for n in (1, 2))
table = masc.pivot(index="layer", columns="subspaces_from", values="test_acc")
table = table.loc[masc.layer.unique()].rename(columns={"corrupted": "MASC, corrupted labels",
                                                       "original": "MASC, true labels"})
table["network itself"] = masc.model_test_acc.iloc[0]
print("\nMNIST CNN trained on labels 80% shuffled: test accuracy on all 10,000 test images")
print((100 * table).round(1).to_string())
best = table["MASC, corrupted labels"]
print(f"\nBest layer ({best.idxmax()}): MASC {100 * best.max():.1f}% vs the network's own "
      f"{100 * table['network itself'].iloc[0]:.1f}%")
PY
