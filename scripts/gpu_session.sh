#!/usr/bin/env bash
# One lent GPU's measurements for issues 36 and 34, each part bounded in time (seconds in
# brackets) so that the default set fits one 10-minute command of the `run` tool:
#   launcher [200]  the design card's command into a new workdir, caches empty, then again
#                   with the compilation and decoded-data caches filled: wall seconds of each
#   accel    [90]   scripts.accelerator_check: mnist_epoch, iwae_eval, sweeps, memory
#   deep     [150]  scripts.accelerator_check: top_down_step, cifar10_step, deep_throughput
#                   (float32 and bfloat16, against the H200 SXM's dense peaks: FP32 67 TFLOP/s,
#                   BF16 989 TFLOP/s, from NVIDIA's published figures)
#   vamp     [80]   configs/vampprior.py :standard and :vamp for 3 epochs: seconds an epoch
#   steps    [170]  scripts.step_time --profile=8 of mnist.py:conv, vampprior.py:vamp and
#                   top_down.py:mnist: seconds a step and the costliest kernels (not default)
#
#   here (a dry run on the CPU, small counts):  SMOKE=1 bash scripts/gpu_session.sh launcher
#   there:  bash ../shared/offline_gpu/prepare.sh here, then with the run tool, carry ['.gpu']:
#           bash .gpu/run.sh bash scripts/gpu_session.sh [PART ...]
# Logs go to $OUT/gpu_session/ (OUT: the run tool's folder, else /tmp); the last lines printed
# are a summary to copy into docs/results/speed.md with the device and versions.
set -u
out=${OUT:-/tmp}/gpu_session; mkdir -p "$out"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
python=${PYTHON:-python3}
smoke=${SMOKE:-}
parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(launcher accel deep vamp)
summary=()

timed() {  # NAME LIMIT COMMAND...: runs COMMAND under a time limit (SIGTERM), logs, records wall
  local name=$1 limit=$2; shift 2
  local start; start=$(date +%s.%N)
  timeout -s TERM "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  local wall; wall=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  summary+=("$name: rc=$rc wall=${wall}s$( [ $rc -eq 124 ] && echo " (stopped at ${limit}s)")")
  echo "${summary[-1]}"
}

epochs_line() {  # LOG: the last training line's epoch and steps/s
  grep -o 'steps_per_sec=[0-9.]*.*epoch=[0-9.]*' "$1" | tail -1 | sed 's/, .*epoch=/ epoch=/'
}

for part in "${parts[@]}"; do
  case $part in
    launcher)
      epochs=(); [ -n "$smoke" ] && epochs=(--config.num_epochs=1)
      for attempt in cold warm; do
        timed "launcher_$attempt" 100 $python -m experiments.train --config=configs/mnist.py \
          --workdir="$work/mnist_$attempt" --compilation_cache="$work/jax_cache" \
          --config.data.decoded_cache="$work/decoded" "${epochs[@]}"
      done ;;
    accel)
      scale=(); [ -n "$smoke" ] && scale=(--scale=smoke)
      timed accel 90 $python -m scripts.accelerator_check "${scale[@]}" \
        --only=mnist_epoch,iwae_eval,sweeps,memory --compilation_cache="$work/jax_cache"
      grep '^{' "$out/accel.log" ;;
    deep)
      scale=(); [ -n "$smoke" ] && scale=(--scale=smoke)
      timed deep 150 $python -m scripts.accelerator_check "${scale[@]}" \
        --only=top_down_step,cifar10_step,deep_throughput --peak_tflops=float32:67,bfloat16:989 \
        --compilation_cache="$work/jax_cache"
      grep '^{' "$out/deep.log" ;;
    vamp)
      for prior in standard vamp; do
        timed "vamp_$prior" 40 $python -m experiments.train --config=configs/vampprior.py:$prior \
          --workdir="$work/vamp_$prior" --config.num_epochs=$([ -n "$smoke" ] && echo 1 || echo 3) \
          --compilation_cache="$work/jax_cache"
        summary+=("  vamp_$prior last training line: $(epochs_line "$out/vamp_$prior.log")")
      done ;;
    steps)
      count=$([ -n "$smoke" ] && echo 2 || echo 20)
      deep=top_down.py:mnist; [ -n "$smoke" ] && deep=top_down.py:mnist_small  # a CPU's pace
      for config in mnist.py:conv:40 vampprior.py:vamp:40 $deep:90; do
        limit=${config##*:}; config=${config%:*}
        timed "steps_${config%%.py*}" "$limit" $python -m scripts.step_time --threads=0 \
          --config="configs/$config" --steps="$count" --profile=8
        grep '^{' "$out/steps_${config%%.py*}.log"
      done ;;
    *) echo "unknown part $part: choose launcher, accel, deep, vamp, steps" >&2; exit 2 ;;
  esac
done
echo; echo "== summary ($(date -u +%FT%TZ))"; printf '%s\n' "${summary[@]}"
