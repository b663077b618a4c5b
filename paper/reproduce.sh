#!/usr/bin/env bash
# The paper's cells at full scale with the default (paper's) settings, most valuable first, in one
# job of at most BUDGET seconds (default 510: one 10-minute GPU call with room to start and pack),
# then MASC exp1/exp2 (exp3 where the p = 0.0 model exists) on every layer of every finished run,
# the comparison with the paper, and an archive in pieces of at most 15 MiB (a GPU job brings back
# 8 files of 16 MiB): the tidy CSVs, the logs, the final CNN weights (so MASC can be redone on a
# CPU) and the progress of every CNN run that did not finish (so the next job goes on from it).
#
#   MASC_DATA=<folder with MNIST/raw, FashionMNIST/raw> bash paper/reproduce.sh OUT [ARCHIVE]
#   SUBSET=300 TEST_SUBSET=200 EPOCHS=2 bash paper/reproduce.sh /tmp/repro     # quick CPU check
#   cat ARCHIVE.part* | tar xz -C OUT                                            # unpack it
#
# Cells, in order of value (each given what is left of the budget; rerun on the same OUT, or on
# OUT unpacked from the last archive, and finished runs are skipped, unfinished ones resume):
#   1. CNN / MNIST, p = 0.8 runs 1-3 and p = 0.0 runs 1-3 (the headline cell and exp3's models)
#   2. CNN / Fashion-MNIST, p = 0.8 and 0.0, runs 1-3
#   3. MLP / MNIST, every p, runs 1-3, with $MLP_FLAGS (the MLP protocol: paper/NOTES.md)
#   4. CNN / MNIST, p = 0.2, 0.4, 0.6, runs 1-3
# Unfinished runs are listed as still training in the report, never counted as results.
set -u
cd "$(dirname "$0")/.."
OUT=${1:?usage: bash paper/reproduce.sh OUT [ARCHIVE]}
ARCHIVE=${2:-$OUT/reproduction.tgz}
BUDGET=${BUDGET:-510}
READOUT_RESERVE=${READOUT_RESERVE:-90}   # seconds kept for the MASC read-outs and packing
PACK_RESERVE=${PACK_RESERVE:-30}         # of which the last are kept for the report and packing
MLP_FLAGS=${MLP_FLAGS:-}
mkdir -p "$OUT/logs"
EXTRA=()
[ -n "${SUBSET:-}" ] && EXTRA+=(--subset "$SUBSET")
[ -n "${TEST_SUBSET:-}" ] && EXTRA+=(--test-subset "$TEST_SUBSET")
[ -n "${EPOCHS:-}" ] && EXTRA+=(--epochs "$EPOCHS")
START=$SECONDS
left() { echo $((BUDGET - READOUT_RESERVE - (SECONDS - START))); }
MACHINE=$( (nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1) || true)
MACHINE=${MACHINE:-"CPU ($(nproc --all) cores)"}
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -s "$OUT/provenance_stages.csv" ] || echo "stage,machine,commit,seconds,exit" > "$OUT/provenance_stages.csv"

train() {  # train MODEL DATASET "CORRS" [FLAGS...]: runs 1-3 at each p, stacked on a GPU
  local model=$1 dataset=$2 corrs=$3; shift 3
  local limit; limit=$(left)
  if [ "$limit" -le 10 ]; then echo "skip $model/$dataset p=$corrs: no time left"; return; fi
  local t0=$SECONDS log="$OUT/logs/train_${model}_${dataset}.log"
  # shellcheck disable=SC2086
  timeout --signal=INT "$limit" python3 pytorch_training.py -corr $corrs -model "$model" \
      -dataset "$dataset" -run all --out "$OUT" "${EXTRA[@]}" "$@" >> "$log" 2>&1
  local rc=$?
  echo "train ${model} ${dataset} p=${corrs// /+},$MACHINE,$COMMIT,$((SECONDS - t0)),$rc" >> "$OUT/provenance_stages.csv"
  tr '\r' '\n' < "$log" | grep -E "stopped|already|error" | tail -n 20
}

train CNN MNIST "0.8 0.0"
train CNN FashionMNIST "0.8 0.0"
# shellcheck disable=SC2086
train MLP MNIST all $MLP_FLAGS
train CNN MNIST "0.2 0.4 0.6"

for folder in "$OUT"/models/*/Network/*/Run_*; do
  ls "$folder"/model_*.pth > /dev/null 2>&1 || continue  # unfinished: no final checkpoint
  tag=$(basename "$(dirname "$(dirname "$(dirname "$folder")")")")
  dataset=${tag%_*} model=${tag##*_} p=$(basename "$(dirname "$folder")") run=${folder##*_}
  ls "$OUT/results/masc/$tag/$p/Run_${run}_exp1.csv" > /dev/null 2>&1 && continue  # read out before
  if [ $((BUDGET - PACK_RESERVE - (SECONDS - START))) -le 0 ]; then
    echo "skip MASC of $tag p=$p run $run: no time left (read it out later with pytorch_MASC_all.py)"
    continue
  fi
  exps=(-exp1 True -exp2 True)
  ls "$OUT/models/$tag/Network/0.0/Run_$run"/model_*.pth > /dev/null 2>&1 && exps+=(-exp3 True)
  t0=$SECONDS
  timeout $((BUDGET - PACK_RESERVE - (SECONDS - START))) python3 pytorch_MASC_all.py -corr "$p" \
      -model "$model" -dataset "$dataset" -run "$run" "${exps[@]}" --out "$OUT" \
      > "$OUT/logs/masc_${tag}_${p}_${run}.log" 2>&1
  echo "masc $tag $p run $run,$MACHINE,$COMMIT,$((SECONDS - t0)),$?" >> "$OUT/provenance_stages.csv"
done

python3 paper/compare.py --out "$OUT" --report "$OUT/RESULTS.md" --figure "$OUT/results.png"
# What comes back: CSVs, logs, the report; the final weights of the CNN runs (about 1.4 MB each);
# the progress of the CNN runs still training (about 4 MB each; an MLP's is 43 MB and stays).
keep=$(cd "$OUT" && { ls -d results logs provenance_stages.csv RESULTS.md results.png 2>/dev/null
                      ls models/*_CNN/Network/*/Run_*/model_*.pth 2>/dev/null
                      for f in models/*_CNN/Network/*/Run_*/progress.pt; do
                        [ -e "$f" ] || continue
                        ls "$(dirname "$f")"/model_*.pth > /dev/null 2>&1 || echo "$f"
                      done; })
# shellcheck disable=SC2086
tar czf "$ARCHIVE" --exclude=".*.lock" --exclude="*.tmp" -C "$OUT" $keep
rm -f "$ARCHIVE".part*
split -b 15M -d "$ARCHIVE" "$ARCHIVE.part" && rm "$ARCHIVE"
echo "packed $(ls "$ARCHIVE".part* | wc -l) piece(s) of $ARCHIVE ($(cat "$ARCHIVE".part* | wc -c) bytes) after $((SECONDS - START)) s"
