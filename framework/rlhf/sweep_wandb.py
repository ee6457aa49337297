"""The W&B sweep backend: a W&B sweep created from the sweep YAML (or joined by id), run by an agent in this process.

Each agent trial is one W&B run holding the sampled config, the per-evaluation mean over seeds under the YAML's
``metric.name`` and the trial's value in the run's summary under the same name, which is what the sweep optimises
(the original project optimised ``evaluate/mean``, which its scripts never logged; issue 11). The key comes from
``WANDB_API_KEY`` or ``wandb login``; sweeps need the network.

``args`` is framework/sweep.py's ``Args`` (reads --project-name, --entity, --sweep-id, --sweep-count, --seeds,
--threads, --runs-dir).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rlhf.sweep_space import SweepSpec
from rlhf.sweep_trials import default_threads, run_trial, trials_root

log = logging.getLogger("cleanrlhf.sweep")


def wandb_sweep_config(spec: SweepSpec) -> dict[str, Any]:
    """The configuration W&B receives: the YAML as written, with `seed` absent and the program named."""
    config = {k: v for k, v in spec.raw.items() if k not in ("command",)}
    config.setdefault("program", f"framework/{spec.script.name}")
    config.setdefault("name", spec.path.stem)
    return config


def make_wandb_trial(spec: SweepSpec, args: Any, threads: int) -> Callable[..., float]:
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
            return float(result["value"])
        finally:
            run.finish()

    return trial


def run_wandb(spec: SweepSpec, args: Any) -> None:
    import wandb

    threads = args.threads or default_threads(1, len(args.seeds))
    sweep_id = args.sweep_id or wandb.sweep(wandb_sweep_config(spec), project=args.project_name, entity=args.entity)
    log.info("W&B sweep %s: running %d trials", sweep_id, args.sweep_count)
    wandb.agent(sweep_id, function=make_wandb_trial(spec, args, threads), count=args.sweep_count,
                project=args.project_name, entity=args.entity)  # fmt: skip
