#!/usr/bin/env bash
# Trains the `seeds` sweep of each config side by side for at most TRAIN_SECONDS (a SIGTERM
# then checkpoints and stops each sweep: rerunning resumes it), evaluates every run's best
# checkpoint on the whole test split in parallel, and packs each config's results (metrics,
# evaluation reports, images, logs; not the checkpoints) into $OUT: one prepared command for a
# lent accelerator.
#   scripts/sweep_and_evaluate.sh ROOT TRAIN_SECONDS CONFIG:VARIANT [CONFIG:VARIANT ...]
#   e.g. bash .gpu/run.sh bash scripts/sweep_and_evaluate.sh /tmp/rows 390 \
#          configs/vampprior.py:standard configs/vampprior.py:vamp
# Extra training flags come from $TRAIN_FLAGS, extra evaluation flags from $EVAL_FLAGS (a CPU
# trial run: TRAIN_FLAGS='--config.num_epochs=1' EVAL_FLAGS='--num_examples=20').
set -uo pipefail
ROOT=${1:?root folder}; TRAIN_SECONDS=${2:?seconds of training}; shift 2
[ $# -gt 0 ] || { echo "error: name at least one CONFIG:VARIANT" >&2; exit 2; }
OUT=${OUT:-$ROOT/out}; mkdir -p "$ROOT/logs" "$OUT"
# Each process takes its share of an accelerator's memory instead of 75 % of it.
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-$(python3 -c "print(round(0.9 / $#, 3))")}
name_of() { local spec=${1#configs/}; spec=${spec%%:*}; spec=${spec%.py}; echo "${spec}_${1#*:}" | tr -c 'A-Za-z0-9_\n' _; }

start=$(date +%s)
pids=()
for spec in "$@"; do
  name=$(name_of "$spec")
  # shellcheck disable=SC2086
  timeout -s TERM "$TRAIN_SECONDS" python3 -m experiments.sweep --config="$spec" --sweep=seeds \
      --workdir="$ROOT/$name" ${TRAIN_FLAGS:-} > "$ROOT/logs/train_$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; echo "sweep process $pid exited with $?"; done
echo "training: $(( $(date +%s) - start )) s"

start=$(date +%s)
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.1
pids=()
for spec in "$@"; do
  name=$(name_of "$spec")
  for workdir in "$ROOT/$name"/*/; do
    [ -f "$workdir/config.json" ] || continue
    run=$(basename "$workdir")
    # shellcheck disable=SC2086
    python3 -m experiments.evaluate --workdir="$workdir" --checkpoint=best \
        --evals=elbo,importance_sampled,active_units ${EVAL_FLAGS:-} \
        > "$ROOT/logs/evaluate_${name}_$run.log" 2>&1 &
    pids+=($!)
  done
done
for pid in "${pids[@]}"; do wait "$pid"; echo "evaluate process $pid exited with $?"; done
echo "evaluation: $(( $(date +%s) - start )) s"

for spec in "$@"; do
  name=$(name_of "$spec")
  python3 -m scripts.results_table --root="$ROOT/$name" 2>/dev/null
  grep -h "log p(x)\|stopped\|Nothing to train" "$ROOT"/logs/*"$name"* | tail -n 20
  tar -czf "$OUT/${name}_results.tgz" -C "$ROOT" --exclude=checkpoints --exclude=checkpoints_best \
      "$name" logs
done
ls -l "$OUT"
