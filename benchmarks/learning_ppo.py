"""Learning check of the PPO family: ppo.py (true reward) and pref_ppo.py (oracle labels) on InvertedPendulum-v5.

Prints, per algorithm and seed, the evaluation returns (10 deterministic episodes) over training and whether the
run reached a mean true return of at least 900. Not a test (minutes of CPU); tests/test_ppo_scripts.py has a
``slow`` test that runs one seed of each.

    uv run python benchmarks/learning_ppo.py --seeds 1 2 3 --steps 50000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

COMMON = ["--env-id", "InvertedPendulum-v5", "--evaluation-episodes", "10", "--no-progress-bar",
          "--log-level", "WARNING", "--threads", "1"]  # fmt: skip
# PrefPPO: 2 rollouts of pre-exploration, then 10 sessions of 20 oracle queries of 50-step segments (200 labels)
PREF = ["--total-explore-steps", "4096", "--teacher-feedback-total-queries", "200",
        "--teacher-feedback-num-queries-per-session", "20", "--trajectory-length", "50"]  # fmt: skip


def run(algorithm: str, seed: int, steps: int, eval_every: int, runs_dir: str) -> dict:
    import tyro

    module = __import__(algorithm)
    flags = [*COMMON, "--seed", str(seed), "--total-timesteps", str(steps), "--evaluation-frequency",
             str(eval_every), "--runs-dir", runs_dir, *(PREF if algorithm == "pref_ppo" else [])]  # fmt: skip
    t0 = time.time()
    metrics = module.main(tyro.cli(module.Args, args=flags))
    return {**metrics, "seconds": time.time() - t0}


def eval_curve(run_dir: str) -> list[tuple[int, float]]:
    from rlhf.runs import read_scalars  # the run reader that also follows resumed runs

    return [(s.step, s.value) for s in read_scalars(run_dir)["eval/mean_return"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--algorithms", nargs="+", default=["ppo", "pref_ppo"], choices=["ppo", "pref_ppo"])
    opts = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as runs_dir:
        for algorithm in opts.algorithms:
            for seed in opts.seeds:
                m = run(algorithm, seed, opts.steps, opts.eval_every, runs_dir)
                curve = eval_curve(m["run_dir"])
                best = max(v for _, v in curve)
                labels = f", {int(m['feedback/total_labels'])} labels" if "feedback/total_labels" in m else ""
                print(
                    f"{algorithm:8s} seed {seed}: final eval {m['eval/mean_return']:7.1f}, best {best:7.1f}, "
                    f"{'reached' if best >= 900 else 'did NOT reach'} 900 ({int(m['step'])} steps{labels}, "
                    f"{m['seconds']:.0f} s); curve {[(s, round(v)) for s, v in curve]}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
