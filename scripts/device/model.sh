#!/usr/bin/env bash
# Optional stage (not in the default list): the performance model calibrated on the GPU and checked on models it
# was not calibrated on (benchmarks/model_accuracy.py). Leaves model_accuracy.txt and the calibration in $OUT/model/.
source "$(dirname "$0")/common.sh"
need_engine
phase "calibrate and predict"
if [ "${DRY_RUN:-0}" = 1 ]; then acc=(--engines mainline --rpc-rig); else acc=(--engines "$ENGINE" --device CUDA0); fi
MOEBENCH_CALIBRATION="$STAGE_OUT/calibration" $PY benchmarks/model_accuracy.py "${acc[@]}" --processes 2 \
  --out "$STAGE_OUT/accuracy" 2>&1 | tail -60 | tee "$STAGE_OUT/model_accuracy.txt" || true
phase "done"
