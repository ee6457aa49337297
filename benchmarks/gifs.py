"""Gifs of trained PEBBLE agents for the README, made by framework/evaluation.py from the campaign's own checkpoints.

    uv run python benchmarks/gifs.py --tier medium                      # every task with a finished PEBBLE cell
    uv run python benchmarks/gifs.py --tier medium --env-id Hopper-v5

For each task of the tier, among the seeds of its PEBBLE cell published in ``benchmarks/results/<tier>/`` the one
with the median final return (the lower middle for an even count) is shown: the typical run, not the best. Its
final checkpoint (``<results>/<tier>/runs/<cell>/<run>/checkpoints/final``, where ``suite.py`` ran it) is evaluated
as any checkpoint is (``evaluation.py``: 10 episodes from seed 1, the first filmed) and the first seconds of the
first episode become ``media/<tier>_<env>_<method>.gif``. ``benchmarks/results/<tier>/gifs.json`` records, per gif,
the cell, the seed, the seeds it was the median of, the checkpoint's step and the evaluation's return, from which
``report.py`` writes the README's captions. A run directory that is gone (another machine ran the cell) is named
with the command that runs the cell again (same seed, threads and machine: the same run).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import suite

MEDIA = suite.REPO_ROOT / "media"
GIFS_FILE = "gifs.json"


def median_seed(results: list[dict]) -> dict:
    """The cell result (a cell's .json) with the median final return; the lower middle for an even count."""
    ranked = sorted(results, key=lambda m: (m["final_eval_return"], m["seed"]))
    return ranked[(len(ranked) - 1) // 2]


def gif_name(tier: str, env_id: str, method: str) -> str:
    return f"{tier}_{env_id.replace('/', '-')}_{method}.gif"


def final_checkpoint(results_dir: Path, tier: str, cell_name: str) -> Path:
    runs = suite.run_dirs(results_dir / tier / "runs" / cell_name)
    if len(runs) == 1 and (runs[0] / "checkpoints" / "final.json").is_file():
        return runs[0]
    raise FileNotFoundError(
        f"no finished run of {cell_name} under {results_dir / tier / 'runs'} (it ran on another machine?). "
        f"Run it again here: remove {results_dir / tier / cell_name}.csv and its .json, then "
        f"`uv run python benchmarks/suite.py --tier {tier} --env-id <its env> --workers 1 --threads 1`"
    )


def make_gif(run_dir: Path, dest: Path, episodes: int, seconds: float, size: int) -> dict:
    """Evaluate the run's final checkpoint with evaluation.py, film its first episode, keep the GIF at ``dest``;
    return evaluation.py's summary."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(suite.REPO_ROOT / "framework" / "evaluation.py"), "--path-to-model", str(run_dir),
               "--episodes", str(episodes), "--video-episodes", "1", "--video-size", str(size),
               "--gif-seconds", str(seconds), "--output-dir", tmp]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"evaluation.py failed on {run_dir}:\n{done.stdout}{done.stderr}")
        summary = json.loads((Path(tmp) / "summary.json").read_text())
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / summary["gifs"][0], dest)
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", choices=sorted(suite.TIERS), default="medium")
    p.add_argument("--results-dir", type=Path, default=suite.DEFAULT_RESULTS, help="where suite.py ran the cells")
    p.add_argument("--published", type=Path, default=suite.PUBLISHED, help="the committed results (cells, gifs.json)")
    p.add_argument("--media-dir", type=Path, default=MEDIA, help="where the gifs go")
    p.add_argument("--env-id", action="append", help="only these environments of the tier (repeatable)")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes (the first is filmed)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each gif")
    p.add_argument("--size", type=int, default=240, help="width and height of the gifs in pixels")
    a = p.parse_args(argv)
    tier = suite.TIERS[a.tier]
    published = a.published / tier.name
    record_path = published / GIFS_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    made = 0
    for task in tier.tasks:
        if a.env_id and task.env_id not in a.env_id:
            continue
        for labels in tier.label_budgets.get(task.env_id, ()):
            pebble = [c for c in suite.cells(tier) if c.env_id == task.env_id and c.method == "pebble"
                      and c.labels == labels]  # fmt: skip
            done = [c for c in pebble if suite.is_done(published, c)]
            if not done:
                print(f"{task.env_id}, PEBBLE {labels} labels: no seed published yet")
                continue
            results = [json.loads((published / f"{c.name}.json").read_text()) for c in done]
            chosen = median_seed(results)
            cell = next(c for c in done if c.seed == chosen["seed"])
            try:
                run_dir = final_checkpoint(a.results_dir.expanduser(), tier.name, cell.name)
            except FileNotFoundError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            name = gif_name(tier.name, task.env_id, f"pebble{labels}")
            summary = make_gif(run_dir, a.media_dir / name, a.episodes, a.seconds, a.size)
            record[cell.name] = {
                "env_id": task.env_id,
                "labels_budget": labels,
                "seed": cell.seed,
                "median_of_seeds": sorted(r["seed"] for r in results),
                "campaign_final_return": chosen["final_eval_return"],
                "checkpoint_step": summary["step"],
                "evaluation": {k: round(float(summary[k]), 1) for k in ("mean", "std", "min", "max")}
                | {"episodes": summary["episodes"], "seed": summary["seed"], "lengths": summary["lengths"]},
                "gif": f"media/{name}",
                "gif_seconds": a.seconds,
                "trained_at_commit": chosen.get("commit", ""),
                "filmed_at_commit": suite.git_commit(),
            }
            made += 1
            print(f"{a.media_dir / name}: {cell.name}, evaluation {summary['mean']:.1f} ± {summary['std']:.1f}")
    if made:
        record_path.write_text(json.dumps(dict(sorted(record.items())), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
