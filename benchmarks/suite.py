"""The benchmark campaign: named tiers of env × method × label budget × seed, each cell one ordinary run of our
scripts, run side by side by worker processes, stoppable and restartable at any moment.

    uv run python benchmarks/suite.py --tier quick --workers 2            # 2 workers × 1 torch thread
    uv run python benchmarks/suite.py --tier quick --list                 # the grid and what is done
    uv run python benchmarks/suite.py --tier medium --workers 2 --publish # copy finished cells into the repo

Each cell runs ``framework/<script>.py`` in its own process with ``--runs-dir <results>/<tier>/runs/<cell>``.
A finished cell is written as ``<results>/<tier>/<cell>.csv`` (``step, eval_return, labels, wall_seconds`` at
every evaluation), ``<cell>.json`` (its flags, final numbers and the machine) and, for PEBBLE cells,
``<cell>.reward-model.csv`` (``step, labels, epochs, train_accuracy, val_accuracy, pearson`` after every
reward-model update; a rerun also writes it for finished cells that lack it, from their run directories). A rerun
skips finished cells and continues interrupted ones with ``--resume`` from their last periodic checkpoint (a script
without a resumable checkpoint starts the cell again). Stopping the runner (Ctrl-C, SIGTERM) stops every cell,
which saves a checkpoint first. With ``--publish`` each finished cell's files are also copied to
``benchmarks/results/<tier>/``, from which ``benchmarks/report.py`` builds the README's tables and plots. With
``--continue-published`` the cells already published there count as done (they are copied into the results
folder first), so a campaign continues on a machine whose results folder is new or lost; without it every cell
is run, which is how the published numbers are regenerated.

Several runners may share one results folder (the array tasks of ``slurm/suite.sbatch``, or two machines on a
shared filesystem): a runner holds a lock on each cell it runs (``runs/<cell>.lock``, an ``flock`` kept by the cell's
process too), so a cell runs in one place at a time; the others skip it, and whoever runs next after a stop
continues it from its checkpoint.

The grids (tiers, tasks, cells and their flags) are benchmarks/tiers.py; seeds are fixed lists, chosen before any
result was seen and never changed by results.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from tiers import MEDIUM, QUICK, SCRIPTS, STANDARD, TIERS, Cell, Task, Tier, cells

from rlhf.manifest import ManifestError, read_manifest
from rlhf.runs import read_scalars, value_at

REPO_ROOT = Path(__file__).resolve().parents[1]

DEFAULT_RESULTS = Path("~/cleanrlhf-benchmarks").expanduser()
PUBLISHED = REPO_ROOT / "benchmarks" / "results"
CSV_COLUMNS = ("step", "eval_return", "labels", "wall_seconds")
# what the reward model looked like after each of a PEBBLE cell's updates: the measured side of "why it fell short"
REWARD_MODEL_SUFFIX = ".reward-model.csv"
REWARD_MODEL_COLUMNS = ("step", "labels", "epochs", "train_accuracy", "val_accuracy", "pearson")
# the grids (tiers.py) are named through this module by its callers and tests
__all__ = ["MEDIUM", "QUICK", "SCRIPTS", "STANDARD", "TIERS", "Cell", "Task", "Tier", "cells"]  # fmt: skip


# ---- one cell's files -------------------------------------------------------------------------------------------


def run_dirs(cell_runs: Path) -> list[Path]:
    return sorted(p for p in cell_runs.glob("*") if (p / "args.json").is_file()) if cell_runs.is_dir() else []


def resumable_run(cell_runs: Path) -> Path | None:
    """The cell's run directory if it holds a periodic checkpoint to continue from."""
    runs = run_dirs(cell_runs)
    if len(runs) != 1:
        return None
    ckpt = runs[0] / "checkpoints"
    return runs[0] if (ckpt / "resume").is_dir() or (ckpt / "resume.old").is_dir() else None


def cell_progress(tier_dir: Path, cell: Cell) -> int:
    """Steps of the cell a run has recorded (its ``run.json``, written at start, at each checkpoint and at the end;
    0 for a cell not started, or whose runs cannot be read). A resumed run continues from this step."""
    runs = run_dirs(tier_dir / "runs" / cell.name)
    try:
        manifest = read_manifest(runs[0]) if len(runs) == 1 else None
    except ManifestError:
        return 0
    return min(int(manifest["step"]), cell.steps) if manifest else 0


def script_resumes(script: str) -> bool:
    """Whether the script has ``--resume`` (read from its flags, so a script gains it without a change here)."""
    import importlib

    module = importlib.import_module(Path(script).stem)
    return any(f.name == "resume" for f in dataclasses.fields(module.Args))


def curve_rows(run_dir: Path) -> list[dict[str, float]]:
    scalars = read_scalars(run_dir)
    labels = scalars.get("feedback/total_labels", [])
    return [
        {
            "step": s.step,
            "eval_return": s.value,
            "labels": int(value_at(labels, s.step)),
            "wall_seconds": round(s.wall_seconds, 1),
        }
        for s in scalars.get("eval/mean_return", [])
    ]


def reward_model_rows(run_dir: Path) -> list[dict[str, float]]:
    """One row per reward-model update (PEBBLE cells; empty for SAC): labels it was trained on, epochs run, its
    accuracy on its own labels and on the held-out ones, and the Pearson correlation of r̂ with the true reward
    over recent transitions (the scripts' ``reward_model/*`` scalars)."""
    scalars = read_scalars(run_dir)
    labels = scalars.get("feedback/total_labels", [])
    series = {name: scalars.get(f"reward_model/{name}", []) for name in REWARD_MODEL_COLUMNS[2:]}
    nan = float("nan")
    return [
        {
            "step": s.step,
            "labels": int(value_at(labels, s.step)),
            **{name: round(value_at(series[name], s.step, nan), 4) for name in REWARD_MODEL_COLUMNS[2:]},
        }
        for s in series["val_accuracy"]
    ]


def write_reward_model(cell: Cell, tier_dir: Path, run_dir: Path) -> bool:
    rows = reward_model_rows(run_dir)
    if not rows:
        return False
    tmp = tier_dir / f"{cell.name}{REWARD_MODEL_SUFFIX}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=REWARD_MODEL_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, tier_dir / f"{cell.name}{REWARD_MODEL_SUFFIX}")
    return True


def machine() -> dict[str, str | int]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "python": platform.python_version()}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def write_result(cell: Cell, tier_dir: Path, run_dir: Path, attempts: list[dict], threads: int) -> list[dict]:
    rows = curve_rows(run_dir)
    if not rows:
        raise RuntimeError(f"{run_dir} finished without an evaluation")
    tmp = tier_dir / f"{cell.name}.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    meta = {
        "tier": cell.tier,
        "env_id": cell.env_id,
        "method": cell.method,
        "labels_budget": cell.labels,
        "seed": cell.seed,
        "script": f"framework/{cell.script}",
        "flags": list(cell.flags),
        "threads": threads,
        "total_timesteps": cell.steps,
        "final_step": rows[-1]["step"],
        "final_eval_return": rows[-1]["eval_return"],
        "final_labels": rows[-1]["labels"],
        "wall_seconds": rows[-1]["wall_seconds"],
        "attempts": attempts,
        "machine": machine(),
        "commit": git_commit(),
    }
    write_atomic(tier_dir / f"{cell.name}.json", json.dumps(meta, indent=2) + "\n")
    write_reward_model(cell, tier_dir, run_dir)
    os.replace(tmp, tier_dir / f"{cell.name}.csv")  # the CSV, written last, marks the cell done
    return rows


RANDOM_POLICY_FILE = "random_policy.json"
RANDOM_POLICY_EPISODES = 10


def random_policy_returns(tier: Tier, tier_dir: Path) -> dict[str, dict]:
    """Each task's mean return under uniformly random actions (10 episodes, seed 0): the zero of the report's
    "fraction of oracle" (random = 0, SAC on the true reward = 1), as in Atari's human-normalised scores. Measured
    once per tier and kept beside the cells."""
    import numpy as np

    from rlhf.envs import make_env
    from rlhf.evaluate import run_episodes

    path = tier_dir / RANDOM_POLICY_FILE
    known = json.loads(path.read_text()) if path.is_file() else {}
    for task in tier.tasks:
        if task.env_id in known:
            continue
        env = make_env(task.env_id, seed=0)
        env.action_space.seed(0)
        returns, _ = run_episodes(lambda obs, e=env: e.action_space.sample(), env, RANDOM_POLICY_EPISODES, 0)
        env.close()
        known[task.env_id] = {
            "mean_return": round(float(np.mean(returns)), 3),
            "episodes": RANDOM_POLICY_EPISODES,
            "seed": 0,
        }
        write_atomic(path, json.dumps(known, indent=2, sort_keys=True) + "\n")  # runners may share the folder
    return known


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def is_done(tier_dir: Path, cell: Cell) -> bool:
    return (tier_dir / f"{cell.name}.csv").is_file() and (tier_dir / f"{cell.name}.json").is_file()


def cells_to_run(tier_dir: Path, grid: list[Cell]) -> list[Cell]:
    """The grid's unfinished cells in the order they start: those with a checkpoint first (the steps already paid
    for become a finished result soonest), then the rest in grid order (seed-major)."""
    todo = [c for c in grid if not is_done(tier_dir, c)]
    return sorted(todo, key=lambda c: resumable_run(tier_dir / "runs" / c.name) is None)


def adopt_published(tier_dir: Path, grid: list[Cell], published: Path | None = None) -> list[str]:
    """Copy the published result of every cell that ``tier_dir`` has not finished into it (``--continue-published``),
    so that it counts as done; return their names. A cell's unfinished run in ``tier_dir`` is left where it is."""
    adopted = []
    for c in grid:
        source = (PUBLISHED if published is None else published) / c.tier
        if is_done(tier_dir, c) or not is_done(source, c):
            continue
        tier_dir.mkdir(parents=True, exist_ok=True)
        for suffix in (".csv", ".json", REWARD_MODEL_SUFFIX):
            if (source / f"{c.name}{suffix}").is_file():
                shutil.copyfile(source / f"{c.name}{suffix}", tier_dir / f"{c.name}{suffix}")
        adopted.append(c.name)
    return adopted


# ---- the runner ----------------------------------------------------------------------------------------------------


def lock_cell(tier_dir: Path, cell: Cell) -> IO[bytes] | None:
    """An exclusive lock on the cell (an ``flock`` on ``runs/<cell>.lock``), or None while another runner holds it.
    The kernel drops the lock when every process holding the file has exited, so no stale lock outlives a crash."""
    import fcntl

    f = open(tier_dir / "runs" / f"{cell.name}.lock", "ab")  # noqa: SIM115 (held for the cell's lifetime)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def held_elsewhere(tier_dir: Path, cell: Cell) -> bool:
    if not (tier_dir / "runs" / f"{cell.name}.lock").is_file():
        return False
    lock = lock_cell(tier_dir, cell)
    if lock is None:
        return True
    lock.close()
    return False


class Running:
    def __init__(self, cell: Cell, proc: subprocess.Popen, log, resumed: bool, lock: IO[bytes]):
        self.cell, self.proc, self.log, self.resumed, self.lock = cell, proc, log, resumed, lock
        self.started = time.time()

    def close(self) -> None:
        self.log.close()
        self.lock.close()  # the cell's process has exited: the lock is free for another runner


def start(cell: Cell, tier_dir: Path, threads: int, resume: bool, lock: IO[bytes]) -> Running:
    cell_runs = tier_dir / "runs" / cell.name
    resumes = script_resumes(cell.script)
    run_dir = resumable_run(cell_runs) if resume and resumes else None
    if run_dir is None:
        shutil.rmtree(cell_runs, ignore_errors=True)  # an interrupted run that cannot be continued starts again
        cell_runs.mkdir(parents=True)
        argv = [*cell.flags, "--runs-dir", str(cell_runs)]
        if resumes and cell.checkpoint_every:
            argv += ["--checkpoint-frequency", str(cell.checkpoint_every)]
    else:
        argv = ["--resume", str(run_dir)]
    argv += ["--threads", str(threads), "--no-progress-bar", "--log-level", "WARNING"]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "WANDB_MODE": "disabled"}
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    log = open(tier_dir / "runs" / f"{cell.name}.log", "a")  # noqa: SIM115 (closed when the cell's process ends)
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if run_dir else 'start'}: {argv}\n")
    log.flush()
    # its own session: a Ctrl-C at the terminal reaches the runner only, which stops each cell once, with SIGTERM.
    # The cell's process keeps the lock's file open too: if the runner dies first, the cell stays locked until
    # its process exits.
    proc = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "framework" / cell.script), *argv],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
        pass_fds=(lock.fileno(),),
    )
    return Running(cell, proc, log, run_dir is not None, lock)


def record_attempt(tier_dir: Path, r: Running, code: int) -> list[dict]:
    """Append one process's outcome to the cell's history (kept beside its runs, copied into its result)."""
    path = tier_dir / "runs" / f"{r.cell.name}.attempts.json"
    history = json.loads(path.read_text()) if path.is_file() else []
    history.append({"resumed": r.resumed, "exit": code, "seconds": round(time.time() - r.started, 1)})
    write_atomic(path, json.dumps(history))
    return history


def estimate_eta(trained_steps: int, seconds: float, steps_left: int) -> float:
    """Seconds until ``steps_left`` are trained at the rate this runner has trained so far (NaN before its first
    recorded progress: a cell records its steps at each checkpoint)."""
    if steps_left <= 0:
        return 0.0
    return steps_left * seconds / trained_steps if trained_steps > 0 and seconds > 0 else float("nan")


def format_eta(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    h, m = divmod(int(seconds) // 60, 60)
    return f"{h}h{m:02d}m"


def run_tier(
    tier: Tier, results: Path, workers: int, threads: int, publish: bool, only: set[str] | None, adopt: bool = False
) -> int:
    from tqdm import tqdm

    tier_dir = results / tier.name
    (tier_dir / "runs").mkdir(parents=True, exist_ok=True)
    grid = [c for c in cells(tier) if only is None or c.env_id in only]
    if adopt and (adopted := adopt_published(tier_dir, grid)):
        tqdm.write(f"{len(adopted)} cell(s) published in {PUBLISHED / tier.name} count as done")
    todo = cells_to_run(tier_dir, grid)
    random_policy_returns(tier, tier_dir)
    for c in grid:  # cells finished by a runner that did not write the reward-model file yet
        runs = run_dirs(tier_dir / "runs" / c.name)
        if is_done(tier_dir, c) and not (tier_dir / f"{c.name}{REWARD_MODEL_SUFFIX}").is_file() and len(runs) == 1:
            write_reward_model(c, tier_dir, runs[0])
    if publish:
        (PUBLISHED / tier.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tier_dir / RANDOM_POLICY_FILE, PUBLISHED / tier.name / RANDOM_POLICY_FILE)
        for c in grid:
            if is_done(tier_dir, c):
                publish_cell(tier_dir, c)
    bar = tqdm(
        total=len(grid),
        initial=len(grid) - len(todo),
        unit="cell",
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 60.0,  # a log file gets a line a minute
    )
    running: list[Running] = []
    failed: list[str] = []
    elsewhere: list[str] = []  # cells another runner on this results folder holds
    # the ETA: steps this runner has trained (finished cells and the recorded progress of running ones) per second,
    # against the steps its cells still need; a cell resumed from a checkpoint needs only the rest
    t0 = time.time()
    at_start = {c.name: cell_progress(tier_dir, c) for c in todo}
    trained = 0  # steps of the cells this runner finished, beyond where they started
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        while (todo or running) and not stop["now"]:
            while todo and len(running) < workers:
                cell = todo.pop(0)
                lock = lock_cell(tier_dir, cell)
                if lock is None or is_done(tier_dir, cell):  # running in another runner, or finished there since
                    if lock is None:
                        elsewhere.append(cell.name)
                    else:
                        lock.close()
                    bar.update(1)
                    continue
                running.append(start(cell, tier_dir, threads, resume=True, lock=lock))
            time.sleep(1.0)
            for r in list(running):
                code = r.proc.poll()
                if code is None:
                    continue
                running.remove(r)
                r.close()
                cell = r.cell
                history = record_attempt(tier_dir, r, code)
                runs = run_dirs(tier_dir / "runs" / cell.name)
                if code == 2 and r.resumed:
                    # the checkpoint was refused (e.g. written by an older version with another state layout)
                    tqdm.write(f"{cell.name}: its checkpoint could not be resumed; starting the cell again")
                    shutil.rmtree(tier_dir / "runs" / cell.name, ignore_errors=True)
                    todo.insert(0, cell)
                    continue
                if code != 0 or len(runs) != 1:
                    failed.append(cell.name)
                    tqdm.write(f"{cell.name}: exit {code}; see {tier_dir / 'runs' / (cell.name + '.log')}")
                else:
                    rows = write_result(cell, tier_dir, runs[0], history, threads)
                    if publish:
                        publish_cell(tier_dir, cell)
                    trained += cell.steps - at_start[cell.name]
                    tqdm.write(
                        f"{cell.name}: eval return {rows[-1]['eval_return']:.1f} with {rows[-1]['labels']} labels"
                        f" in {rows[-1]['wall_seconds']:.0f} s"
                    )
                bar.update(1)
            progress = {r.cell.name: cell_progress(tier_dir, r.cell) for r in running}
            eta = estimate_eta(
                trained + sum(p - at_start[name] for name, p in progress.items()),
                time.time() - t0,
                sum(c.steps - at_start[c.name] for c in todo)
                + sum(r.cell.steps - progress[r.cell.name] for r in running),
            )
            bar.set_postfix_str(f"running {len(running)}, left {len(todo)}, ETA {format_eta(eta)}", refresh=False)
    finally:
        for r in running:  # each saves a checkpoint on SIGTERM; the next call continues it
            r.proc.send_signal(signal.SIGTERM)
        for r in running:
            try:
                code = r.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                code = r.proc.wait()
            record_attempt(tier_dir, r, code)
            r.close()
        bar.close()
    if stop["now"]:
        print(f"stopped; {len(running)} running cell(s) checkpointed. Run the same command to continue.")
        return 130
    if elsewhere:
        print(f"{len(elsewhere)} cell(s) left to the runner(s) holding them: {', '.join(elsewhere)}")
    if failed:
        print(f"{len(failed)} cell(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def publish_cell(tier_dir: Path, cell: Cell) -> None:
    dest = PUBLISHED / cell.tier
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".csv", REWARD_MODEL_SUFFIX):
        if suffix == REWARD_MODEL_SUFFIX and not (tier_dir / f"{cell.name}{suffix}").is_file():
            continue  # SAC cells have no reward model
        shutil.copyfile(tier_dir / f"{cell.name}{suffix}", dest / f"{cell.name}{suffix}")


def list_tier(tier: Tier, results: Path, adopt: bool = False) -> None:
    tier_dir = results / tier.name
    for c in cells(tier):
        if is_done(tier_dir, c):
            status = "done"
        elif adopt and is_done(PUBLISHED / tier.name, c):
            status = "published"  # done once a run with --continue-published copies it in
        elif held_elsewhere(tier_dir, c):
            status = "running"  # by a runner on this results folder
        elif resumable_run(tier_dir / "runs" / c.name):
            status = "checkpointed"
        else:
            status = "to do"
        done = cell_progress(tier_dir, c) if status in ("running", "checkpointed") else None
        steps = f"{c.steps:>9,d} steps" if done is None else f"{done:>9,d} / {c.steps:,d} steps"
        print(f"{status:13s} {c.name:55s} {c.script:12s} {steps}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", choices=sorted(TIERS), required=True)
    p.add_argument("--workers", type=int, default=2, help="cells run side by side (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per cell (workers × threads <= cores)")
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help=f"default {DEFAULT_RESULTS}")
    p.add_argument("--publish", action="store_true", help="copy finished cells to benchmarks/results/<tier>/")
    p.add_argument(
        "--continue-published",
        action="store_true",
        help="count the cells published in benchmarks/results/<tier>/ as done (continue the campaign elsewhere)",
    )
    p.add_argument("--env-id", action="append", help="only these environments of the tier (repeatable)")
    p.add_argument("--list", action="store_true", help="print the grid with each cell's status and exit")
    p.add_argument("--force", action="store_true", help="run a tier that is not meant for this machine's CPU")
    a = p.parse_args(argv)
    tier = TIERS[a.tier]
    if a.workers < 1 or a.threads < 1:
        p.error("--workers and --threads must be >= 1")
    try:
        a.results_dir.expanduser().mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p.error(f"--results-dir {a.results_dir}: {e.strerror or e}")
    results = a.results_dir.expanduser().resolve()
    if a.env_id:
        unknown = set(a.env_id) - {t.env_id for t in tier.tasks}
        if unknown:
            p.error(f"--env-id {sorted(unknown)} not in tier {tier.name}")
    if a.list:
        list_tier(tier, results, a.continue_published)
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if a.workers * a.threads > cores:  # checked only to run: a login node lists a tier for a bigger machine
        p.error(f"--workers × --threads ({a.workers * a.threads}) exceeds the {cores} cores available")
    if not tier.runnable_on_cpu and not a.force:
        p.error(f"tier {tier.name} is {tier.description}; pass --force to run it anyway")
    only = set(a.env_id) if a.env_id else None
    return run_tier(tier, results, a.workers, a.threads, a.publish, only, a.continue_published)


if __name__ == "__main__":
    sys.exit(main())
