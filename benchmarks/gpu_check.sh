#!/usr/bin/env bash
# One prepared GPU check, for a machine with an NVIDIA GPU, CuPy, PyTorch and no network.
# Runs the test suite (GPU cases included), the conv (im2col and cuFFT columns) and training-step
# benchmarks (the RawKernel im2col plan, and every layer on cuFFT) against
# PyTorch + cuDNN, and a full baseline training + evaluation on LFW-a; packs every log, JSON
# and figure (not the weights) into OUT_DIR/gpu_check.tar.gz.
#
#   bash benchmarks/gpu_check.sh OUT_DIR [DATA_DIR]
#
# DATA_DIR is an LFW-a folder, or a packed bundle made here first with
#   python3 cli.py pack --out gpu_bundle        (53 MiB: the faces of both View 1 files)
set -uo pipefail
dest=${1:?usage: gpu_check.sh OUT_DIR [DATA_DIR]}
data=${2:-gpu_bundle}
cd "$(dirname "$0")/.."
out=$(mktemp -d)/gpu_check
mkdir -p "$out" "$dest"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{
  date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion(), 'numpy', numpy.__version__, 'torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
} > "$out/versions.txt" 2>&1
python3 -m pytest -q tests -x -p no:cacheprovider > "$out/tests.txt" 2>&1; echo "tests rc=$?" >> "$out/tests.txt"
python3 benchmarks/conv_bench.py --device gpu --repeats 10 --json "$out/conv_bench.json" > "$out/conv_bench.txt" 2>&1
python3 benchmarks/train_step_bench.py --device gpu --steps 20 --warmup 3 --json "$out/train_step.json" > "$out/train_step.txt" 2>&1
python3 benchmarks/train_step_bench.py --device gpu --conv-algo fft --no-torch --steps 20 --warmup 3 --json "$out/train_step_fft.json" > "$out/train_step_fft.txt" 2>&1
python3 cli.py train --device gpu --data-dir "$data" --out "$out/baseline" --cache-dir "$out/cache" --quiet > "$out/train.txt" 2>&1
echo "train rc=$?" >> "$out/train.txt"
rm -rf "$out/cache"
tail -n 3 "$out"/*.txt
tar czf "$dest/gpu_check.tar.gz" --exclude='*.npz' -C "$(dirname "$out")" gpu_check
ls -l "$dest"
