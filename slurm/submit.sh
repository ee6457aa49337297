#!/bin/bash
# Submit CleanRLHF jobs to SLURM from the repository root. Prints the job id.
#
#   slurm/submit.sh array --env-ids "Hopper-v5 Walker2d-v5" --seeds "1 2 3" [--parallel 4] \
#       [--script framework/sac_rlhf.py] [--runs-dir DIR] [--checkpoint-frequency 25000] [-- SCRIPT FLAGS]
#   slurm/submit.sh sweep --workers 4 --config sweep_config/Hopper-v5.yaml [--study NAME] [--count 5] \
#       [--max-trials 40] [--storage sweeps/optuna.log] [--runs-dir DIR] [--algorithm sac-rlhf] [--seeds "1 2"] \
#       [--backend optuna|wandb] [-- FLAGS FOR EVERY RUN]
#   slurm/submit.sh suite --tasks 8 -- --tier standard --force [--results-dir /shared/dir] [OTHER SUITE FLAGS]
#
# Cluster options (partition, account, time limit, GPUs) come from sbatch's own environment variables, e.g.
#   SBATCH_PARTITION=gpu SBATCH_TIMELIMIT=12:00:00 SBATCH_GPUS=1 slurm/submit.sh array ...
# or from SBATCH_EXTRA="--qos=normal --account=lab" (word-split and passed to sbatch).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p slurm/logs
kind=${1:?usage: slurm/submit.sh array|sweep|suite [options] [-- flags]}
shift
read -r -a extra <<< "${SBATCH_EXTRA:-}"
case "$kind" in
  array)
    env_ids="" seeds="1" parallel=0 script=framework/sac_rlhf.py runs_dir="" ckpt=25000
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
      case "$1" in
        --env-ids) env_ids=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --parallel) parallel=$2; shift 2 ;;
        --script) script=$2; shift 2 ;;
        --runs-dir) runs_dir=$2; shift 2 ;;
        --checkpoint-frequency) ckpt=$2; shift 2 ;;
        *) echo "submit.sh array: unknown option $1" >&2; exit 2 ;;
      esac
    done
    [ "${1:-}" = "--" ] && shift
    [ -n "$env_ids" ] || { echo "submit.sh array: --env-ids is required" >&2; exit 2; }
    [ -f "$script" ] || { echo "submit.sh array: no script $script" >&2; exit 2; }
    read -r -a e <<< "$env_ids"
    read -r -a s <<< "$seeds"
    n=$(( ${#e[@]} * ${#s[@]} ))
    array="0-$(( n - 1 ))"
    [ "$parallel" -gt 0 ] && array="$array%$parallel"
    exports="ALL,CLEANRLHF_ENV_IDS=$env_ids,CLEANRLHF_SEEDS=$seeds,CLEANRLHF_SCRIPT=$script"
    exports="$exports,CLEANRLHF_CHECKPOINT_FREQUENCY=$ckpt"
    [ -n "$runs_dir" ] && exports="$exports,CLEANRLHF_RUNS_DIR=$runs_dir"
    sbatch --parsable --array="$array" --export="$exports" "${extra[@]}" slurm/array.sbatch "$@"
    ;;
  sweep)
    workers=1 args=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
      case "$1" in
        --workers) workers=$2; shift 2 ;;
        --config) args+=(--config-filename "$2"); shift 2 ;;
        --study) args+=(--sweep-id "$2"); shift 2 ;;
        --count) args+=(--sweep-count "$2"); shift 2 ;;
        --max-trials) args+=(--max-trials "$2"); shift 2 ;;
        --storage) args+=(--storage "$2"); shift 2 ;;
        --runs-dir) args+=(--runs-dir "$2"); shift 2 ;;
        --backend) args+=(--backend "$2"); shift 2 ;;
        --algorithm) args+=(--algorithm "$2"); shift 2 ;;
        --seeds) read -r -a sd <<< "$2"; args+=(--seeds "${sd[@]}"); shift 2 ;;
        *) echo "submit.sh sweep: unknown option $1" >&2; exit 2 ;;
      esac
    done
    # validate the configuration here, before anything is queued
    uv run --frozen python framework/sweep.py "${args[@]}" --check "$@" >/dev/null
    sbatch --parsable --array="0-$(( workers - 1 ))" "${extra[@]}" slurm/sweep.sbatch "${args[@]}" "$@"
    ;;
  suite)
    tasks=1
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
      case "$1" in
        --tasks) tasks=$2; shift 2 ;;
        *) echo "submit.sh suite: unknown option $1" >&2; exit 2 ;;
      esac
    done
    [ "${1:-}" = "--" ] && shift
    [ "$tasks" -ge 1 ] 2>/dev/null || { echo "submit.sh suite: --tasks must be a number >= 1, got $tasks" >&2; exit 2; }
    # check the flags here (and show what is left to run), before anything is queued
    uv run --frozen python "${CLEANRLHF_SUITE:-benchmarks/suite.py}" "$@" --list >&2
    sbatch --parsable --array="0-$(( tasks - 1 ))" "${extra[@]}" slurm/suite.sbatch "$@"
    ;;
  *) echo "submit.sh: the first argument is array, sweep or suite, got $kind" >&2; exit 2 ;;
esac
