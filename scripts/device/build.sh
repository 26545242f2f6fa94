#!/usr/bin/env bash
# Stage 1 of the device check: the CUDA engine for one architecture (sm_90: H100 and H200), only the three
# tools moebench runs, every core. Leaves build.txt, the build log and engines.txt in $OUT/build/.
source "$(dirname "$0")/common.sh"
phase "start"
$PY -c "import pynvml; pynvml.nvmlInit(); print('NVML:', pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)))" \
  2>&1 | tee "$STAGE_OUT/nvml.txt" || echo "NVML: none" | tee "$STAGE_OUT/nvml.txt"
phase "build"
if [ "${DRY_RUN:-0}" = 1 ]; then
  $MB engines build mainline | tee "$STAGE_OUT/build.txt"
else
  $MB engines build mainline --cuda --cuda-arch 90 --jobs "$(nproc)" | tee "$STAGE_OUT/build.txt"
  cp "$MOEBENCH_CACHE"/build/mainline-11434.0.0-cuda90.log "$STAGE_OUT/" 2>/dev/null || true
fi
$MB engines list | tee "$STAGE_OUT/engines.txt"
phase "done"
