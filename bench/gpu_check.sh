#!/usr/bin/env bash
# The prepared GPU check for a session lent a device (15 minutes in all, start-up
# included): one call. What it measures goes to reports/.
#
#   CHECK=reproduce (default, ~9 min on an H200):
#     1. bench/probe_bench.py on the GPU, short: probe against its floor;
#     2. `landscape reproduce` at paper scale for the figures that fit: fig10, fig13, fig9 (the DLN,
#        10k full-batch steps) and fig4 (VGG-16, 15k steps at batch 128, probes on the paper's
#        schedule), on a CIFAR-10 subset (transfers are limited to 64 MiB; the steps are the
#        paper's, the images the first 8,000); each figure's claims.json, figure.json and
#        report.html come back under $OUT/reproduce-paper/, for
#        `python scripts/reproduction.py runs/reproduce/cpu <fetched>/reproduce-paper`.
#   CHECK=transformer (~5 min): `landscape reproduce transformer-norms --scale paper --seeds 3`
#     (issue #24's GPU scale: the GPT's own protocol, 3 seeds of each of its 4 runs), on
#     .gpu-data/shakespeare/input.txt (cp -r ../shared/data/shakespeare .gpu-data/, 5 MB);
#     claims.json, figure.json and report.html come back under $OUT/reproduce-paper/.
#   CHECK=bench (~10 min): the earlier check: probe_bench, the paper-scale ResNet-50 probe
#     command timed (7,800 steps per variant), bench/paper_projection.py 300.
# Either mode first times a 7x7 loss surface by the loop against vmapped points
# (bench/surface_batched_bench.py, a few seconds) into $OUT/surface_batched_bench.md.
#
# Here, once:   python ../shared/data/make_subset.py .gpu-data --train 8000 --test 2000   (43 MB)
#               pip download --no-deps -d .whl plotly narwhals   (the GPU image lacks them)
# Then:         device run: bash bench/gpu_check.sh, carrying .gpu-data and .whl
set -u
OUT=${OUT:-/tmp/gpu-check}
CHECK=${CHECK:-reproduce}
mkdir -p "$OUT"
if ! python3 -c "import plotly" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
fi
mkdir -p /tmp/shim && ln -sfn "$PWD/cli" /tmp/shim/landscape_cli  # the package, without installing it
export PYTHONPATH="$PWD:/tmp/shim:/tmp/site" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
timeout 60 python3 bench/surface_batched_bench.py --device cuda --repeats 3 2>&1 | tee "$OUT/surface_batched_bench.md"

if [ "$CHECK" = "reproduce" ]; then
    timeout 60 python3 bench/probe_bench.py --device cuda --repeats 10 --cases vgg16_bn:4,dln:4 2>&1 \
        | tee "$OUT/probe_bench.md"
    start=$(date +%s)
    for fig in fig10 fig13 fig9 fig4; do
        left=$(( 480 - ($(date +%s) - start) ))
        [ "$left" -gt 30 ] || { echo "no time left for $fig" | tee -a "$OUT/reproduce.txt"; break; }
        timeout "$left" python3 -m landscape_cli reproduce "$fig" --scale paper --device cuda \
            --data-dir .gpu-data --subset 8000 --out /tmp/reproduce-paper --no-progress 2>&1 | tee -a "$OUT/reproduce.txt"
        echo "$fig wall_s $(( $(date +%s) - start ))" | tee -a "$OUT/reproduce.txt"
    done
    for dir in /tmp/reproduce-paper/fig* /tmp/reproduce-paper/seed-*; do
        [ -f "$dir/claims.json" ] || continue
        mkdir -p "$OUT/reproduce-paper/$(basename "$dir")"
        cp "$dir"/claims.json "$dir"/figure.json "$dir"/report.html "$OUT/reproduce-paper/$(basename "$dir")/"
    done
    exit 0
fi

if [ "$CHECK" = "transformer" ]; then
    start=$(date +%s)
    timeout 480 python3 -m landscape_cli reproduce transformer-norms --scale paper --seeds 3 --device cuda \
        --data-dir .gpu-data --out /tmp/reproduce-paper --no-progress 2>&1 | tee "$OUT/transformer.txt"
    echo "wall_s $(( $(date +%s) - start ))" | tee -a "$OUT/transformer.txt"
    dir=/tmp/reproduce-paper/transformer-norms
    mkdir -p "$OUT/reproduce-paper/transformer-norms"
    cp "$dir"/claims.json "$dir"/figure.json "$dir"/report.html "$OUT/reproduce-paper/transformer-norms/" 2>/dev/null
    exit 0
fi

timeout 150 python3 bench/probe_bench.py --device cuda --repeats 20 \
    --cases vgg16_bn:4,vgg16_bn:8,dln:4,dln:8,dln_bn:8 2>&1 | tee "$OUT/probe_bench.md"
start=$(date +%s)
timeout 480 python3 -m landscape_cli probe --model resnet50 --device cuda --data-dir .gpu-data --steps 7800 \
    --run-dir /tmp/r50 --no-progress 2>&1 | tee "$OUT/resnet50.txt"
echo "wall_s $(( $(date +%s) - start ))" | tee -a "$OUT/resnet50.txt"
cp /tmp/r50/report.html "$OUT/" 2>/dev/null
timeout 120 python3 bench/paper_projection.py 300 2>&1 | tee "$OUT/projection.json"
