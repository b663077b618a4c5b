#!/usr/bin/env bash
# The GPU checks of this project in one short script: CUDA tests, the training benchmark (both
# feature-map layouts, fp32 and bf16), a real 18-run sweep, a profile of one stacked step, and
# optionally the MASC benchmarks. At most 9 minutes (the steps' limits) with the default steps;
# exits non-zero if any step failed.
# Usage: MASC_DATA=<folder with MNIST/raw> [STEPS="tests bench sweep profile masc big"] \
#        bash benchmarks/gpu_checks.sh [log folder]
# A machine without network needs MNIST carried in: here `mkdir -p .carry && tar czf
# .carry/mnist.tgz -C data MNIST/raw` (.carry is git-ignored), there `mkdir -p /tmp/d &&
# tar xzf .carry/mnist.tgz -C /tmp/d && MASC_DATA=/tmp/d bash benchmarks/gpu_checks.sh`.
set -u
FAILED=()
LOG=${1:-gpu_logs}
STEPS=${STEPS:-tests bench sweep profile}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
step() { local name=$1 limit=$2; shift 2; echo "=== $name"; local t0=$SECONDS
         timeout "$limit" "$@" > "$LOG/$name.log" 2>&1; local rc=$?
         echo "exit $rc after $((SECONDS - t0)) s"; [ "$rc" -eq 0 ] || FAILED+=("$name")
         tr '\r' '\n' < "$LOG/$name.log" | grep -v '^\s*$' | tail -n 40; }
wanted() { [[ " $STEPS " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
if wanted tests; then
  step gpu_tests 100 python3 -m pytest -q -x tests/test_gpu.py
fi
if wanted bench; then
  step bench_cnn 180 python3 benchmarks/bench_training.py --device cuda --models CNN \
       --train-images 20000 --ks 1 6 18 --bf16 --nchw
  step bench_tf32 45 python3 benchmarks/bench_training.py --device cuda --models CNN \
       --train-images 20000 --ks 1 18 --tf32
  step bench_mlp 60 python3 benchmarks/bench_training.py --device cuda --models MLP \
       --train-images 20000 --ks 1 18
fi
if wanted sweep; then
  step sweep 100 python3 pytorch_training.py -corr all -model CNN -dataset MNIST -run all \
       --epochs 12 --out /tmp/sweep
fi
if wanted profile; then
  step profile 45 python3 benchmarks/profile_step.py --model CNN --k 18 --device cuda
fi
if wanted masc; then
  step masc_all 90 python3 pytorch_MASC_all.py -corr 0.8 -model CNN -dataset MNIST -run 1 \
       -exp1 True -exp2 True --out /tmp/sweep --device cuda
  step bench_masc 150 python3 benchmarks/bench_masc.py --device cuda --parts c a
fi
if wanted big; then  # AlexNet / ResNet-18 images/s, sweep estimates, torch.compile vs graph
  step big_models 540 python3 benchmarks/gpu_big_models.py --budget 240 --tf32 --bf16 \
       --out "$LOG/gpu_big_models.csv"
fi
if [ ${#FAILED[@]} -gt 0 ]; then echo "failed steps: ${FAILED[*]}"; exit 1; fi
echo "all steps passed"
