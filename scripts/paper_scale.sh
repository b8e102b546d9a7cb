#!/usr/bin/env bash
# Paper-scale evidence on one CUDA GPU (issue 16), as one prepared run:
#   1. install the wheels the GPU machine lacks (carried in .whl/, see scripts/device_wheels.sh)
#   2. build the calf CNNs' paired training data once (CPU, cached under the build dir)
#   3. train the five calf CNNs with the paper's protocol (100 epochs, Adam 1e-4, batch 16)
#      as five concurrent processes on the one GPU
#   4. nacode bench --device cuda (the batched CNN engine's target: 20,000 slices/s)
#   5. if time remains: the breast chapter at the full profile
# Everything goes under $OUT (default _build/paper_scale): weights/ with the trainer's
# provenance JSON, logs/, bench_cuda.json, steps.tsv (step, seconds, exit status, note) and
# provenance.json.
#
#   scripts/paper_scale.sh            on the GPU machine
#   scripts/paper_scale.sh --smoke    the same steps at tiny sizes on the CPU (tests/test_paper_scale.py)
#
# Environment: OUT, PYTHON (default python3), TIME_LIMIT_S (seconds the whole run may take,
# default 480; step 5 starts only if its estimate BREAST_ESTIMATE_S fits), NACODE_COMMIT
# (recorded where the copy has no .git), NACODE_BUILD_DIR (caches; outside $OUT),
# TRAIN_BUDGET_S (per trainer on the GPU, default 300 s).
#
# Estimates for one H200 (not yet measured there): the data step (single-threaded NumPy) ran
# 88 s on this project's 2-core CI machine (1172 + 302 pairs per NSA, 360 MB cache); training
# is 5 × 100 epochs × 1172 slices × 3 × 8.0 GFLOP ≈ 14 PFLOP of TF32 convolutions, 3–8 min at
# 30–80 TFLOP/s, capped by TRAIN_BUDGET_S; the --smoke run took 80 s on 2 cores.
set -uo pipefail

SMOKE=0
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "paper_scale.sh: unknown argument '$arg' (use --smoke or nothing)" >&2; exit 2 ;;
  esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/_build/paper_scale}"
PYTHON="${PYTHON:-python3}"
TIME_LIMIT_S="${TIME_LIMIT_S:-480}"
BREAST_ESTIMATE_S="${BREAST_ESTIMATE_S:-240}"
# caches (the paired data) stay out of $OUT: only results travel back from a GPU machine
export NACODE_BUILD_DIR="${NACODE_BUILD_DIR:-$ROOT/_build/paper_scale_build}"
START=$(date +%s)

# step NAME NOTE COMMAND...: run, time, log to $OUT/logs/NAME.log, record in steps.tsv
step() {
  local name="$1" note="$2"; shift 2
  local begin ms rc
  begin=$(date +%s%N)
  echo "== $name: $*"
  "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - begin) / 1000000 ))
  printf '%s\t%d.%03d\t%d\t%s\n' "$name" $((ms / 1000)) $((ms % 1000)) "$rc" "$note" \
    >> "$OUT/steps.tsv"
  tail -n 3 "$OUT/logs/$name.log"
  return $rc
}

if [ "$SMOKE" = 1 ]; then
  DEVICE=cpu; EPOCHS=1; LIMIT=(--limit 6); PROFILE=quick; BUDGET=()
  BENCH=(--quick --only nufft_recon --only cnn_single)
else
  DEVICE=cuda; EPOCHS=100; LIMIT=(); PROFILE=full; BENCH=()
  # each trainer stops after the epoch that passes this (recorded in its provenance), so that
  # a slower GPU still returns weights within the device time
  BUDGET=(--time-budget "${TRAIN_BUDGET_S:-300}")
  "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
    echo "paper_scale.sh: no CUDA device visible to torch; run with --smoke on a CPU" >&2; exit 1; }
fi
mkdir -p "$OUT/logs" "$OUT/weights" || { echo "paper_scale.sh: cannot create $OUT" >&2; exit 1; }
printf 'step\tseconds\texit\tnote\n' > "$OUT/steps.tsv"
if [ "$SMOKE" = 0 ]; then
  if [ -d .whl ] && ls .whl/*.whl > /dev/null 2>&1; then
    step wheels "carried wheels into /tmp/site" "$PYTHON" -m pip install -q --no-index \
      --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# 2. the paired data, once (the five trainers then read the cache)
step data "calf training/validation pairs" "$PYTHON" -c "
import sys
from nacode.studies import calf
limit = {'train': int(sys.argv[1]), 'val': int(sys.argv[1]) // 3} if sys.argv[1] != '0' else None
data = calf.datasets(None, ('train', 'val'), limit=limit, progress=False)
print({split: {nsa: len(pair[0]) for nsa, pair in d.items()} for split, d in data.items()})
" "${LIMIT[1]:-0}" || exit 1

# 3. five concurrent trainers on the one device
train_all() {
  local pids=() nsa rc=0
  for nsa in 50 40 30 20 10; do
    "$PYTHON" -m nacode train calf --nsa "$nsa" --epochs "$EPOCHS" --device "$DEVICE" \
      --profile "$PROFILE" --out "$OUT/weights" "${LIMIT[@]}" "${BUDGET[@]}" \
      > "$OUT/logs/train_nsa$nsa.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  grep -h "best validation loss" "$OUT"/logs/train_nsa*.log
  return $rc
}
step train "five calf CNNs, $EPOCHS epochs, concurrent" train_all || exit 1

# 4. the benchmarks on the device
step bench "nacode bench --device $DEVICE" "$PYTHON" -m nacode bench --device "$DEVICE" \
  "${BENCH[@]}" --out "$OUT/bench_$DEVICE.json" || exit 1

# 5. the breast chapter at the full profile, if its estimate fits what is left
ELAPSED=$(( $(date +%s) - START ))
if [ "$SMOKE" = 1 ]; then
  printf 'breast\t0\t0\tskipped in --smoke (the quick chapter alone takes minutes; tests/test_breast_study.py covers its code)\n' >> "$OUT/steps.tsv"
elif [ $(( ELAPSED + BREAST_ESTIMATE_S )) -le "$TIME_LIMIT_S" ]; then
  step breast "breast chapter, full profile" timeout $(( TIME_LIMIT_S - ELAPSED )) \
    "$PYTHON" -m nacode book --profile full --only breast --device cuda --no-build || true
  cp -r "$NACODE_BUILD_DIR/results/breast" "$OUT/breast_full" 2>/dev/null || true
else
  printf 'breast\t0\t0\tskipped: %s s used of %s, estimate %s s\n' "$ELAPSED" "$TIME_LIMIT_S" \
    "$BREAST_ESTIMATE_S" >> "$OUT/steps.tsv"
fi

"$PYTHON" - "$OUT" "$SMOKE" <<'EOF'
import json, sys, time
from pathlib import Path

from nacode.provenance import git_commit, package_versions

out, smoke = Path(sys.argv[1]), sys.argv[2] == "1"
commit = git_commit(Path.cwd())  # NACODE_COMMIT where the copy has no .git
try:
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
except Exception:  # the record is still written
    gpu = None
steps = [dict(zip(("step", "seconds", "exit", "note"), line.split("\t", 3)))
         for line in (out / "steps.tsv").read_text(encoding="utf-8").splitlines()[1:]]
record = {"smoke": smoke, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
          "gpu": gpu, **commit, "versions": package_versions(), "steps": steps,
          "weights": sorted(p.name for p in (out / "weights").glob("*.safetensors"))}
tmp = out / "provenance.json.tmp"
tmp.write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
tmp.replace(out / "provenance.json")
print(f"written: {out / 'provenance.json'}")
EOF
echo "paper_scale.sh: done in $(( $(date +%s) - START )) s; see $OUT/steps.tsv"
