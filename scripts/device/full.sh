#!/usr/bin/env bash
# Stage 3 of the device check: Qwen3-30B-A3B shapes (17.3 GB, written here) under an emulated 24 GiB card, the rows
# the published sweeps vary: first-N against last-N at equal VRAM, the micro-batch (examples/device-full.yaml).
# Leaves the results and report in $OUT/full/. A dry run uses the tiny model.
source "$(dirname "$0")/common.sh"
need_engine
phase "model"
if [ "${DRY_RUN:-0}" = 1 ]; then
  config=$(stage_config examples/device-full.yaml -e 's/qwen3-30b-a3b/tiny/' -e 's/n: 24/n: 4/')
else
  config=$(stage_config examples/device-full.yaml)
  $PY -c "from harness.models import synthetic_model; print(synthetic_model('qwen3-30b-a3b'))"
fi
$MB plan "$config" > "$STAGE_OUT/plan.txt"
phase "sweep"
$MB run "$config" --out "$STAGE_OUT/results" 2>&1 | tail -30
phase "report"
$MB report "$STAGE_OUT/results/device-full" | tail -5
phase "done"
