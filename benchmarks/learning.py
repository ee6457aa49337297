"""Learning check: PEBBLE (sac_rlhf.py) with at most 100 oracle labels against SAC on the true reward (sac.py),
same networks, same budget, on InvertedPendulum-v5 (max return 1000).

    uv run python benchmarks/learning.py --seeds 1 2 3            # about 6 minutes per seed and program on 2 cores

Prints the evaluation return (10 episodes of the deterministic policy, true reward) at every evaluation.
"""

from __future__ import annotations

import argparse
import tempfile

import sac
import sac_rlhf
import tyro

COMMON = [
    "--env-id",
    "InvertedPendulum-v5",
    "--total-timesteps",
    "20000",
    "--evaluation-frequency",
    "2000",
    "--evaluation-episodes",
    "10",
    "--learning-starts",
    "1000",
    "--no-progress-bar",
    "--log-level",
    "WARNING",
]
PEBBLE = [
    "--total-explore-steps",
    "2000",
    "--teacher-feedback-total-queries",
    "100",
    "--teacher-feedback-num-queries-per-session",
    "10",
    "--trajectory-length",
    "50",
]


def eval_curve(run_dir: str) -> list[tuple[int, float]]:
    from rlhf.runs import read_scalars  # the run reader that also follows resumed runs

    return [(s.step, s.value) for s in read_scalars(run_dir)["eval/mean_return"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--programs", nargs="+", choices=["sac.py", "sac_rlhf.py"], default=["sac.py", "sac_rlhf.py"])
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as runs:
        for seed in a.seeds:
            flags = [*COMMON, "--seed", str(seed), "--runs-dir", runs, "--threads", str(a.threads)]
            for name, module, extra in (("sac.py", sac, []), ("sac_rlhf.py", sac_rlhf, PEBBLE)):
                if name not in a.programs:
                    continue
                metrics = module.main(tyro.cli(module.Args, args=[*flags, *extra]))
                curve = eval_curve(metrics["run_dir"])
                first = next((step for step, ret in curve if ret >= 900), None)
                labels = int(metrics.get("feedback/total_labels", 0))
                print(
                    f"seed {seed} {name:12s} labels {labels:3d}  first eval >= 900 at step {first}  final "
                    f"{metrics['eval/mean_return']:.0f}  curve {[round(r) for _, r in curve]}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
