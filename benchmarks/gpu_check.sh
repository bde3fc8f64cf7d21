#!/usr/bin/env bash
# One prepared GPU check, for a machine with an NVIDIA GPU, CuPy, PyTorch and no network.
# Stages, most important first, each under its own time limit so that one slow stage cannot
# starve the rest, each writing straight into OUT_DIR (what a stage finished survives even if
# the whole call is killed):
#   tests.txt  versions, then every GPU case of the suite (pytest -k "gpu or cuda": the [gpu]
#              backend cases, and tests/test_gpu.py on real CuPy and on the host shim)
#   bench.txt  train_step_bench.py --device gpu: our step (RawKernel im2col plan) against
#              PyTorch + cuDNN (float32, TF32 off), then every layer on cuFFT, then bn512;
#              conv_bench.py --device gpu per layer against cuDNN and the float32 GEMM rate
#   train.txt  python3 cli.py train --device gpu (the baseline, the newcomer's command) on LFW-a
#   artifacts.tar.gz  the benchmarks' JSONs and the run's results.json, history and figures
#              (never the weights), re-packed after every stage
#
#   bash benchmarks/gpu_check.sh OUT_DIR [DATA_DIR]
#
# DATA_DIR is an LFW-a folder, or a packed bundle made here first with
#   python3 cli.py pack --out gpu_bundle        (53 MiB: the faces of both View 1 files)
# Limits per stage (seconds) can be changed: T_TESTS, T_STEP, T_CONV, T_TRAIN.
set -uo pipefail
dest=${1:?usage: gpu_check.sh OUT_DIR [DATA_DIR]}
data=${2:-gpu_bundle}
cd "$(dirname "$0")/.."
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
work=$(mktemp -d)/gpu_check
mkdir -p "$work"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1

pack() {   # every JSON, log and figure made so far; never the weights
  tar czf "$dest/artifacts.tar.gz" --exclude='*.npz' -C "$(dirname "$work")" gpu_check 2>/dev/null
}
stage() {  # stage SECONDS LOG COMMAND...: run with a limit, append its output and exit status to LOG
  local limit=$1 log=$2; shift 2
  echo "\$ $* (limit ${limit}s)" >> "$log"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >> "$log" 2>&1
  echo "rc=$? in $((SECONDS - t0)) s" >> "$log"
  pack
}

{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), 'numpy', numpy.__version__, 'torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
  nproc; lscpu | grep -E 'Model name|Flags' | cut -c1-200
} > "$dest/tests.txt" 2>&1
stage "${T_TESTS:-150}" "$dest/tests.txt" python3 -m pytest -q -rs tests -k "gpu or cuda" -p no:cacheprovider

b="$dest/bench.txt"
stage "${T_STEP:-90}" "$b" python3 benchmarks/train_step_bench.py --device gpu --steps 20 --warmup 3 --json "$work/train_step.json"
stage "${T_STEP:-90}" "$b" python3 benchmarks/train_step_bench.py --device gpu --conv-algo fft --no-torch --steps 20 --warmup 3 --json "$work/train_step_fft.json"
stage "${T_STEP:-90}" "$b" python3 benchmarks/train_step_bench.py --device gpu --preset bn512 --no-torch --steps 20 --warmup 3 --json "$work/train_step_bn512.json"
stage "${T_CONV:-60}" "$b" python3 benchmarks/conv_bench.py --device gpu --repeats 10 --json "$work/conv_bench.json"

stage "${T_TRAIN:-180}" "$dest/train.txt" python3 cli.py train --device gpu --data-dir "$data" --out "$work/baseline" --cache-dir "$work/cache" --quiet
rm -rf "$work/cache"
pack
ls -l "$dest"
