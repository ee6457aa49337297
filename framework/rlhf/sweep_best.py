"""``sweep.py --best``: a study's best configuration re-run on held-out seeds and written as a launch script.

The best trial was picked by the optimiser on ``--seeds``; its re-run on ``--held-out-seeds`` (disjoint from them)
gives a number that was not (issue 11), and both go into the launch script's first lines. Writes
scripts/<synthetic|human>_<algorithm>_<env>.sh and the study's result file scripts/studies/<study>.json (every
trial, its intermediate values, the best configuration and the held-out result).

``args`` is framework/sweep.py's ``Args`` (reads --seeds, --held-out-seeds, --storage, --threads, --runs-dir,
--scripts-dir).
"""

from __future__ import annotations

import json
import shlex
import statistics
from pathlib import Path
from typing import Any

from rlhf.sweep_optuna import make_storage
from rlhf.sweep_space import ALGORITHMS, REPO_ROOT, SweepConfigError, SweepSpec, flag_dict, script_args_type, to_flags
from rlhf.sweep_trials import default_threads, run_trial, trials_root


def script_name(algorithm: str, env_id: str, params: dict[str, Any], fixed: list[str]) -> str:
    human = params.get("teacher_feedback_mode") == "human" or flag_dict(fixed).get("--teacher-feedback-mode") == "human"
    env = env_id.replace("dm_control/", "dm_control_").replace("-", "_").replace("/", "_")
    return f"{'human' if human else 'synthetic'}_{ALGORITHMS[algorithm]}_{env}.sh"


def write_launch_script(path: Path, spec: SweepSpec, params: dict[str, Any], header: list[str]) -> None:
    args_type = script_args_type(spec.algorithm)
    flags = spec.fixed + to_flags(args_type, params)
    pairs, i = [], 0
    while i < len(flags):  # one flag (and its value) per line
        has_value = i + 1 < len(flags) and not flags[i + 1].startswith("--")
        pairs.append(shlex.join(flags[i : i + 1 + has_value]))
        i += 1 + has_value
    body = " \\\n    ".join([f"uv run python framework/{spec.script.name}", *pairs, '"$@"'])
    text = "#!/usr/bin/env bash\n" + "".join(f"# {h}\n" for h in header)
    text += 'set -euo pipefail\ncd "$(dirname "$0")/.."\n' + body + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def run_best(spec: SweepSpec, args: Any, study_name: str) -> dict[str, Any]:
    import optuna
    from optuna.trial import TrialState

    overlap = set(args.seeds) & set(args.held_out_seeds)
    if overlap or len(args.held_out_seeds) < 1:
        raise SweepConfigError(f"--held-out-seeds must be given and disjoint from --seeds (shared: {sorted(overlap)})")
    try:
        study = optuna.load_study(study_name=study_name, storage=make_storage(args.storage))
    except KeyError as e:
        raise SweepConfigError(f"no study {study_name!r} in {args.storage}; run the sweep first") from e
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SweepConfigError(f"study {study_name!r} has no complete trial yet")
    best = study.best_trial
    params = {n: best.params.get(n, p.values[0] if p.values else None) for n, p in spec.params.items()}
    threads = args.threads or default_threads(1, len(args.held_out_seeds))
    trial_dir = trials_root(args, study_name) / f"best_{best.number:04d}_held_out"
    held = run_trial(spec, params, args.held_out_seeds, trial_dir, threads)
    scripts_dir = Path(args.scripts_dir) if Path(args.scripts_dir).is_absolute() else REPO_ROOT / args.scripts_dir
    env_id = spec.env_id(params)
    name = script_name(spec.algorithm, env_id, params, spec.fixed)
    result_path = scripts_dir / "studies" / f"{study_name}.json"
    held_values = list(held["per_seed"].values())
    held_std = statistics.pstdev(held_values)
    try:
        config_file = str(spec.path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        config_file = str(spec.path)
    states = [t.state.name for t in study.trials]
    result = {
        "study": study_name,
        "storage": args.storage,
        "config_filename": config_file,
        "algorithm": spec.algorithm,
        "metric": spec.metric,
        "goal": spec.goal,
        "fixed_flags": spec.fixed,
        "seeds": list(args.seeds),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.params,
                "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
            }
            for t in study.trials
        ],  # fmt: skip
        "best": {"number": best.number, "value": best.value, "params": params},
        "held_out": {
            "seeds": list(args.held_out_seeds),
            "per_seed": held["per_seed"],
            "mean": held["value"],
            "std": held_std,
            "last_step": held["last_step"],
        },  # fmt: skip
        "launch_script": f"{Path(args.scripts_dir).name}/{name}",
    }
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    header = [
        f"{spec.script.name} on {env_id}: the best of a local Optuna study of ours, study {study_name!r}",
        f"({len(states)} trials: {states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned) over "
        f"{config_file}, seeds {list(args.seeds)};",
        f"results: {Path(args.scripts_dir).name}/studies/{study_name}.json. Best trial #{best.number}: "
        f"{spec.metric} {best.value:.2f} (mean of the seeds);",
        f"re-run on held-out seeds {list(args.held_out_seeds)}: {held['value']:.2f} +- {held_std:.2f} "
        f"at step {held['last_step']}.",
        "Budget flags are the study's; append your own (later flags win), e.g. --seed 3 --total-timesteps 1000000.",
    ]
    write_launch_script(scripts_dir / name, spec, params, header)
    return {**result, "launch_script_path": str(scripts_dir / name)}
