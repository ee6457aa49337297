"""The local sweep backend: an Optuna study over a sweep YAML, run by one or more worker processes.

The study lives in ``--storage`` (a journal file, safe for several processes and NFS; a SQLite file; or an RDB
URL), so workers on one machine, SLURM array tasks on many, and later calls all share it. The YAML's method picks
the sampler (grid, random, bayes: multivariate TPE), the pruner stops trials on the per-evaluation means
:func:`rlhf.sweep_trials.run_trial` reports, and a study remembers what it was started with
(:func:`study_attrs`), so a call with another configuration fails instead of mixing two searches.

``args`` below is framework/sweep.py's ``Args``; each function names the flags it reads. Optuna is imported
inside the functions, as the W&B backend and ``--check`` never need it (it takes about a second to import).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlhf.sweep_space import REPO_ROOT, Param, SweepConfigError, SweepSpec
from rlhf.sweep_trials import TrialPruned, default_threads, run_trial, stop_on_sigterm, trials_root

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, Trial

log = logging.getLogger("cleanrlhf.sweep")


def make_storage(storage: str) -> BaseStorage:
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


def suggest(trial: Trial, params: dict[str, Param]) -> dict[str, Any]:
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
            assert p.q is not None  # parse_param requires q for q_* distributions
            raw = trial.suggest_float(name, p.low, p.high, log=True)
            out[name] = max(p.q, round(raw / p.q) * p.q)
    return out


def make_sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    import optuna

    if spec.method == "grid":
        space = {n: list(p.values) for n, p in spec.params.items() if p.kind == "categorical"}
        return optuna.samplers.GridSampler(space, seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)


def make_pruner(spec: SweepSpec, name: str) -> optuna.pruners.BasePruner:
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


def open_study(spec: SweepSpec, args: Any, study_name: str, worker: int = 0) -> optuna.Study:
    """Create or load the study (reads --storage, --sampler-seed, --pruner, --seeds); a study started with another
    configuration raises SweepConfigError."""
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


def make_objective(spec: SweepSpec, args: Any, study_name: str, threads: int) -> Callable[[Trial], float]:
    """Optuna's objective: one trial on --seeds under --runs-dir, pruned on the per-evaluation means."""
    import optuna

    def objective(trial: Trial) -> float:
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
        return float(result["value"])

    return objective


def _optimize(spec: SweepSpec, args: Any, study_name: str, n_trials: int, worker: int, threads: int) -> None:
    """One worker's share of the trials (reads --max-trials, and what open_study and make_objective read)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    study = open_study(spec, args, study_name, worker)
    callbacks: list[Callable[[optuna.Study, FrozenTrial], None]] = []
    if args.max_trials:
        callbacks.append(MaxTrialsCallback(args.max_trials, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        n_trials = min(n_trials, max(0, args.max_trials - done))
    if spec.target is not None:
        target = spec.target

        def stop_at_target(study: optuna.Study, trial: FrozenTrial) -> None:
            v = trial.value
            if v is not None and (v >= target if spec.direction == "maximize" else v <= target):
                study.stop()

        callbacks.append(stop_at_target)
    if n_trials > 0:
        # a trial whose flag combination the script rejects, or whose run crashes, is recorded as failed
        study.optimize(make_objective(spec, args, study_name, threads), n_trials, callbacks=callbacks,
                       catch=(RuntimeError,))  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def _worker_main(spec: SweepSpec, args: Any, study_name: str, n_trials: int, worker: int, threads: int) -> None:
    stop_on_sigterm()
    try:
        _optimize(spec, args, study_name, n_trials, worker, threads)
    except KeyboardInterrupt:
        sys.exit(130)


def run_optuna(spec: SweepSpec, args: Any, study_name: str) -> optuna.Study:
    """--sweep-count trials split over --workers processes (spawned; one runs in this process); returns the study."""
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


def summarize(study: optuna.Study) -> str:
    from optuna.trial import TrialState

    lines = [f"study {study.study_name}: {len(study.trials)} trials"]
    for t in study.trials:
        value = f"{t.value:.2f}" if t.value is not None else "-"
        lines.append(f"  #{t.number:<3d} {t.state.name:<8s} {value:>10s}  {json.dumps(t.params, sort_keys=True)}")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        lines.append(f"best: #{study.best_trial.number} value {study.best_value:.2f} {study.best_params}")
    return "\n".join(lines)
