#!/usr/bin/env bash
# Starts or resumes a long run outside the checkout, where a new checkout cannot take it away:
#   scripts/long_run.sh CONFIG[:VARIANT] SEED [CORE]
#   e.g. scripts/long_run.sh configs/iwae.py:vae_k1_l1 0 1 >> ~/vae_jax_runs/logs/iwae0.log 2>&1 &
# The workdir is $RUNS/<config>_<variant>/seed=<SEED> (RUNS defaults to ~/vae_jax_runs); the
# run trains from a snapshot of the source in $SOURCE (default $RUNS/src; made from this
# checkout's HEAD the first time), so later edits cannot change a run half-way; a run resumes
# with the SOURCE it started with, and a new SOURCE folder starts new runs on today's code;
# pinned to one core (CORE, default 1). Rerun the same command to continue from the latest checkpoint. Needs a virtual
# environment with vae_jax's dependencies: $VENV (default $RUNS/venv). DRY_RUN=1 prints the
# command instead.
set -euo pipefail
SPEC=${1:?config[:variant]}; SEED=${2:?seed}; CORE=${3:-1}
RUNS=${RUNS:-$HOME/vae_jax_runs}; VENV=${VENV:-$RUNS/venv}; SOURCE=${SOURCE:-$RUNS/src}
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$SOURCE" ]; then
  mkdir -p "$SOURCE"
  git -C "$CHECKOUT" archive HEAD | tar -x -C "$SOURCE"
  git -C "$CHECKOUT" rev-parse HEAD > "$SOURCE/COMMIT"
fi
CONFIG=${SPEC%%:*}; VARIANT=${SPEC#"$CONFIG"}; VARIANT=${VARIANT#:}
NAME=$(basename "$CONFIG" .py)${VARIANT:+_$VARIANT}  # e.g. iwae_vae_k1_l1
COMMAND=(taskset -c "$CORE" python -m experiments.train --config="$SPEC" --config.seed="$SEED"
         --workdir="$RUNS/$NAME/seed=$SEED")
if [ -n "${DRY_RUN:-}" ]; then echo "${COMMAND[@]}"; exit 0; fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
cd "$SOURCE"
export TFDS_DATA_DIR=${TFDS_DATA_DIR:-$CHECKOUT/../shared/tensorflow_datasets}
exec "${COMMAND[@]}"
