"""Throughput of sac_rlhf.py against sac.py (same networks, same env), side by side in one process, plus
micro-benchmarks of relabelling and query selection.

    uv run python benchmarks/throughput.py                     # the default comparison (about 10 minutes on 2 cores)
    uv run python benchmarks/throughput.py --steps 6000 --skip-micro

Env-steps/s are measured over the steps after ``--learning-starts`` (every step an agent update; for sac_rlhf.py
this includes its feedback sessions: query selection, the simulated teacher, reward training and relabelling) and
the runs alternate between the programs so that drifts in machine load hit both alike.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import sac
import sac_rlhf
import torch
import tyro

from rlhf.queries import select_from_reward_cache, select_queries
from rlhf.replay import ReplayBuffer
from rlhf.reward_model import RewardEnsemble, predict_member_rewards
from rlhf.runs import read_scalars


def loop_sps(run_dir: str, after: int) -> float:
    """Steps per second over the logging windows after ``after``: total steps / total seconds."""
    points = [(x.step, x.value) for x in read_scalars(Path(run_dir))["charts/SPS"]]
    steps = seconds = 0.0
    prev = 0
    for step, sps in points:
        if prev >= after:
            steps += step - prev
            seconds += (step - prev) / sps
        prev = step
    return steps / seconds


def run(module, flags: list[str]) -> float:
    args = tyro.cli(module.Args, args=flags)
    metrics = module.main(args)
    return loop_sps(metrics["run_dir"], args.learning_starts)


def compare(a: argparse.Namespace, runs_dir: str) -> None:
    common = [
        "--env-id",
        a.env_id,
        "--total-timesteps",
        str(a.steps),
        "--learning-starts",
        str(a.learning_starts),
        "--evaluation-frequency",
        str(10 * a.steps),
        "--evaluation-episodes",
        "1",
        "--log-frequency",
        "500",
        "--runs-dir",
        runs_dir,
        "--no-progress-bar",
        "--log-level",
        "WARNING",
        "--threads",
        str(a.threads),
        "--buffer-size",
        str(a.steps),
    ]
    feedback = [
        "--no-unsupervised-exploration",
        "--teacher-feedback-total-queries",
        str(a.queries),
        "--teacher-feedback-num-queries-per-session",
        str(a.queries_per_session),
        "--teacher-feedback-schedule",
        "linear",
    ]
    variants = {
        "sac.py": (sac, []),
        "sac_rlhf.py (no SURF)": (sac_rlhf, [*feedback, "--no-surf"]),
        "sac_rlhf.py --rune (no SURF)": (sac_rlhf, [*feedback, "--no-surf", "--rune"]),
        "sac_rlhf.py (SURF, default)": (sac_rlhf, feedback),
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(a.repeats):
        for name, (module, extra) in variants.items():
            results[name].append(run(module, [*common, *extra, "--seed", str(r + 1)]))
            print(f"  repeat {r + 1}: {name:30s} {results[name][-1]:7.1f} steps/s", flush=True)
    med = {name: float(np.median(v)) for name, v in results.items()}
    print(
        f"\n{a.env_id}, {a.steps} steps ({a.learning_starts} before updates), {a.queries} queries in sessions of "
        f"{a.queries_per_session}, {a.threads} torch threads, median of {a.repeats}:"
    )
    for name, sps in med.items():
        print(f"  {name:30s} {sps:7.1f} env-steps/s")
    base = med["sac_rlhf.py (no SURF)"]
    print(f"  ratio sac_rlhf.py / sac.py (no SURF):        {base / med['sac.py']:.3f}")
    print(f"  ratio sac_rlhf.py with / without RUNE:       {med['sac_rlhf.py --rune (no SURF)'] / base:.3f}")
    print(f"  ratio sac_rlhf.py with / without SURF:       {med['sac_rlhf.py (SURF, default)'] / base:.3f}")
    print(f"  ratio sac_rlhf.py (SURF, default) / sac.py:  {med['sac_rlhf.py (SURF, default)'] / med['sac.py']:.3f}")


def micro(a: argparse.Namespace) -> None:
    torch.set_num_threads(a.threads)
    obs_dim, act_dim, n = 11, 3, a.relabel_transitions  # Hopper's sizes
    rb = ReplayBuffer(n, obs_dim, act_dim, 1, reward_members=3)
    rng = np.random.default_rng(0)
    rb.obs[:] = rng.normal(size=rb.obs.shape)
    rb.actions[:] = rng.uniform(-1, 1, size=rb.actions.shape)
    rb.episode_id[:] = np.arange(n) // 1000
    rb.episode_step[:] = np.arange(n) % 1000
    rb.truncated[999::1000] = True
    rb.pos, rb.size = 0, n
    default = RewardEnsemble(obs_dim, act_dim)  # the defaults: 3 members of 3 hidden layers of 64
    for width in (64, 128, 256):  # PEBBLE's width, 256, for comparison
        ensemble = RewardEnsemble(obs_dim, act_dim, hidden_dim=width)
        t0 = time.perf_counter()
        rb.relabel(lambda o, act, e=ensemble: predict_member_rewards(e, o, act))
        relabel = time.perf_counter() - t0
        flops = 2 * n * sum(p.numel() for name, p in ensemble.named_parameters() if name.endswith("weight"))
        print(
            f"relabel {n:,} transitions (3 members x 3 hidden layers of {width}, fp32): {relabel:.2f} s "
            f"({flops / relabel / 1e9:.0f} GFLOP/s)",
            flush=True,
        )
    rb.relabel(lambda o, act: predict_member_rewards(default, o, act))
    for strategy in ("disagree", "entropy"):
        t0 = time.perf_counter()
        select_from_reward_cache(rb, 20, a.pool, 64, strategy, rng)
        cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        select_queries(rb, default, 20, a.pool, 64, strategy, rng)
        networks = time.perf_counter() - t0
        print(
            f"select 20 of {a.pool:,} candidate pairs (H = 64, {strategy}): {cached:.3f} s from the reward cache, "
            f"{networks:.2f} s re-evaluating the networks",
            flush=True,
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="Hopper-v5")
    p.add_argument("--steps", type=int, default=12_000)
    p.add_argument("--learning-starts", type=int, default=2_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--queries-per-session", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--relabel-transitions", type=int, default=1_000_000)
    p.add_argument("--pool", type=int, default=10_000)
    p.add_argument("--skip-micro", action="store_true")
    p.add_argument("--skip-compare", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if not a.skip_micro:
        micro(a)
    if not a.skip_compare:
        with tempfile.TemporaryDirectory() as d:
            compare(a, d)
