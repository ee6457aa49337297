"""Tiny but complete runs of the algorithm scripts, shared by the smoke tests."""

from __future__ import annotations

from pathlib import Path

import tyro

from rlhf.runs import read_scalars

# Budgets that pass through every branch: random actions, exploration updates, the exploration checkpoint,
# several feedback sessions (reward training + relabel), SAC updates, logging, evaluation, the final checkpoint.
TINY_SAC_RLHF = {
    "--total-timesteps": 900,
    "--total-explore-steps": 300,
    "--explore-learning-starts": 100,
    "--learning-starts": 300,
    "--teacher-feedback-total-queries": 15,
    "--teacher-feedback-num-queries-per-session": 5,
    "--trajectory-length": 16,
    "--batch-size": 32,
    "--explore-batch-size": 32,
    "--actor-and-q-net-hidden-dim": 32,
    "--reward-net-hidden-dim": 32,
    "--teacher-update-epochs": 5,
    "--evaluation-frequency": 450,
    "--evaluation-episodes": 1,
    "--log-frequency": 100,
}


def argv(base: dict, runs_dir: Path, *extra: str, **overrides) -> list[str]:
    flags = {**base, **{f"--{k.replace('_', '-')}": v for k, v in overrides.items()}}
    out = ["--runs-dir", str(runs_dir), "--no-progress-bar", "--log-level", "WARNING"]
    for k, v in flags.items():
        out += [k, str(v)]
    return out + list(extra)


def run_in_process(module, args: list[str]) -> dict:
    return module.main(tyro.cli(module.Args, args=args))


def scalars(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """All TensorBoard scalars of a run as written: tag -> [(step, value)] (the library's run reader)."""
    return {tag: [(x.step, x.value) for x in series] for tag, series in read_scalars(Path(run_dir), True).items()}


def raising_on_call(fn, n: int, exc: BaseException):
    """``fn``, except that its ``n``-th call raises ``exc`` instead (a crash or a Ctrl-C at a known point)."""
    calls = []

    def wrapped(*a, **k):
        calls.append(1)
        if len(calls) == n:
            raise exc
        return fn(*a, **k)

    return wrapped
