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
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
import typing
from collections.abc import Callable
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = REPO_ROOT / "framework"
ALGORITHMS = {"sac-rlhf": "sac_rlhf", "pref-ppo": "pref_ppo", "sac": "sac", "ppo": "ppo"}
# what every script logs at each evaluation (rlhf/evaluate.py); tests/test_sweep.py checks a real run logs them
EVAL_METRICS = ("eval/mean_return", "eval/std_return", "eval/min_return", "eval/max_return", "eval/mean_length")
TOP_LEVEL_KEYS = {"program", "method", "metric", "parameters", "name", "description", "command", "run_cap", "project",
                  "entity", "early_terminate"}  # fmt: skip
PARAMETER_KEYS = {"value", "values", "distribution", "min", "max", "q"}
DISTRIBUTIONS = {"constant", "categorical", "int_uniform", "uniform", "q_uniform", "log_uniform",
                 "log_uniform_values", "q_log_uniform_values"}  # fmt: skip
# flags a sweep may not set: the seeds are --seeds, the rest is how the sweep runs a trial
RESERVED = {"seed", "resume", "runs_dir", "track", "progress_bar", "threads", "wandb_project_name", "wandb_entity"}
POLL_SECONDS = 2.0

log = logging.getLogger("cleanrlhf.sweep")


class SweepConfigError(ValueError):
    """A sweep YAML or sweep flag that cannot run; reported in one line with exit status 2."""


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


# ---- the configuration -------------------------------------------------------------------------------------------


@dataclass
class Param:
    name: str  # the script's dataclass field
    kind: str  # constant | categorical | int_uniform | uniform | q_uniform | log_uniform_values | q_log_uniform_values
    values: tuple = ()
    low: float = 0.0
    high: float = 0.0
    q: float | None = None


@dataclass
class SweepSpec:
    path: Path
    raw: dict
    algorithm: str
    method: str
    metric: str
    goal: str
    params: dict[str, Param]
    fixed: list[str]  # flags after `--`, given to every run
    target: float | None = None
    hyperband: dict | None = None

    @property
    def script(self) -> Path:
        return FRAMEWORK / f"{ALGORITHMS[self.algorithm]}.py"

    @property
    def direction(self) -> str:
        return "maximize" if self.goal == "maximize" else "minimize"

    def env_id(self, params: dict[str, Any]) -> str:
        for flags in (flag_dict(self.fixed), {f"--{k.replace('_', '-')}": str(v) for k, v in params.items()}):
            if "--env-id" in flags:
                return flags["--env-id"]
        return script_args_type(self.algorithm)().env_id


def script_args_type(algorithm: str):
    """The ``Args`` dataclass of the algorithm's script (framework/ is an import root of the installed project)."""
    import importlib

    return importlib.import_module(ALGORITHMS[algorithm]).Args


def flag_dict(argv: list[str]) -> dict[str, str]:
    out, key = {}, None
    for token in argv:
        if token.startswith("--"):
            key = token.split("=", 1)[0].replace("_", "-")
            out[key] = token.split("=", 1)[1] if "=" in token else ""
        elif key is not None:
            out[key] = token
    return out


def to_flags(args_type, values: dict[str, Any]) -> list[str]:
    """Script flags for field -> value (booleans as --x / --no-x, as tyro writes them)."""
    hints = typing.get_type_hints(args_type)
    out = []
    for name, value in values.items():
        flag = name.replace("_", "-")
        if hints.get(name) is bool:
            out.append(f"--{flag}" if value in (True, "true", "True", 1) else f"--no-{flag}")
        else:
            out += [f"--{flag}", str(value)]
    return out


def _parses(args_type, argv: list[str]) -> bool:
    try:
        with redirect_stderr(io.StringIO()):
            tyro.cli(args_type, args=argv)
        return True
    except SystemExit:
        return False


def _number(where: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SweepConfigError(f"{where}: {key} must be a number, got {value!r}")
    return value


def parse_param(where: str, name: str, spec) -> Param:
    if not isinstance(spec, dict):
        raise SweepConfigError(f"{where}: expected a mapping with value, values or distribution, got {spec!r}")
    unknown = set(spec) - PARAMETER_KEYS
    if "parameters" in spec:
        raise SweepConfigError(f"{where}: nested parameters are not supported (the scripts' flags are flat)")
    if unknown:
        raise SweepConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(PARAMETER_KEYS)}")
    dist = spec.get("distribution")
    if dist is None:  # W&B infers it: value -> constant, values -> categorical, min/max -> int or float uniform
        if "value" in spec:
            dist = "constant"
        elif "values" in spec:
            dist = "categorical"
        elif "min" in spec and "max" in spec:
            both_int = all(isinstance(spec[k], int) and not isinstance(spec[k], bool) for k in ("min", "max"))
            dist = "int_uniform" if both_int else "uniform"
        else:
            raise SweepConfigError(f"{where}: give value, values, or distribution with min and max")
    if dist not in DISTRIBUTIONS:
        raise SweepConfigError(f"{where}: distribution {dist!r} is not supported; use one of {sorted(DISTRIBUTIONS)}")
    if dist == "constant":
        if "value" not in spec or len(spec) > 1 + ("distribution" in spec):
            raise SweepConfigError(f"{where}: a constant takes exactly one 'value'")
        return Param(name, "constant", (spec["value"],))
    if dist == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values or set(spec) - {"values", "distribution"}:
            raise SweepConfigError(f"{where}: categorical takes a non-empty list 'values' and nothing else")
        return Param(name, "categorical", tuple(values))
    if set(spec) & {"value", "values"} or "min" not in spec or "max" not in spec:
        raise SweepConfigError(f"{where}: distribution {dist} takes min and max (not value/values)")
    low, high = _number(where, "min", spec["min"]), _number(where, "max", spec["max"])
    if not low < high:
        raise SweepConfigError(f"{where}: min ({low}) must be below max ({high})")
    q = spec.get("q")
    if (q is not None) != dist.startswith("q_"):
        raise SweepConfigError(f"{where}: 'q' is required by q_* distributions and only allowed there")
    if q is not None and _number(where, "q", q) <= 0:
        raise SweepConfigError(f"{where}: q must be positive, got {q}")
    if dist == "int_uniform" and not all(isinstance(v, int) for v in (low, high)):
        raise SweepConfigError(f"{where}: int_uniform needs integer min and max")
    if dist == "log_uniform":  # W&B: min and max are natural-log exponents
        return Param(name, "log_uniform_values", low=math.exp(low), high=math.exp(high))
    if dist.endswith("log_uniform_values") and low <= 0:
        raise SweepConfigError(f"{where}: {dist} needs min > 0, got {low}")
    return Param(name, dist, low=low, high=high, q=q)


def candidate_values(p: Param) -> list:
    """Values that stand for the parameter's range when checking it against the script's flag types."""
    if p.values:
        return list(p.values)
    if p.kind == "int_uniform":
        return [int(p.low), int(p.high)]
    return [p.low, p.high]


def load_spec(path: str | Path, algorithm: str, fixed: list[str] | None = None) -> SweepSpec:
    """Read and check a sweep YAML against the script's flags; raises SweepConfigError with a one-line message."""
    path = Path(path)
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise SweepConfigError(f"{where}: cannot read the sweep configuration ({str(e).splitlines()[0]})") from e
    if not isinstance(raw, dict):
        raise SweepConfigError(f"{where}: expected a mapping at the top level")
    unknown = set(raw) - TOP_LEVEL_KEYS
    if unknown:
        raise SweepConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_LEVEL_KEYS)}")
    method = raw.get("method")
    if method not in ("grid", "random", "bayes"):
        raise SweepConfigError(f"{where}: method must be grid, random or bayes, got {method!r}")
    metric = raw.get("metric")
    if not isinstance(metric, dict) or set(metric) - {"name", "goal", "target"} or "name" not in metric:
        raise SweepConfigError(f"{where}: metric must be a mapping with name, goal (and target)")
    if metric["name"] not in EVAL_METRICS:
        raise SweepConfigError(
            f"{where}: metric {metric['name']!r} is not logged by the scripts at evaluations; use one of {EVAL_METRICS}"
        )
    goal = metric.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        raise SweepConfigError(f"{where}: metric.goal must be minimize or maximize, got {goal!r}")
    target = metric.get("target")
    if target is not None:
        target = _number(where, "metric.target", target)
    program = raw.get("program")
    if program is not None and Path(str(program)).stem != ALGORITHMS[algorithm]:
        raise SweepConfigError(f"{where}: program {program!r} does not match --algorithm {algorithm}")
    early = raw.get("early_terminate")
    if early is not None and (not isinstance(early, dict) or early.get("type") != "hyperband"):
        raise SweepConfigError(f"{where}: early_terminate supports only type: hyperband")
    if early is not None and set(early) - {"type", "min_iter", "max_iter", "eta", "s", "strict"}:
        raise SweepConfigError(f"{where}: early_terminate: unknown key(s) {sorted(set(early) - {'type'})}")
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepConfigError(f"{where}: parameters must be a non-empty mapping")

    args_type = script_args_type(algorithm)
    fields = {f.name for f in dataclasses.fields(args_type)}
    script = f"{ALGORITHMS[algorithm]}.py"
    fixed = list(fixed or [])
    fixed_flags = {"--" + k.removeprefix("--").removeprefix("no-") for k in flag_dict(fixed)}
    params: dict[str, Param] = {}
    for key, pspec in parameters.items():
        name = str(key).lstrip("-").replace("-", "_")
        pwhere = f"{where}: parameter {key!r}"
        if name in RESERVED:
            why = "seeds are set by --seeds, never searched" if name == "seed" else "it is set by the sweep itself"
            raise SweepConfigError(f"{pwhere}: cannot be swept ({why})")
        if name not in fields:
            raise SweepConfigError(f"{pwhere} is not a flag of {script}")
        if name in params:
            raise SweepConfigError(f"{pwhere} is given twice")
        flag = "--" + name.replace("_", "-")
        p = parse_param(pwhere, name, pspec)
        if flag in fixed_flags:
            if p.kind != "constant":
                raise SweepConfigError(f"{pwhere} is searched and also given after '--'")
            continue  # a flag after `--` overrides the YAML's constant (e.g. a tiny budget for a local study)
        if method == "grid" and p.kind not in ("constant", "categorical"):
            raise SweepConfigError(f"{pwhere}: method grid needs value or values, not a {p.kind} distribution")
        for value in candidate_values(p):
            if not _parses(args_type, to_flags(args_type, {name: value})):
                raise SweepConfigError(f"{pwhere}: {value!r} is not a valid value of {flag} of {script}")
        params[name] = p
    if not _parses(args_type, fixed):
        raise SweepConfigError(f"flags after '--' are not valid flags of {script}: {shlex.join(fixed)}")
    for name in ("seed", "resume", "runs_dir", "threads", "track"):
        if "--" + name.replace("_", "-") in fixed_flags:
            raise SweepConfigError(f"--{name.replace('_', '-')} after '--' is set by the sweep itself")
    searched = [p for p in params.values() if p.kind != "constant"]
    if not searched:
        raise SweepConfigError(f"{where}: no parameter is searched (all are constants)")
    return SweepSpec(path, raw, algorithm, method, metric["name"], goal, params, fixed, target, early)


# ---- running one trial -------------------------------------------------------------------------------------------


def default_threads(workers: int, seeds: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers * seeds))


def _run_dir(root: Path) -> Path | None:
    dirs = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    return dirs[0] if len(dirs) == 1 else None


def _metric_series(root: Path, metric: str) -> dict[int, float]:
    from rlhf.runs import read_scalars

    run_dir = _run_dir(root)
    if run_dir is None:
        return {}
    try:
        return {s.step: s.value for s in read_scalars(run_dir).get(metric, [])}
    except Exception:  # a file being written may be cut mid-record; the next poll reads it whole
        return {}


class TrialPruned(Exception):
    """Raised by a ``report`` callback to stop a trial's runs early."""


def run_trial(
    spec: SweepSpec,
    params: dict[str, Any],
    seeds: tuple[int, ...],
    trial_dir: Path,
    threads: int,
    report: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Run the script with ``params`` once per seed, in parallel; return the trial's value and per-seed results.

    ``report(step, mean over seeds)`` is called for every evaluation step all seeds have logged; it may raise
    :class:`TrialPruned`, which stops the runs (SIGTERM) and is re-raised."""
    args_type = script_args_type(spec.algorithm)
    base = spec.fixed + to_flags(args_type, params)
    procs: dict[int, subprocess.Popen] = {}
    logs: dict[int, Path] = {}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    for seed in seeds:
        root = trial_dir / f"seed_{seed}"
        root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(spec.script), *base, "--seed", str(seed), "--runs-dir", str(root)]
        cmd += ["--threads", str(threads), "--no-progress-bar", "--log-level", "WARNING"]
        logs[seed] = trial_dir / f"seed_{seed}.log"
        with open(logs[seed], "w") as out:
            out.write(shlex.join(cmd) + "\n")
            out.flush()
            procs[seed] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    reported: set[int] = set()

    def report_new(final: bool) -> None:
        series = [_metric_series(trial_dir / f"seed_{s}", spec.metric) for s in seeds]
        common = sorted(set.intersection(*(set(x) for x in series)) - reported)
        for step in common:
            reported.add(step)
            if report is not None:
                report(step, statistics.fmean(x[step] for x in series))

    try:
        while any(p.poll() is None for p in procs.values()):
            time.sleep(POLL_SECONDS)
            report_new(final=False)
        report_new(final=True)
    except BaseException:  # pruned, interrupted: stop the runs (they save a checkpoint on SIGTERM) and re-raise
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise
    results: dict[int, float] = {}
    for seed, p in procs.items():
        if p.returncode != 0:
            tail = logs[seed].read_text().strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"seed {seed} exited with status {p.returncode}: {tail[0]} (log: {logs[seed]})")
        series = _metric_series(trial_dir / f"seed_{seed}", spec.metric)
        if not series:
            raise RuntimeError(f"seed {seed}: the run logged no {spec.metric!r} (log: {logs[seed]})")
        results[seed] = series[max(series)]
    return {
        "value": statistics.fmean(results.values()),
        "per_seed": {str(s): v for s, v in results.items()},
        "run_dirs": {str(s): str(_run_dir(trial_dir / f"seed_{s}")) for s in seeds},
        "last_step": max(_metric_series(trial_dir / f"seed_{seeds[0]}", spec.metric)),
    }


# ---- optuna --------------------------------------------------------------------------------------------------------


def make_storage(storage: str):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if "://" in storage:
        return optuna.storages.RDBStorage(storage)
    path = Path(storage) if Path(storage).is_absolute() else REPO_ROOT / storage
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return optuna.storages.RDBStorage(f"sqlite:///{path}")
    return JournalStorage(JournalFileBackend(str(path)))


def suggest(trial, params: dict[str, Param]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, p in params.items():
        if p.kind == "constant":
            out[name] = p.values[0]
        elif p.kind == "categorical":
            out[name] = trial.suggest_categorical(name, list(p.values))
        elif p.kind == "int_uniform":
            out[name] = trial.suggest_int(name, int(p.low), int(p.high))
        elif p.kind == "uniform":
            out[name] = trial.suggest_float(name, p.low, p.high)
        elif p.kind == "q_uniform":
            out[name] = trial.suggest_float(name, p.low, p.high, step=p.q)
        elif p.kind == "log_uniform_values":
            out[name] = trial.suggest_float(name, p.low, p.high, log=True)
        else:  # q_log_uniform_values: log-uniform, rounded to a multiple of q (as W&B)
            raw = trial.suggest_float(name, p.low, p.high, log=True)
            out[name] = max(p.q, round(raw / p.q) * p.q)
    return out


def make_sampler(spec: SweepSpec, seed: int):
    import optuna

    if spec.method == "grid":
        space = {n: list(p.values) for n, p in spec.params.items() if p.kind == "categorical"}
        return optuna.samplers.GridSampler(space, seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)


def make_pruner(spec: SweepSpec, name: str):
    import optuna

    if spec.hyperband is not None or name == "hyperband":
        hb = spec.hyperband or {}
        return optuna.pruners.HyperbandPruner(min_resource=hb.get("min_iter", 1), reduction_factor=hb.get("eta", 3))
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def study_attrs(spec: SweepSpec, seeds: tuple[int, ...]) -> dict[str, Any]:
    """What makes two calls the same study: the same configuration, script, fixed flags and seeds."""
    return {"config": spec.raw, "algorithm": spec.algorithm, "fixed_flags": spec.fixed, "seeds": list(seeds),
            "metric": spec.metric}  # fmt: skip


def open_study(spec: SweepSpec, args: Args, study_name: str, worker: int = 0):
    import optuna

    study = optuna.create_study(
        storage=make_storage(args.storage),
        study_name=study_name,
        direction=spec.direction,
        sampler=make_sampler(spec, args.sampler_seed + worker),
        pruner=make_pruner(spec, args.pruner),
        load_if_exists=True,
    )
    attrs = study_attrs(spec, args.seeds)
    if not study.user_attrs:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    else:
        differ = sorted(k for k, v in attrs.items() if study.user_attrs.get(k) != json.loads(json.dumps(v)))
        if differ:
            raise SweepConfigError(
                f"study {study_name!r} in {args.storage} was started with other {', '.join(differ)}; "
                "use another study name (--sweep-id) or the same configuration"
            )
    return study


def trials_root(args: Args, study_name: str) -> Path:
    return Path(args.runs_dir).resolve() if args.runs_dir else REPO_ROOT / "sweeps" / "runs" / study_name


def make_objective(spec: SweepSpec, args: Args, study_name: str, threads: int):
    import optuna

    def objective(trial) -> float:
        params = suggest(trial, spec.params)
        trial_dir = trials_root(args, study_name) / f"trial_{trial.number:04d}"

        def report(step: int, value: float) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise TrialPruned

        try:
            result = run_trial(spec, params, args.seeds, trial_dir, threads, report)
        except TrialPruned as e:
            raise optuna.TrialPruned() from e
        for k in ("per_seed", "run_dirs", "last_step"):
            trial.set_user_attr(k, result[k])
        return result["value"]

    return objective


def _optimize(spec: SweepSpec, args: Args, study_name: str, n_trials: int, worker: int, threads: int) -> None:
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    study = open_study(spec, args, study_name, worker)
    callbacks = []
    if args.max_trials:
        callbacks.append(MaxTrialsCallback(args.max_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        n_trials = min(n_trials, max(0, args.max_trials - done))
    if spec.target is not None:

        def stop_at_target(study, trial) -> None:
            v = trial.value
            if v is not None and (v >= spec.target if spec.direction == "maximize" else v <= spec.target):
                study.stop()

        callbacks.append(stop_at_target)
    if n_trials > 0:
        # a trial whose flag combination the script rejects, or whose run crashes, is recorded as failed
        study.optimize(make_objective(spec, args, study_name, threads), n_trials, callbacks=callbacks,
                       catch=(RuntimeError,))  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _worker_main(spec: SweepSpec, args: Args, study_name: str, n_trials: int, worker: int, threads: int) -> None:
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler stops a job with SIGTERM: stop the runs, keep the study
    try:
        _optimize(spec, args, study_name, n_trials, worker, threads)
    except KeyboardInterrupt:
        sys.exit(130)


def run_optuna(spec: SweepSpec, args: Args, study_name: str) -> Any:
    import multiprocessing

    threads = args.threads or default_threads(args.workers, len(args.seeds))
    open_study(spec, args, study_name)  # create it (and check it matches) before the workers start
    log.info(
        "study %r in %s: %d trials, %d worker(s) x %d seed(s) x %d thread(s)",
        study_name, args.storage, args.sweep_count, args.workers, len(args.seeds), threads,
    )  # fmt: skip
    shares = [args.sweep_count // args.workers + (i < args.sweep_count % args.workers) for i in range(args.workers)]
    if args.workers == 1:
        _optimize(spec, args, study_name, shares[0], 0, threads)
    else:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_worker_main, args=(spec, args, study_name, n, i, threads))
                 for i, n in enumerate(shares) if n > 0]  # fmt: skip
        for p in procs:
            p.start()
        try:
            for p in procs:
                p.join()
        except KeyboardInterrupt:
            for p in procs:
                p.terminate()
            for p in procs:
                p.join()
            raise
        if any(p.exitcode not in (0, None) for p in procs):
            raise RuntimeError(f"a worker failed (exit statuses {[p.exitcode for p in procs]})")
    return open_study(spec, args, study_name)


def summarize(study) -> str:
    from optuna.trial import TrialState

    lines = [f"study {study.study_name}: {len(study.trials)} trials"]
    for t in study.trials:
        value = f"{t.value:.2f}" if t.value is not None else "-"
        lines.append(f"  #{t.number:<3d} {t.state.name:<8s} {value:>10s}  {json.dumps(t.params, sort_keys=True)}")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        lines.append(f"best: #{study.best_trial.number} value {study.best_value:.2f} {study.best_params}")
    return "\n".join(lines)


# ---- --best: a launch script and a held-out re-run -----------------------------------------------------------------


def script_name(algorithm: str, env_id: str, params: dict[str, Any], fixed: list[str]) -> str:
    human = params.get("teacher_feedback_mode") == "human" or flag_dict(fixed).get("--teacher-feedback-mode") == "human"
    env = env_id.replace("dm_control/", "dm_control_").replace("-", "_").replace("/", "_")
    return f"{'human' if human else 'synthetic'}_{ALGORITHMS[algorithm]}_{env}.sh"


def write_launch_script(path: Path, spec: SweepSpec, params: dict[str, Any], header: list[str]) -> None:
    args_type = script_args_type(spec.algorithm)
    flags = spec.fixed + to_flags(args_type, params)
    pairs, i = [], 0
    while i < len(flags):  # one flag (and its value) per line
        has_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
        pairs.append(shlex.join(flags[i : i + 1 + has_value]))
        i += 1 + has_value
    body = " \\\n    ".join([f"uv run python framework/{spec.script.name}", *pairs, '"$@"'])
    text = "#!/usr/bin/env bash\n" + "".join(f"# {h}\n" for h in header)
    text += 'set -euo pipefail\ncd "$(dirname "$0")/.."\n' + body + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def run_best(spec: SweepSpec, args: Args, study_name: str) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    overlap = set(args.seeds) & set(args.held_out_seeds)
    if overlap or len(args.held_out_seeds) < 1:
        raise SweepConfigError(f"--held-out-seeds must be given and disjoint from --seeds (shared: {sorted(overlap)})")
    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(args.storage))
    except KeyError as e:
        raise SweepConfigError(f"no study {study_name!r} in {args.storage}; run the sweep first") from e
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SweepConfigError(f"study {study_name!r} has no complete trial yet")
    best = study.best_trial
    params = {n: best.params.get(n, p.values[0] if p.values else None) for n, p in spec.params.items()}
    threads = args.threads or default_threads(1, len(args.held_out_seeds))
    trial_dir = trials_root(args, study_name) / f"best_{best.number:04d}_held_out"
    held = run_trial(spec, params, args.held_out_seeds, trial_dir, threads)
    scripts_dir = Path(args.scripts_dir) if Path(args.scripts_dir).is_absolute() else REPO_ROOT / args.scripts_dir
    env_id = spec.env_id(params)
    name = script_name(spec.algorithm, env_id, params, spec.fixed)
    result_path = scripts_dir / "studies" / f"{study_name}.json"
    held_values = list(held["per_seed"].values())
    held_std = statistics.pstdev(held_values)
    try:
        config_file = str(spec.path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        config_file = str(spec.path)
    states = [t.state.name for t in study.trials]
    result = {
        "study": study_name,
        "storage": args.storage,
        "config_filename": config_file,
        "algorithm": spec.algorithm,
        "metric": spec.metric,
        "goal": spec.goal,
        "fixed_flags": spec.fixed,
        "seeds": list(args.seeds),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            }
            for t in study.trials
        ],  # fmt: skip
        "best": {"number": best.number, "value": best.value, "params": params},
        "held_out": {
            "seeds": list(args.held_out_seeds),
            "per_seed": held["per_seed"],
            "mean": held["value"],
            "std": held_std,
            "last_step": held["last_step"],
        },  # fmt: skip
        "launch_script": f"{Path(args.scripts_dir).name}/{name}",
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    header = [
        f"{spec.script.name} on {env_id}: the best of a local Optuna study of ours, study {study_name!r}",
        f"({len(states)} trials: {states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned) over "
        f"{config_file}, seeds {list(args.seeds)};",
        f"results: {Path(args.scripts_dir).name}/studies/{study_name}.json. Best trial #{best.number}: "
        f"{spec.metric} {best.value:.2f} (mean of the seeds);",
        f"re-run on held-out seeds {list(args.held_out_seeds)}: {held['value']:.2f} +- {held_std:.2f} "
        f"at step {held['last_step']}.",
        "Budget flags are the study's; append your own (later flags win), e.g. --seed 3 --total-timesteps 1000000.",
    ]
    write_launch_script(scripts_dir / name, spec, params, header)
    return {**result, "launch_script_path": str(scripts_dir / name)}


# ---- wandb ---------------------------------------------------------------------------------------------------------


def wandb_sweep_config(spec: SweepSpec) -> dict[str, Any]:
    """The configuration W&B receives: the YAML as written, with `seed` absent and the program named."""
    config = {k: v for k, v in spec.raw.items() if k not in ("command",)}
    config.setdefault("program", f"framework/{spec.script.name}")
    config.setdefault("name", spec.path.stem)
    return config


def make_wandb_trial(spec: SweepSpec, args: Args, threads: int):
    """The function a W&B agent calls once per trial (also callable with an explicit ``config``)."""
    import wandb

    def trial(config: dict[str, Any] | None = None) -> float:
        run = wandb.init(project=args.project_name, entity=args.entity, config=config)
        try:
            params = {n: run.config[n] if n in run.config else p.values[0] for n, p in spec.params.items()}
            trial_dir = trials_root(args, run.sweep_id or "wandb") / f"run_{run.id}"
            result = run_trial(spec, params, args.seeds, trial_dir, threads,
                               report=lambda step, value: run.log({spec.metric: value}, step=step))  # fmt: skip
            run.summary[spec.metric] = result["value"]  # what the sweep optimises: the mean over seeds
            run.summary["sweep/per_seed"] = result["per_seed"]
            return result["value"]
        finally:
            run.finish()

    return trial


def run_wandb(spec: SweepSpec, args: Args) -> None:
    import wandb

    threads = args.threads or default_threads(1, len(args.seeds))
    sweep_id = args.sweep_id or wandb.sweep(wandb_sweep_config(spec), project=args.project_name, entity=args.entity)
    log.info("W&B sweep %s: running %d trials", sweep_id, args.sweep_count)
    wandb.agent(sweep_id, function=make_wandb_trial(spec, args, threads), count=args.sweep_count,
                project=args.project_name, entity=args.entity)  # fmt: skip


# ---- entry point ---------------------------------------------------------------------------------------------------


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
    signal.signal(signal.SIGTERM, _interrupt)
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
