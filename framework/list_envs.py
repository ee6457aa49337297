"""List the environment ids CleanRLHF trains on: every Gymnasium MuJoCo v5 task and every state-based DM Control
task that shimmy registers (suite and manipulation), one per line.

    uv run python framework/list_envs.py                   # all ids
    uv run python framework/list_envs.py --filter stack    # ids containing "stack"
    uv run python framework/list_envs.py --check > docs/environments.md

``--check`` builds, steps, resets and re-renders each id here (rlhf/env_check.py; ~3 minutes for all ids on 2
cores) and prints the Markdown status table of docs/environments.md; it exits 1 when an id fails.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import tyro

from rlhf.env_check import check_env, status_table
from rlhf.envs import known_env_ids
from rlhf.rendering import configure_headless_rendering


@dataclass
class Args:
    filter: str = ""
    """only the ids that contain this text (case-insensitive)"""
    check: bool = False
    """build, step, reset and re-render each id and print the status table (Markdown) instead of the ids"""


def main(args: Args) -> int:
    configure_headless_rendering()
    ids = [i for i in known_env_ids() if args.filter.lower() in i.lower()]
    if not args.check:
        print("\n".join(ids))
        return 0
    statuses = []
    for n, env_id in enumerate(ids, 1):
        statuses.append(check_env(env_id))
        s = statuses[-1]
        print(f"[{n}/{len(ids)}] {env_id}: {'pass' if s.ok else s.detail} ({s.seconds:.1f} s)", file=sys.stderr)
    print(status_table(statuses), end="")
    return 0 if all(s.ok for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main(tyro.cli(Args)))
