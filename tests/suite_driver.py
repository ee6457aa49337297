"""A runner of benchmarks/suite.py with a tier of one task small enough for seconds per cell ("tiny"): SAC on the
true reward and PEBBLE with 10 labels on InvertedPendulum-v5, for the tests of the runner (here and on SLURM)."""

from __future__ import annotations

from pathlib import Path

DRIVER = """
import sys
import suite
from suite import Task, Tier

tiny = ("--learning-starts", "200", "--evaluation-episodes", "1", "--batch-size", "32",
        "--actor-and-q-net-hidden-dim", "32", "--log-frequency", "100")
pebble = ("--total-explore-steps", "300", "--explore-learning-starts", "100", "--trajectory-length", "20",
          "--teacher-update-epochs", "3", "--reward-net-hidden-dim", "16", "--explore-batch-size", "32")
suite.TIERS["tiny"] = Tier("tiny", (Task("InvertedPendulum-v5", {steps}, 300, tiny, pebble, 300),),
                           {{"InvertedPendulum-v5": (10,)}}, (1,), {{10: 5}})
sys.exit(suite.main(sys.argv[1:]))
"""


def write_driver(path: Path, steps: int) -> Path:
    """A script that runs suite.py's command line with the tiny tier of ``steps`` steps per cell added."""
    path.write_text(DRIVER.format(steps=steps))
    return path
