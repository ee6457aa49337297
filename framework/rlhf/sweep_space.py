"""A sweep's search space: the YAML (W&B's sweep schema) read and checked against the chosen script's flags.

Both sweep backends (:mod:`rlhf.sweep_optuna`, :mod:`rlhf.sweep_wandb`) read the same file: ``method``
grid/random/bayes, ``metric.name/goal`` (and ``target``), ``parameters`` with ``value``/``values``/``distribution``
+ ``min``/``max`` (W&B: https://docs.wandb.ai/guides/sweeps/define-sweep-configuration). Every key is checked
against the script's ``Args`` before anything runs, so a typo fails in one line instead of after a night of trials.
"""

from __future__ import annotations

import dataclasses
import io
import math
import shlex
import typing
from collections.abc import Mapping
from contextlib import redirect_stderr
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import tyro
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
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


class SweepConfigError(ValueError):
    """A sweep YAML or sweep flag that cannot run; reported in one line with exit status 2."""


@dataclass
class Param:
    name: str  # the script's dataclass field
    kind: str  # constant | categorical | int_uniform | uniform | q_uniform | log_uniform_values | q_log_uniform_values
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    q: float | None = None


@dataclass
class SweepSpec:
    path: Path
    raw: dict[str, Any]
    algorithm: str
    method: str
    metric: str
    goal: str
    params: dict[str, Param]
    fixed: list[str]  # flags after `--`, given to every run
    target: float | None = None
    hyperband: dict[str, Any] | None = None

    @property
    def script(self) -> Path:
        return FRAMEWORK / f"{ALGORITHMS[self.algorithm]}.py"

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        return "maximize" if self.goal == "maximize" else "minimize"

    def env_id(self, params: dict[str, Any]) -> str:
        for flags in (flag_dict(self.fixed), {f"--{k.replace('_', '-')}": str(v) for k, v in params.items()}):
            if "--env-id" in flags:
                return flags["--env-id"]
        return str(script_args_type(self.algorithm)().env_id)


def script_args_type(algorithm: str) -> type[Any]:
    """The ``Args`` dataclass of the algorithm's script (framework/ is an import root of the installed project).

    Imported here, when asked for, so the library never imports a script at import time."""
    import importlib

    return importlib.import_module(ALGORITHMS[algorithm]).Args


def flag_dict(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    key = None
    for token in argv:
        if token.startswith("--"):
            key = token.split("=", 1)[0].replace("_", "-")
            out[key] = token.split("=", 1)[1] if "=" in token else ""
        elif key is not None:
            out[key] = token
    return out


def to_flags(args_type: type[Any], values: Mapping[str, Any]) -> list[str]:
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


def _parses(args_type: type[Any], argv: list[str]) -> bool:
    try:
        with redirect_stderr(io.StringIO()):
            tyro.cli(args_type, args=argv)
        return True
    except SystemExit:
        return False


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SweepConfigError(f"{where}: {key} must be a number, got {value!r}")
    return value


def _distribution(where: str, spec: dict[str, Any]) -> str:
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
    return str(dist)


def _range_param(where: str, name: str, dist: str, spec: dict[str, Any]) -> Param:
    """A parameter drawn from [min, max] (every distribution but constant and categorical)."""
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


def parse_param(where: str, name: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        raise SweepConfigError(f"{where}: expected a mapping with value, values or distribution, got {spec!r}")
    unknown = set(spec) - PARAMETER_KEYS
    if "parameters" in spec:
        raise SweepConfigError(f"{where}: nested parameters are not supported (the scripts' flags are flat)")
    if unknown:
        raise SweepConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(PARAMETER_KEYS)}")
    dist = _distribution(where, spec)
    if dist == "constant":
        if "value" not in spec or len(spec) > 1 + ("distribution" in spec):
            raise SweepConfigError(f"{where}: a constant takes exactly one 'value'")
        return Param(name, "constant", (spec["value"],))
    if dist == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values or set(spec) - {"values", "distribution"}:
            raise SweepConfigError(f"{where}: categorical takes a non-empty list 'values' and nothing else")
        return Param(name, "categorical", tuple(values))
    return _range_param(where, name, dist, spec)


def candidate_values(p: Param) -> list[Any]:
    """Values that stand for the parameter's range when checking it against the script's flag types."""
    if p.values:
        return list(p.values)
    if p.kind == "int_uniform":
        return [int(p.low), int(p.high)]
    return [p.low, p.high]


def _read(path: Path) -> dict[str, Any]:
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
    return raw


def _metric(where: str, raw: dict[str, Any]) -> tuple[str, str, float | None]:
    """The YAML's metric: (name, goal, target or None)."""
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
    return metric["name"], goal, target


def _early_terminate(where: str, raw: dict[str, Any]) -> dict[str, Any] | None:
    early = raw.get("early_terminate")
    if early is not None and (not isinstance(early, dict) or early.get("type") != "hyperband"):
        raise SweepConfigError(f"{where}: early_terminate supports only type: hyperband")
    if early is not None and set(early) - {"type", "min_iter", "max_iter", "eta", "s", "strict"}:
        raise SweepConfigError(f"{where}: early_terminate: unknown key(s) {sorted(set(early) - {'type'})}")
    return early


def _parameter(
    where: str, key: Any, pspec: Any, args_type: type[Any], script: str, method: str, fixed_flags: set[str]
) -> Param | None:
    """One YAML parameter checked against the script's flags; None when a flag after ``--`` overrides it."""
    name = str(key).lstrip("-").replace("-", "_")
    pwhere = f"{where}: parameter {key!r}"
    if name in RESERVED:
        why = "seeds are set by --seeds, never searched" if name == "seed" else "it is set by the sweep itself"
        raise SweepConfigError(f"{pwhere}: cannot be swept ({why})")
    if name not in {f.name for f in dataclasses.fields(args_type)}:
        raise SweepConfigError(f"{pwhere} is not a flag of {script}")
    flag = "--" + name.replace("_", "-")
    p = parse_param(pwhere, name, pspec)
    if flag in fixed_flags:
        if p.kind != "constant":
            raise SweepConfigError(f"{pwhere} is searched and also given after '--'")
        return None  # a flag after `--` overrides the YAML's constant (e.g. a tiny budget for a local study)
    if method == "grid" and p.kind not in ("constant", "categorical"):
        raise SweepConfigError(f"{pwhere}: method grid needs value or values, not a {p.kind} distribution")
    for value in candidate_values(p):
        if not _parses(args_type, to_flags(args_type, {name: value})):
            raise SweepConfigError(f"{pwhere}: {value!r} is not a valid value of {flag} of {script}")
    return p


def _parameters(
    where: str, parameters: dict[Any, Any], algorithm: str, method: str, fixed_flags: set[str]
) -> dict[str, Param]:
    args_type = script_args_type(algorithm)
    script = f"{ALGORITHMS[algorithm]}.py"
    params: dict[str, Param] = {}
    for key, pspec in parameters.items():
        name = str(key).lstrip("-").replace("-", "_")
        if name in params:
            raise SweepConfigError(f"{where}: parameter {key!r} is given twice")
        p = _parameter(where, key, pspec, args_type, script, method, fixed_flags)
        if p is not None:
            params[name] = p
    return params


def load_spec(path: str | Path, algorithm: str, fixed: list[str] | None = None) -> SweepSpec:
    """Read and check a sweep YAML against the script's flags; raises SweepConfigError with a one-line message."""
    path = Path(path)
    where = str(path)
    raw = _read(path)
    method = raw.get("method")
    if method not in ("grid", "random", "bayes"):
        raise SweepConfigError(f"{where}: method must be grid, random or bayes, got {method!r}")
    metric, goal, target = _metric(where, raw)
    program = raw.get("program")
    if program is not None and Path(str(program)).stem != ALGORITHMS[algorithm]:
        raise SweepConfigError(f"{where}: program {program!r} does not match --algorithm {algorithm}")
    early = _early_terminate(where, raw)
    parameters = raw.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise SweepConfigError(f"{where}: parameters must be a non-empty mapping")

    fixed = list(fixed or [])
    fixed_flags = {"--" + k.removeprefix("--").removeprefix("no-") for k in flag_dict(fixed)}
    params = _parameters(where, parameters, algorithm, str(method), fixed_flags)
    if not _parses(script_args_type(algorithm), fixed):
        script = f"{ALGORITHMS[algorithm]}.py"
        raise SweepConfigError(f"flags after '--' are not valid flags of {script}: {shlex.join(fixed)}")
    for name in ("seed", "resume", "runs_dir", "threads", "track"):
        if "--" + name.replace("_", "-") in fixed_flags:
            raise SweepConfigError(f"--{name.replace('_', '-')} after '--' is set by the sweep itself")
    searched = [p for p in params.values() if p.kind != "constant"]
    if not searched:
        raise SweepConfigError(f"{where}: no parameter is searched (all are constants)")
    return SweepSpec(path, raw, algorithm, str(method), metric, goal, params, fixed, target, early)
