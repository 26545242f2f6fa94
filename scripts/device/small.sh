#!/usr/bin/env bash
# Stage 2 of the device check: the `small` synthetic model end to end on the GPU: a sweep with NVML telemetry,
# --fit, the baselines, first-N and last-N under an emulated 24 GiB card (examples/device-small.yaml), its
# report, and `moebench tune` under a budget that forces offload. Leaves the results in $OUT/small/.
source "$(dirname "$0")/common.sh"
need_engine
phase "sweep"
config=$(stage_config examples/device-small.yaml)
$MB plan "$config" > "$STAGE_OUT/plan.txt"
$MB run "$config" --out "$STAGE_OUT/results" 2>&1 | tail -30
phase "report"
$MB report "$STAGE_OUT/results/device-small" | tail -5
phase "tune"
if [ "${DRY_RUN:-0}" = 1 ]; then where=(--rpc-rig); else where=(--device CUDA0); fi
$MB tune synth:small --engine "$ENGINE" "${where[@]}" --vram-budget-mib 80 --max-runs 6 --processes 2 \
  --out "$STAGE_OUT/tune" 2>&1 | tail -25
phase "done"
