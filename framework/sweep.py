"""Hyperparameter sweeps over an algorithm script's flags: locally with Optuna, or as a Weights & Biases sweep.

Both backends read the same YAML, in W&B's sweep schema (``method`` grid/random/bayes, ``metric.name/goal``,
``parameters`` with ``value``/``values``/``distribution`` + ``min``/``max``). Every key is checked against the
chosen script's flags before anything runs. A trial runs the script once per seed of ``--seeds`` (never a searched
parameter), in parallel subprocesses, reads the metric each run logged to TensorBoard under the YAML's name, reports
the mean over seeds at every evaluation step (Optuna prunes on these), and scores the trial with the mean over seeds
of each run's last value.

    uv run python framework/sweep.py --backend optuna --config-filename sweep_config/Hopper-v5.yaml \
        --sweep-count 20 --workers 2 -- --total-timesteps 100000
    uv run python framework/sweep.py --backend optuna --config-filename sweep_config/Hopper-v5.yaml --best

Flags after ``--`` go unchanged to every run (budgets, for example).

This file is the command line; the parts live in the library: the YAML and its checks in rlhf/sweep_space.py, a
trial's runs in rlhf/sweep_trials.py, the backends in rlhf/sweep_optuna.py and rlhf/sweep_wandb.py, ``--best`` in
rlhf/sweep_best.py.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro

from rlhf.sweep_best import run_best
from rlhf.sweep_optuna import run_optuna, summarize
from rlhf.sweep_space import REPO_ROOT, SweepConfigError, SweepSpec, load_spec
from rlhf.sweep_trials import stop_on_sigterm
from rlhf.sweep_wandb import run_wandb


@dataclass
class Args:
    config_filename: str = ""
    """sweep configuration in W&B's schema, e.g. sweep_config/Hopper-v5.yaml"""
    algorithm: Literal["sac-rlhf", "pref-ppo", "sac", "ppo"] = "sac-rlhf"
    """the script whose flags are searched"""
    backend: Literal["optuna", "wandb"] = "optuna"
    """optuna: local, no account (study in --storage); wandb: a W&B sweep (needs an account and the network)"""
    sweep_count: int = 10
    """trials to run in this call (over all workers)"""
    project_name: str = "CleanRLHF"
    """W&B project (wandb backend)"""
    entity: str | None = None
    """W&B entity, team or user (wandb backend)"""
    sweep_id: str | None = None
    """wandb: join this existing sweep; optuna: the study name (default: the YAML's name, else the file's stem)"""
    storage: str = "sweeps/optuna.log"
    """optuna storage: a journal file (*.log, safe for several processes and NFS), a *.db SQLite file or an RDB
    URL (sqlite:///..., postgresql://...); relative paths are from the repository root"""
    workers: int = 1
    """optuna worker processes sharing the study"""
    seeds: tuple[int, ...] = (1, 2)
    """seeds every trial runs on (at least 2); the trial's value is the mean over them"""
    threads: int = 0
    """torch threads per training process (0: CPU cores // (workers x seeds), at least 1)"""
    pruner: Literal["median", "hyperband", "none"] = "median"
    """optuna pruner on the intermediate (per-evaluation) values; the YAML's early_terminate selects hyperband"""
    max_trials: int = 0
    """stop once the study holds this many complete or pruned trials (0: no limit); makes a requeued job finish"""
    sampler_seed: int = 0
    """seed of the optuna sampler (worker i uses sampler_seed + i)"""
    runs_dir: str = ""
    """where trial runs go (default: sweeps/runs/<study>/ at the repository root)"""
    best: bool = False
    """write the study's best configuration as scripts/<teacher>_<algorithm>_<env>.sh and run it on
    --held-out-seeds"""
    held_out_seeds: tuple[int, ...] = (101, 102)
    """seeds for --best's re-run, disjoint from --seeds"""
    scripts_dir: str = "scripts"
    """where --best writes the launch script and the study's result file (relative to the repository root)"""
    check: bool = False
    """only validate the configuration and exit"""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """logging verbosity"""


def check_args(args: Args) -> None:
    if not args.config_filename:
        raise SweepConfigError("--config-filename is required")
    if args.sweep_count < 0 or args.workers < 1 or args.threads < 0 or args.max_trials < 0:
        raise SweepConfigError("--sweep-count and --max-trials must be >= 0, --workers >= 1, --threads >= 0")
    if len(args.seeds) < 2 or len(set(args.seeds)) != len(args.seeds):
        raise SweepConfigError(f"--seeds needs at least 2 distinct seeds, got {list(args.seeds)}")
    if args.backend == "wandb" and args.workers != 1:
        raise SweepConfigError("--workers is for the optuna backend; start more W&B agents with --sweep-id instead")


def study_name_of(spec: SweepSpec, args: Args) -> str:
    return args.sweep_id or str(spec.raw.get("name") or spec.path.stem)


def main(args: Args, fixed: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    check_args(args)
    path = Path(args.config_filename)
    if not path.is_absolute() and not path.exists():
        path = REPO_ROOT / path
    spec = load_spec(path, args.algorithm, fixed)
    if args.check:
        print(f"{path}: valid ({spec.method}, {spec.goal} {spec.metric}, {len(spec.params)} parameters)")
        return {"valid": True}
    if args.backend == "wandb":
        if args.best:
            raise SweepConfigError("--best reads an optuna study; W&B shows a sweep's best run on its page")
        run_wandb(spec, args)
        return {}
    name = study_name_of(spec, args)
    if args.best:
        result = run_best(spec, args, name)
        held = result["held_out"]
        print(f"best trial #{result['best']['number']} ({spec.metric} {result['best']['value']:.2f} on seeds "
              f"{list(args.seeds)}): {held['mean']:.2f} +- {held['std']:.2f} on held-out seeds {held['seeds']}")  # fmt: skip
        print(
            f"wrote {result['launch_script_path']} and {result['launch_script'].rsplit('/', 1)[0]}/studies/{name}.json"
        )
        return result
    study = run_optuna(spec, args, name)
    print(summarize(study))
    return {"study": study}


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def cli(argv: list[str] | None = None) -> int:
    own, fixed = split_argv(sys.argv[1:] if argv is None else argv)
    args = tyro.cli(Args, args=own)
    stop_on_sigterm()
    try:
        main(args, fixed)
    except SweepConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
