#!/usr/bin/env bash
# The prepared GPU check for a session lent a device (15 minutes in all): one call,
# about 10 minutes on an H200. What it measures goes to reports/benchmarks.md.
#
#   1. bench/probe_bench.py on the GPU: probe against its floor and the naive deepcopy probe;
#   2. the paper-scale ResNet-50 probe command, timed: 7,800 steps per variant (= 20 epochs
#      of CIFAR-10's 50,000 images at batch 128, the paper's ResNet-50 setting), none and bn;
#      a CIFAR-10 subset stands in for the full set (transfers are limited to 64 MiB; the
#      cost per step does not depend on which images);
#   3. bench/paper_projection.py 300: the training step alone, to split the wall time into
#      training and probing.
#
# Here, once:   python ../shared/data/make_subset.py .gpu-data --train 8000 --test 2000   (43 MB)
#               pip download --no-deps -d .whl plotly narwhals   (the GPU image lacks them)
# Then:         device run: bash bench/gpu_check.sh, carrying .gpu-data and .whl
set -u
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
if ! python3 -c "import plotly" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
fi
mkdir -p /tmp/shim && ln -sfn "$PWD/cli" /tmp/shim/landscape_cli  # the package, without installing it
export PYTHONPATH="$PWD:/tmp/shim:/tmp/site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 150 python3 bench/probe_bench.py --device cuda --repeats 20 \
    --cases vgg16_bn:4,vgg16_bn:8,dln:4,dln:8,dln_bn:8 2>&1 | tee "$OUT/probe_bench.md"
start=$(date +%s)
timeout 480 python3 -m landscape_cli probe --model resnet50 --device cuda --data-dir .gpu-data --steps 7800 \
    --run-dir /tmp/r50 --no-progress 2>&1 | tee "$OUT/resnet50.txt"
echo "wall_s $(( $(date +%s) - start ))" | tee -a "$OUT/resnet50.txt"
cp /tmp/r50/report.html "$OUT/" 2>/dev/null
timeout 120 python3 bench/paper_projection.py 300 2>&1 | tee "$OUT/projection.json"
