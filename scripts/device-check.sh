#!/usr/bin/env bash
# The GPU check, in stages that each finish in minutes on a 16-core GPU machine (no internet), run from the
# repository root:
#   bash scripts/prepare-device-carry.sh                          # here, once: fills device/
#   run(command="bash scripts/device-check.sh", carry=["device"])  # all default stages in one call
#   run(command="bash scripts/device-check.sh small full", carry=["device"])   # some of them
# Stages (scripts/device/<stage>.sh; each builds the engine first if this machine has not): build (CUDA engine,
# sm_90), small (the small model end to end: NVML telemetry, --fit, a 24 GiB emulated card, tune), full
# (Qwen3-30B-A3B shapes: first-N against last-N, the micro-batch), and model (not default: the performance
# model calibrated on the GPU). Each leaves its results and phases.txt (seconds per phase) in $OUT/<stage>/.
# DRY_RUN=1 runs the same on a machine without a GPU (CPU engine, RPC rig, tiny models) to check the scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(build small full)
OUT=${OUT:-/tmp/device-check-out}
mkdir -p "$OUT"
for stage in "${stages[@]}"; do
  [ -f "scripts/device/$stage.sh" ] || { echo "unknown stage $stage; known: build small full model" >&2; exit 2; }
  start=$(date +%s)
  status=0
  bash "scripts/device/$stage.sh" || status=$?
  echo "== stage $stage: exit $status after $(( $(date +%s) - start )) s" | tee -a "$OUT/stages.txt"
done
