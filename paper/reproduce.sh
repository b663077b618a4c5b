#!/usr/bin/env bash
# The paper's headline cells at full scale with the default (paper's) settings, in one job of at
# most BUDGET seconds (default 510: one 10-minute GPU call with room to start and pack), then
# MASC exp1/exp2 (exp3 where the p = 0.0 model exists) on every layer of every finished run, the
# comparison with the paper, and one archive of the tidy CSVs, the logs and paper/RESULTS.md.
#
#   MASC_DATA=<folder with MNIST/raw, FashionMNIST/raw> bash paper/reproduce.sh OUT [ARCHIVE]
#   SUBSET=300 TEST_SUBSET=200 EPOCHS=2 bash paper/reproduce.sh /tmp/repro     # quick CPU check
#
# Cells, in order, each given what is left of the budget (a run that does not finish keeps its
# progress.pt under OUT: rerun the script on the same OUT to continue it):
#   1. MLP / MNIST, every p, runs 1-3 (18 runs stacked on a GPU)
#   2. CNN / MNIST, p = 0.0 and 0.8, runs 1-3
#   3. CNN / Fashion-MNIST, p = 0.0 and 0.8, runs 1-3
# Unfinished runs are listed as still training in the report, never counted as results.
set -u
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash paper/reproduce.sh OUT [ARCHIVE]}
ARCHIVE=${2:-$OUT/reproduction.tgz}
BUDGET=${BUDGET:-510}
READOUT_RESERVE=${READOUT_RESERVE:-90}   # seconds kept for the MASC read-outs and packing
mkdir -p "$OUT/logs"
EXTRA=()
[ -n "${SUBSET:-}" ] && EXTRA+=(--subset "$SUBSET")
[ -n "${TEST_SUBSET:-}" ] && EXTRA+=(--test-subset "$TEST_SUBSET")
[ -n "${EPOCHS:-}" ] && EXTRA+=(--epochs "$EPOCHS")
START=$SECONDS
left() { echo $((BUDGET - READOUT_RESERVE - (SECONDS - START))); }
MACHINE=$( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) || true)
MACHINE=${MACHINE:-"CPU, $(nproc --all) cores"}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "stage,machine,commit,seconds,exit" > "$OUT/provenance_stages.csv"

train() {  # train MODEL DATASET CORRS...
  local model=$1 dataset=$2; shift 2
  local limit; limit=$(left)
  if [ "$limit" -le 10 ]; then echo "skip $model/$dataset: no time left"; return; fi
  local t0=$SECONDS
  timeout --signal=INT "$limit" python3 pytorch_training.py -corr "$@" -model "$model" \
      -dataset "$dataset" -run all --out "$OUT" "${EXTRA[@]}" > "$OUT/logs/train_${model}_${dataset}.log" 2>&1
  local rc=$?
  echo "train ${model} ${dataset},$MACHINE,$COMMIT,$((SECONDS - t0)),$rc" >> "$OUT/provenance_stages.csv"
  tr '\r' '\n' < "$OUT/logs/train_${model}_${dataset}.log" | grep -E "stopped|already|error" | tail -n 20
}

train MLP MNIST all
train CNN MNIST 0.0 0.8
train CNN FashionMNIST 0.0 0.8

for folder in "$OUT"/models/*/Network/*/Run_*; do
  ls "$folder"/model_*.pth > /dev/null 2>&1 || continue  # unfinished: no final checkpoint
  tag=$(basename "$(dirname "$(dirname "$(dirname "$folder")")")")
  dataset=${tag%_*} model=${tag##*_} p=$(basename "$(dirname "$folder")") run=${folder##*_}
  exps=(-exp1 True -exp2 True)
  ls "$OUT/models/$tag/Network/0.0/Run_$run"/model_*.pth > /dev/null 2>&1 && exps+=(-exp3 True)
  t0=$SECONDS
  python3 pytorch_MASC_all.py -corr "$p" -model "$model" -dataset "$dataset" -run "$run" \
      "${exps[@]}" --out "$OUT" > "$OUT/logs/masc_${tag}_${p}_${run}.log" 2>&1
  echo "masc $tag $p run $run,$MACHINE,$COMMIT,$((SECONDS - t0)),$?" >> "$OUT/provenance_stages.csv"
done

python3 paper/compare.py --out "$OUT" --report "$OUT/RESULTS.md" --figure "$OUT/results.png"
tar czf "$ARCHIVE" --exclude=".*.lock" -C "$OUT" results logs provenance_stages.csv RESULTS.md \
    $(cd "$OUT" && ls results.png 2>/dev/null)
echo "packed $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1)) after $((SECONDS - START)) s"
