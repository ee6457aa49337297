"""One sweep trial: the script run once per seed in parallel subprocesses, scored on the metric the runs logged.

A trial reads the metric each run logged to TensorBoard under the YAML's name (:func:`rlhf.runs.read_scalars`),
reports the mean over seeds at every evaluation step all seeds have logged (Optuna prunes on these; W&B logs
them), and scores the trial with the mean over seeds of each run's last value. Either backend calls
:func:`run_trial`; both stop it with SIGTERM turned into KeyboardInterrupt (:func:`stop_on_sigterm`), which stops
the runs (they save a checkpoint on SIGTERM) and keeps the study.
"""

from __future__ import annotations

import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from rlhf.sweep_space import REPO_ROOT, SweepSpec, script_args_type, to_flags

POLL_SECONDS = 2.0


class TrialPruned(Exception):
    """Raised by a ``report`` callback to stop a trial's runs early."""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt: a scheduler stops a job with SIGTERM; stop the runs, keep the study."""
    signal.signal(signal.SIGTERM, _interrupt)


def default_threads(workers: int, seeds: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers * seeds))


def trials_root(args: Any, study_name: str) -> Path:
    """Where a study's trial runs go: ``args.runs_dir`` (sweep.py's --runs-dir), else sweeps/runs/<study>/."""
    return Path(args.runs_dir).resolve() if args.runs_dir else REPO_ROOT / "sweeps" / "runs" / study_name


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


def _stop(procs: dict[int, subprocess.Popen[bytes]]) -> None:
    """SIGTERM every run still going, then wait (a minute each, then SIGKILL)."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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
    procs: dict[int, subprocess.Popen[bytes]] = {}
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
        _stop(procs)
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
