#!/usr/bin/env bash
# Download, here, the wheels a GPU machine lacks for scripts/paper_scale.sh, into .whl/
# (ignored by git; name it in the device tool's `carry`). Versions are requirements.lock's;
# the machine runs CPython 3.12 on x86-64 (see the device tool's README).
#
#   scripts/device_wheels.sh           what training and `nacode bench` import
#   scripts/device_wheels.sh --book    also the notebook stack for the breast chapter (step 5)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
NAMES=(sigpy PyWavelets finufft nibabel pydicom pingouin pandas_flavor nilearn)
if [ "${1:-}" = "--book" ]; then
  NAMES+=(papermill jupytext nbformat nbclient ipykernel jupyter_client jupyter_core myst-nb
          ansicolors tenacity entrypoints comm debugpy ipython matplotlib-inline tornado pyzmq
          traitlets nest-asyncio fastjsonschema jsonschema jsonschema-specifications referencing
          rpds-py mdit-py-plugins myst-parser sphinx docutils)
fi
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
for name in "${NAMES[@]}"; do
  pin=$(grep -i -E "^${name//[-_]/[-_]}==" requirements.lock || true)
  [ -n "$pin" ] || { echo "device_wheels.sh: $name is not in requirements.lock" >&2; exit 1; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d .whl "$pin" 2>&1 | grep -v "^WARNING: Location" || true
done
du -sh .whl
