"""Tables and plots of a benchmark tier, built from the committed cell files alone (``benchmarks/results/<tier>/``).

    uv run python benchmarks/report.py                 # every tier with results: markdown, plots, README sections
    uv run python benchmarks/report.py --check         # exit 1 if any generated file is not what the CSVs give

For each tier it writes ``benchmarks/results/<tier>/REPORT.md`` and ``media/benchmark_<tier>_{steps,labels}.png``,
and replaces the README's text between ``<!-- benchmark:<tier> -->`` and ``<!-- /benchmark:<tier> -->``, and
benchmarks/README.md's list of the cells done (between ``<!-- benchmark:status -->`` markers). The
output depends only on the files, so a rerun reproduces it byte for byte.

Scores. The final return of a cell is its last evaluation (10 episodes of the deterministic policy on the true
reward; 5 on 1000-step dm_control tasks). The *fraction of oracle* of a run is (R − R_random) / (R̄_SAC − R_random):
0 is the uniformly random policy (``random_policy.json``), 1 the mean final return of SAC on the true reward over
the tier's seeds. The aggregate is the interquartile mean (IQM) of those fractions over all runs of all tasks, with
a 95 % stratified-bootstrap confidence interval (Agarwal et al. 2021, "Deep RL at the edge of the statistical
precipice", with their ``rliable``; 50 000 resamples, fixed seed).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"
MEDIA = REPO_ROOT / "media"
README = REPO_ROOT / "README.md"
BENCH_README = REPO_ROOT / "benchmarks" / "README.md"
BOOTSTRAP_REPS = 10_000  # rliable's loop costs seconds per 10 000 resamples on this CPU
BOOTSTRAP_SEED = 0


@dataclass
class CellResult:
    env_id: str
    method: str  # "sac" or "pebble"
    labels_budget: int
    seed: int
    steps: np.ndarray
    returns: np.ndarray
    labels: np.ndarray
    wall_seconds: np.ndarray
    meta: dict
    reward_model: list[dict[str, float]] | None = None  # <cell>.reward-model.csv rows (PEBBLE cells)

    @property
    def final_return(self) -> float:
        return float(self.returns[-1])

    @property
    def key(self) -> str:
        return "SAC (true reward)" if self.method == "sac" else f"PEBBLE, {self.labels_budget} labels"


def load_tier(tier_dir: Path) -> list[CellResult]:
    out = []
    for csv_path in sorted(tier_dir.glob("*.csv")):
        if csv_path.name.endswith(REWARD_MODEL_SUFFIX):
            continue
        meta = json.loads(csv_path.with_suffix(".json").read_text())
        rm_path = csv_path.with_name(csv_path.stem + REWARD_MODEL_SUFFIX)
        reward_model = None
        if rm_path.is_file():
            with open(rm_path, newline="") as f:
                reward_model = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        with open(csv_path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise ValueError(f"{csv_path} has no evaluations")

        def col(name: str, kind=float, rows=rows) -> np.ndarray:
            return np.array([kind(r[name]) for r in rows])

        out.append(
            CellResult(
                meta["env_id"],
                meta["method"],
                int(meta["labels_budget"]),
                int(meta["seed"]),
                col("step", int),
                col("eval_return"),
                col("labels", int),
                col("wall_seconds"),
                meta,
                reward_model,
            )
        )
    return out


def fractions_of_oracle(cells: list[CellResult], random_returns: dict[str, float]) -> dict[tuple[str, str], dict]:
    """(env, method key) -> {seed: fraction of oracle} for every cell whose env has oracle runs."""
    oracle: dict[str, list[float]] = {}
    for c in cells:
        if c.method == "sac":
            oracle.setdefault(c.env_id, []).append(c.final_return)
    out: dict[tuple[str, str], dict] = {}
    for c in cells:
        if c.env_id not in oracle:
            continue
        if c.env_id not in random_returns:
            raise ValueError(f"no random-policy return for {c.env_id} in {RANDOM_FILE}")
        lo, hi = random_returns[c.env_id], float(np.mean(oracle[c.env_id]))
        out.setdefault((c.env_id, c.key), {})[c.seed] = (c.final_return - lo) / (hi - lo)
    return out


def mean_std(values) -> str:
    v = np.asarray(list(values), dtype=float)
    if len(v) == 0:
        return "—"
    mean, std = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    digits = 0 if abs(mean) >= 100 else 1 if abs(mean) >= 10 else 2
    if len(v) == 1:
        return f"{mean:.{digits}f}"  # one seed has no spread to show
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def iqm_with_ci(scores: np.ndarray, reps: int | None = None) -> tuple[float, float, float]:
    """IQM of a (runs × tasks) score matrix and its 95 % stratified-bootstrap interval (rliable)."""
    from rliable import library as rly
    from rliable import metrics

    # rliable's StratifiedBootstrap draws its resamples from numpy's global generator (np.random.choice in its
    # update_indices), not from the random_state it hands to arch: seed that one too, and put it back after.
    saved = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        with warnings.catch_warnings():  # rliable passes arch a RandomState, which arch deprecates
            warnings.simplefilter("ignore", FutureWarning)
            point, interval = rly.get_interval_estimates(
                {"x": scores},
                lambda x: np.array([metrics.aggregate_iqm(x)]),
                reps=reps or BOOTSTRAP_REPS,
                random_state=np.random.RandomState(BOOTSTRAP_SEED),
            )
    finally:
        np.random.set_state(saved)
    return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


RANDOM_FILE = "random_policy.json"
REWARD_MODEL_SUFFIX = ".reward-model.csv"  # as benchmarks/suite.py writes it
DIAGNOSTICS = "The reward model of each PEBBLE run"  # REPORT.md only; the README links to it
SHORT_OF_ORACLE = 0.9  # the campaign's bar (issue: "where PEBBLE falls short of 0.9 × oracle, a measured reason")


def method_keys(cells: list[CellResult]) -> list[str]:
    keys = sorted({c.key for c in cells if c.method != "sac"}, key=lambda k: (len(k), k))
    return (["SAC (true reward)"] if any(c.method == "sac" for c in cells) else []) + keys


def tier_markdown(tier: str, cells: list[CellResult], random_returns: dict[str, float]) -> str:
    envs = list(dict.fromkeys(c.env_id for c in cells))
    keys = method_keys(cells)
    fractions = fractions_of_oracle(cells, random_returns)
    by = lambda env, key: [c for c in cells if c.env_id == env and c.key == key]  # noqa: E731
    steps = {env: int(max(c.steps[-1] for c in cells if c.env_id == env)) for env in envs}
    out = io.StringIO()
    w = lambda line="": out.write(line + "\n")  # noqa: E731

    w(f"Final evaluation return, mean ± standard deviation over seeds (n = number of seeds); tier `{tier}`.")
    w()
    w(
        "| environment | steps | "
        + " | ".join(keys)
        + " | "
        + " | ".join(f"fraction of oracle: {k}" for k in keys[1:])
        + " |"
    )
    w("|---|---:|" + "---:|" * (2 * len(keys) - 1))
    for env in envs:
        row = [f"`{env}`", f"{steps[env]:,}"]
        for key in keys:
            runs = by(env, key)
            row.append(f"{mean_std(c.final_return for c in runs)} (n={len(runs)})" if runs else "—")
        for key in keys[1:]:
            row.append(mean_std(fractions.get((env, key), {}).values()))
        w("| " + " | ".join(row) + " |")
    w()
    w("Fraction of oracle: (R − R_random) / (mean R of SAC − R_random); random policy = 0, SAC on the true reward = 1.")
    w()

    # aggregate over tasks: those with at least 2 seeds of the method (a stratified bootstrap resamples seeds within
    # each task), on the seeds all of them share; a task with fewer so far is left out and named
    aggregate, left_out = [], set()
    for key in keys:
        per_env = {env: fractions[(env, key)] for env in envs if (env, key) in fractions}
        left_out |= {env for env, by_seed in per_env.items() if len(by_seed) < 2}
        per_env = {env: by_seed for env, by_seed in per_env.items() if len(by_seed) >= 2}
        if not per_env:
            continue
        seeds = sorted(set.intersection(*(set(v) for v in per_env.values())))
        if len(seeds) < 2:
            continue
        matrix = np.array([[per_env[env][s] for env in per_env] for s in seeds])
        iqm, lo, hi = iqm_with_ci(matrix)
        aggregate.append(f"| {key} | {iqm:.2f} [{lo:.2f}, {hi:.2f}] | {matrix.shape[1]} | {matrix.size} |")
    if aggregate:
        w("| method | IQM fraction of oracle [95 % CI] | tasks | runs |")
        w("|---|---:|---:|---:|")
        for line in aggregate:
            w(line)
    else:
        w("The aggregate (IQM with a bootstrap interval) needs at least 2 seeds of a task; not yet.")
    if left_out:
        w()
        names = ", ".join(f"`{env}`" for env in envs if env in left_out)
        w(f"Left out of the aggregate until they have 2 seeds: {names}.")
    w()

    w("Wall time per run, minutes (mean ± std over seeds), and environment steps per second.")
    w()
    w("| environment | method | minutes | env-steps/s | processes per run |")
    w("|---|---|---:|---:|---:|")
    for env in envs:
        for key in keys:
            runs = by(env, key)
            if not runs:
                continue
            minutes = [c.wall_seconds[-1] / 60 for c in runs]
            sps = [c.steps[-1] / max(c.wall_seconds[-1], 1e-9) for c in runs]
            processes = [len(c.meta.get("attempts", [])) or 1 for c in runs]
            w(
                f"| `{env}` | {key} | {np.mean(minutes):.1f} ± {np.std(minutes, ddof=1) if len(runs) > 1 else 0:.1f}"
                f" | {np.mean(sps):.0f} | {np.mean(processes):.1f} |"
            )
    w()
    machines = sorted({f"{c.meta['machine']['cpu']}, {c.meta['threads']} torch thread(s) per run" for c in cells})
    w("Measured on: " + "; ".join(machines) + ".")
    return out.getvalue()


def reward_model_markdown(cells: list[CellResult], random_returns: dict[str, float]) -> str:
    """Per PEBBLE run: its fraction of oracle beside what its reward model did, to read why a run fell short."""
    fractions = fractions_of_oracle(cells, random_returns)
    rows = []
    for c in sorted(cells, key=lambda c: (c.env_id, c.key, c.seed)):
        if c.method == "sac" or not c.reward_model:
            continue
        rm = c.reward_model
        half = max(r["labels"] for r in rm) / 2
        early = [r["pearson"] for r in rm if r["labels"] <= half and np.isfinite(r["pearson"])]
        fraction = fractions.get((c.env_id, c.key), {}).get(c.seed, float("nan"))
        rows.append(
            f"| `{c.env_id}` | {c.key} | {c.seed} | {fraction:.2f}{' ◂' if fraction < SHORT_OF_ORACLE else ''}"
            f" | {rm[-1]['train_accuracy']:.2f} | {rm[-1]['val_accuracy']:.2f}"
            f" | {np.mean(early) if early else float('nan'):.2f} | {rm[-1]['pearson']:.2f}"
            f" | {len(rm)} | {np.mean([r['epochs'] for r in rm]):.0f} |"
        )
    if not rows:
        return ""
    out = [
        DIAGNOSTICS + " (its `reward_model/*` scalars after every update; ◂: below "
        f"{SHORT_OF_ORACLE} × oracle). Accuracies are on the last update's own labels (train) and held-out labels "
        "(val); Pearson is the correlation of r̂ with the true reward over recent transitions, averaged over the "
        "updates with at most half the labels, and at the last update; epochs: the mean over updates of the epochs "
        "run (each update stops at 97 % training accuracy or at `--teacher-update-epochs`).",
        "",
        "| environment | method | seed | fraction of oracle | train acc. | val acc. | Pearson, first half"
        " | Pearson, last | updates | epochs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]
    return "\n".join(out) + "\n"


def plot_tier(tier: str, cells: list[CellResult]) -> dict[str, bytes]:
    """Learning curves against environment steps and against labels, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(c.env_id for c in cells))
    keys = method_keys(cells)
    colors = {k: f"C{i}" for i, k in enumerate(keys)}
    images = {}
    for kind in ("steps", "labels"):
        cols = min(len(envs), 4)
        rows = (len(envs) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
        for ax, env in zip(axes.flat, envs, strict=False):
            for key in keys:
                runs = [c for c in cells if c.env_id == env and c.key == key]
                if not runs or (kind == "labels" and runs[0].method == "sac"):
                    continue
                n = min(len(c.steps) for c in runs)
                x = runs[0].steps[:n] if kind == "steps" else np.mean([c.labels[:n] for c in runs], axis=0)
                y = np.array([c.returns[:n] for c in runs])
                mean = y.mean(axis=0)
                ax.plot(x, mean, color=colors[key], label=f"{key} (n={len(runs)})")
                if len(runs) > 1:
                    ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=colors[key], alpha=0.2, linewidth=0)
            ax.set_title(env, fontsize=10)
            ax.set_xlabel("environment steps" if kind == "steps" else "labels so far (mean over seeds)")
            ax.set_ylabel("evaluation return")
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
            else:  # against labels, before a PEBBLE run of this task is done
                ax.text(0.5, 0.5, "no PEBBLE run yet", ha="center", va="center", transform=ax.transAxes)
        for ax in list(axes.flat)[len(envs) :]:
            ax.axis("off")
        fig.suptitle(f"tier {tier}: mean over seeds, band = min to max", fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
        plt.close(fig)
        images[kind] = buf.getvalue()
    return images


def outputs(tier_dir: Path, media: Path = MEDIA) -> dict[Path, bytes]:
    """Every file this tier's report writes, with its content."""
    tier = tier_dir.name
    cells = load_tier(tier_dir)
    random_path = tier_dir / RANDOM_FILE
    if not random_path.is_file():
        raise ValueError(f"{random_path} is missing (benchmarks/suite.py writes it)")
    random_returns = {k: float(v["mean_return"]) for k, v in json.loads(random_path.read_text()).items()}
    markdown = tier_markdown(tier, cells, random_returns)
    images = plot_tier(tier, cells)
    diagnostics = reward_model_markdown(cells, random_returns)
    report = f"# Benchmark tier `{tier}`\n\n{markdown}" + (f"\n{diagnostics}" if diagnostics else "")
    files = {tier_dir / "REPORT.md": report.encode()}
    for kind, png in images.items():
        files[media / f"benchmark_{tier}_{kind}.png"] = png
    return files


GIFS_FILE = "gifs.json"  # written by benchmarks/gifs.py


def gifs_markdown(tier_dir: Path) -> str:
    """The tier's gifs of trained agents with their captions (README only: the paths are the repository's)."""
    path = tier_dir / GIFS_FILE
    if not path.is_file():
        return ""
    gifs = list(json.loads(path.read_text()).values())
    captions = []
    for g in gifs:
        e = g["evaluation"]
        shortest, longest = min(e["lengths"]), max(e["lengths"])
        lengths = f"{shortest}" if shortest == longest else f"{shortest}–{longest}"
        seeds = ", ".join(str(s) for s in g["median_of_seeds"])
        which = (
            "the only seed so far" if len(g["median_of_seeds"]) == 1 else f"the median of seeds {seeds} by final return"
        )
        captions.append(
            f"`{g['env_id']}`, PEBBLE with {g['labels_budget']} labels, seed {g['seed']} ({which}); at step"
            f" {g['checkpoint_step']:,}: {e['mean']:.1f} ± {e['std']:.1f} over {e['episodes']} evaluation episodes"
            f" of {lengths} steps (the filmed one: {e['lengths'][0]})"
        )
    out = io.StringIO()
    out.write(
        "Trained PEBBLE agents (`benchmarks/gifs.py`: each task's median seed, its final checkpoint evaluated by"
        " `framework/evaluation.py`; the first seconds of the first episode):\n\n"
    )
    out.write("| " + " | ".join(f"![{g['env_id']}]({g['gif']})" for g in gifs) + " |\n")
    out.write("|" + "---|" * len(gifs) + "\n")
    out.write("| " + " | ".join(captions) + " |\n")
    return out.getvalue()


def campaign_status(results: Path) -> str:
    """Which cells of each tier's grid (benchmarks/suite.py) have a committed result."""
    import suite

    lines = ["| tier | environment | method | seeds done | cells done |", "|---|---|---|---|---:|"]
    for tier in suite.TIERS.values():
        grid = suite.cells(tier)
        groups: dict[tuple[str, str], list] = {}
        for c in grid:
            groups.setdefault((c.env_id, c.name.split("__")[1]), []).append(c)
        for (env, method), group in groups.items():
            done = [c.seed for c in group if (results / tier.name / f"{c.name}.csv").is_file()]
            seeds = ", ".join(map(str, done)) if done else "—"
            lines.append(f"| {tier.name} | `{env}` | {method} | {seeds} | {len(done)} / {len(group)} |")
    return "\n".join(lines) + "\n"


def readme_with(readme: str, tier: str, markdown: str) -> str:
    start, end = f"<!-- benchmark:{tier} -->", f"<!-- /benchmark:{tier} -->"
    if start not in readme or end not in readme:
        return readme
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{markdown}{end}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", type=Path, default=RESULTS, help="folder of <tier>/ result folders")
    p.add_argument("--tier", action="append", help="only these tiers (default: every tier with results)")
    p.add_argument("--media-dir", type=Path, default=MEDIA, help="where the plots go")
    p.add_argument("--readme", type=Path, default=README, help="README whose benchmark sections are replaced")
    p.add_argument(
        "--bench-readme", type=Path, default=BENCH_README, help="README whose campaign-status section is replaced"
    )
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a generated file is out of date")
    a = p.parse_args(argv)
    tiers = a.tier or sorted(d.name for d in a.results_dir.iterdir() if d.is_dir() and any(d.glob("*.csv")))
    files: dict[Path, bytes] = {}
    readme = a.readme.read_text() if a.readme.is_file() else None
    for tier in tiers:
        tier_dir = a.results_dir / tier
        try:
            tier_files = outputs(tier_dir, a.media_dir)
        except (OSError, ValueError, KeyError) as e:
            print(f"error: tier {tier}: {e}", file=sys.stderr)
            return 2
        files.update(tier_files)
        if readme is not None:
            markdown = (
                tier_files[tier_dir / "REPORT.md"].decode().split("\n\n", 1)[1].split(DIAGNOSTICS, 1)[0].rstrip("\n")
                + "\n"
            )
            if gifs := gifs_markdown(tier_dir):
                markdown += "\n" + gifs
            readme = readme_with(readme, tier, markdown)
    if readme is not None:
        files[a.readme] = readme.encode()
    if a.bench_readme.is_file():
        bench = readme_with(a.bench_readme.read_text(), "status", campaign_status(a.results_dir))
        files[a.bench_readme] = bench.encode()
    stale = [path for path, data in files.items() if not path.is_file() or path.read_bytes() != data]
    if a.check:
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
