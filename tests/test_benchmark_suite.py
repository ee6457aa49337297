"""benchmarks/suite.py: the grid, and a runner that is stopped mid-campaign and restarted — finished cells are not
run again, an interrupted cell continues from its checkpoint, and each finished cell is one small CSV + its flags."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import suite
from suite_driver import write_driver

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_grids_are_fixed_and_complete():
    quick = suite.cells(suite.QUICK)
    assert len(quick) == 4 * 2 * 5  # envs × (SAC, PEBBLE 100) × 5 seeds
    assert [c.seed for c in quick[:8]] == [1] * 8  # seed-major: whole seeds finish first
    assert {c.labels for c in quick if c.method == "pebble"} == {100}
    assert len({c.name for c in quick}) == len(quick)
    medium = suite.cells(suite.MEDIUM)
    assert len(medium) == 4 * 2 * 3 and all(c.steps == 200_000 for c in medium)
    walker = [c for c in medium if c.env_id == "dm_control/walker-walk-v0" and c.method == "pebble"]
    assert {c.labels for c in walker} == {100}
    assert not suite.STANDARD.runnable_on_cpu
    for c in quick + medium:  # every cell's flags are flags of its script
        import importlib

        module = importlib.import_module(Path(c.script).stem)
        names = {f.name for f in __import__("dataclasses").fields(module.Args)}
        flags = {f[2:].replace("-", "_") for f in c.flags if f.startswith("--")}
        assert flags <= names, (c.name, flags - names)


def test_checkpointed_cells_start_before_fresh_ones_and_finished_ones_not_at_all(tmp_path):
    grid = suite.cells(suite.MEDIUM)[:6]  # seed 1: Hopper SAC, PEBBLE; Walker2d SAC, PEBBLE; HalfCheetah ...
    for done in grid[:1]:
        (tmp_path / f"{done.name}.csv").write_text("step,eval_return,labels,wall_seconds\n")
        (tmp_path / f"{done.name}.json").write_text("{}")
    for started in (grid[3], grid[5]):  # a run directory with a periodic checkpoint
        run = tmp_path / "runs" / started.name / "run-1"
        (run / "checkpoints" / "resume").mkdir(parents=True)
        (run / "args.json").write_text("{}")
    unstarted = tmp_path / "runs" / grid[2].name / "run-1"  # a run that died before its first checkpoint
    unstarted.mkdir(parents=True)
    (unstarted / "args.json").write_text("{}")
    order = suite.cells_to_run(tmp_path, grid)
    assert [c.name for c in order] == [grid[i].name for i in (3, 5, 1, 2, 4)]


def run_driver(tmp_path: Path, steps: int, *extra: str) -> subprocess.Popen:
    driver = write_driver(tmp_path / "driver.py", steps)
    argv = [sys.executable, str(driver), "--tier", "tiny", "--workers", "1", "--results-dir", str(tmp_path / "res")]
    env = {**os.environ, "MUJOCO_GL": "egl"}
    return subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"runner exited early:\n{proc.stdout.read()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.2)


def test_a_cell_locked_by_another_runner_is_left_to_it_and_the_lock_outlives_the_runner(tmp_path, capsys):
    """Runners sharing a results folder: the cell another runner holds is skipped (and listed as running), the
    rest run; the lock is kept by the cell's own process, and nothing is left locked once every holder is gone."""
    tier = suite.Tier("tiny", (suite.Task("InvertedPendulum-v5", 300, 300),), {"InvertedPendulum-v5": (10,)}, (1,))
    sac, pebble = suite.cells(tier)  # the same names as the driver's tier

    def listed() -> list[str]:
        capsys.readouterr()
        suite.list_tier(tier, tmp_path / "res")
        return [line.split()[0] for line in capsys.readouterr().out.splitlines()]

    tier_dir = tmp_path / "res" / "tiny"
    (tier_dir / "runs").mkdir(parents=True)
    held = suite.lock_cell(tier_dir, pebble)  # "another runner" running the PEBBLE cell
    assert held is not None and suite.lock_cell(tier_dir, pebble) is None
    proc = run_driver(tmp_path, 300)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"1 cell(s) left to the runner(s) holding them: {pebble.name}" in out
    assert suite.is_done(tier_dir, sac) and not suite.is_done(tier_dir, pebble)
    assert not (tier_dir / "runs" / pebble.name).exists()  # not touched
    assert listed() == ["done", "running"]

    # a process given the lock's file keeps the cell locked after the runner that took it has let go
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], pass_fds=(held.fileno(),))
    held.close()
    assert listed() == ["done", "running"]
    child.kill()
    child.wait()
    assert listed() == ["done", "to"]  # "to do"
    assert suite.lock_cell(tier_dir, pebble) is not None


@pytest.mark.slow  # about a minute of CPU: two tiny runs, stopped and continued in subprocesses
@pytest.mark.timeout(600)
def test_runner_stopped_and_restarted_skips_done_cells_and_resumes_the_interrupted_one(tmp_path):
    steps = 1500
    tier_dir = tmp_path / "res" / "tiny"
    sac_csv = tier_dir / "InvertedPendulum-v5__sac__seed1.csv"
    pebble_runs = tier_dir / "runs" / "InvertedPendulum-v5__pebble10__seed1"
    proc = run_driver(tmp_path, steps)
    # SAC runs first (one worker); stop the runner once PEBBLE has written a periodic checkpoint
    wait_for(lambda: sac_csv.is_file(), 300, proc)
    wait_for(lambda: any(pebble_runs.glob("*/checkpoints/resume/state.json")), 300, proc)
    sac_bytes = sac_csv.read_bytes()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 130, out
    assert not (tier_dir / "InvertedPendulum-v5__pebble10__seed1.csv").exists()

    proc = run_driver(tmp_path, steps)
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out
    assert sac_csv.read_bytes() == sac_bytes  # the finished cell was not run again
    sac_meta = json.loads(sac_csv.with_suffix(".json").read_text())
    assert len(sac_meta["attempts"]) == 1 and sac_meta["final_step"] == steps
    meta = json.loads((tier_dir / "InvertedPendulum-v5__pebble10__seed1.json").read_text())
    assert [a["resumed"] for a in meta["attempts"]] == [False, True]
    assert meta["attempts"][0]["exit"] == 130 and meta["attempts"][1]["exit"] == 0
    with open(tier_dir / "InvertedPendulum-v5__pebble10__seed1.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "eval_return", "labels", "wall_seconds"]
    assert [int(r["step"]) for r in rows] == list(range(300, steps + 1, 300))
    assert int(rows[-1]["labels"]) == 10 and meta["final_labels"] == 10
    walls = [float(r["wall_seconds"]) for r in rows]
    assert walls == sorted(walls) and walls[0] > 0
    # the reward model after each of its 2 updates (5 queries each); SAC has none
    with open(tier_dir / "InvertedPendulum-v5__pebble10__seed1.reward-model.csv", newline="") as f:
        updates = list(csv.DictReader(f))
    assert [int(u["labels"]) for u in updates] == [5, 10]
    assert all(0 <= float(u["val_accuracy"]) <= 1 and 1 <= float(u["epochs"]) <= 3 for u in updates)
    assert not (tier_dir / "InvertedPendulum-v5__sac__seed1.reward-model.csv").exists()

    # --list reports every cell done; a third call has nothing to do
    listing = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "driver.py"),
            "--tier",
            "tiny",
            "--list",
            "--results-dir",
            str(tmp_path / "res"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [line.split()[0] for line in listing.splitlines()] == ["done", "done"]


def test_reward_model_rows_are_the_scalars_at_each_update(tmp_path):
    """One row per reward-model update, with the labels it was trained on (the total logged at its step) and a
    scalar the run did not log read as NaN; a run without a reward model (SAC) has no rows and no file."""
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    with SummaryWriter(str(run)) as w:
        for step, labels, val, train in ((2000, 10, 0.5, 1.0), (3000, 20, 0.75, 0.9)):
            w.add_scalar("feedback/total_labels", labels, step)
            w.add_scalar("reward_model/val_accuracy", val, step)
            w.add_scalar("reward_model/train_accuracy", train, step)
            w.add_scalar("reward_model/epochs", 7, step)
        w.add_scalar("reward_model/pearson", 0.25, 3000)
        w.add_scalar("eval/mean_return", 1.0, 4000)
    rows = suite.reward_model_rows(run)
    assert [(r["step"], r["labels"], r["val_accuracy"], r["train_accuracy"], r["epochs"]) for r in rows] == [
        (2000, 10, 0.5, 1.0, 7.0),
        (3000, 20, 0.75, 0.9, 7.0),
    ]
    assert np.isnan(rows[0]["pearson"]) and rows[1]["pearson"] == 0.25
    cell = suite.cells(suite.QUICK)[1]
    assert suite.write_reward_model(cell, tmp_path, run)
    assert (tmp_path / f"{cell.name}.reward-model.csv").read_text().splitlines()[1] == "2000,10,7.0,1.0,0.5,nan"
    sac_run = tmp_path / "sac"
    with SummaryWriter(str(sac_run)) as w:
        w.add_scalar("eval/mean_return", 1.0, 1000)
    assert suite.reward_model_rows(sac_run) == [] and not suite.write_reward_model(cell, tmp_path / "x", sac_run)


def test_bad_runner_flags_are_one_line_errors(tmp_path):
    regular_file = tmp_path / "file"
    regular_file.write_text("x")
    for argv, needle in (
        (["--tier", "quick", "--workers", "64"], "exceeds"),
        (["--tier", "quick", "--results-dir", str(regular_file / "sub")], "--results-dir"),
        (["--tier", "quick", "--env-id", "Nope-v0"], "not in tier"),
        (["--tier", "standard"], "--force"),
    ):
        r = subprocess.run(
            [sys.executable, str(REPO_ROOT / "benchmarks" / "suite.py"), *argv], capture_output=True, text=True
        )
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (argv, r.stderr)


def test_continue_published_adopts_only_finished_published_cells(tmp_path):
    """--continue-published: a cell finished in the published folder is copied into a new results folder and counts
    as done (with its reward-model file); a cell published only in part, or one the results folder already
    finished, is not touched; without the flag nothing is adopted (regenerating runs every cell)."""
    grid = suite.cells(suite.QUICK)[:3]  # InvertedPendulum: SAC and PEBBLE seed 1, SAC seed 2
    published, tier_dir = tmp_path / "published", tmp_path / "res" / "quick"
    src = published / "quick"
    src.mkdir(parents=True)
    for suffix, text in ((".csv", "a"), (".json", "{}"), (".reward-model.csv", "rm")):
        (src / f"{grid[1].name}{suffix}").write_text(text)
    (src / f"{grid[2].name}.csv").write_text("partial")  # no .json: not finished
    (src / f"{grid[0].name}.csv").write_text("published")
    (src / f"{grid[0].name}.json").write_text("{}")
    tier_dir.mkdir(parents=True)
    (tier_dir / f"{grid[0].name}.csv").write_text("mine")
    (tier_dir / f"{grid[0].name}.json").write_text("{}")

    assert [suite.is_done(tier_dir, c) for c in grid] == [True, False, False]
    assert suite.adopt_published(tier_dir, grid, published) == [grid[1].name]
    assert [suite.is_done(tier_dir, c) for c in grid] == [True, True, False]
    assert (tier_dir / f"{grid[1].name}.reward-model.csv").read_text() == "rm"
    assert (tier_dir / f"{grid[0].name}.csv").read_text() == "mine"
    assert suite.adopt_published(tier_dir, grid, published) == []  # idempotent


def test_list_shows_published_cells_only_with_continue_published(tmp_path, monkeypatch, capsys):
    cell = suite.cells(suite.QUICK)[0]
    monkeypatch.setattr(suite, "PUBLISHED", tmp_path / "published")
    (tmp_path / "published" / "quick").mkdir(parents=True)
    for suffix in (".csv", ".json"):
        (tmp_path / "published" / "quick" / f"{cell.name}{suffix}").write_text("x")
    for argv, status in (([], "to do"), (["--continue-published"], "published")):
        assert suite.main(["--tier", "quick", "--list", "--results-dir", str(tmp_path / "res"), *argv]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first.startswith(status) and cell.name in first, first
    assert not (tmp_path / "res" / "quick" / f"{cell.name}.csv").exists()  # --list copies nothing


def test_progress_of_a_started_cell_is_its_run_json_step_and_the_eta_counts_only_what_is_left(tmp_path, capsys):
    """--list shows a checkpointed cell's recorded steps; the ETA is the steps left at the rate trained so far."""
    from rlhf.manifest import write_manifest

    tier = suite.Tier("tiny", (suite.Task("InvertedPendulum-v5", 300, 300),), {"InvertedPendulum-v5": (10,)}, (1,))
    sac, pebble = suite.cells(tier)
    tier_dir = tmp_path / "res" / "tiny"
    run = tier_dir / "runs" / pebble.name / "run-1"
    (run / "checkpoints" / "resume").mkdir(parents=True)
    (run / "args.json").write_text("{}")
    write_manifest(run, algorithm="sac_rlhf", env_id="InvertedPendulum-v5", seed=1, status="interrupted", step=120)
    assert suite.cell_progress(tier_dir, pebble) == 120 and suite.cell_progress(tier_dir, sac) == 0
    suite.list_tier(tier, tmp_path / "res")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "to" and lines[0].endswith(" 300 steps")
    assert lines[1].split()[0] == "checkpointed" and lines[1].endswith(" 120 / 300 steps")
    (run / "run.json").write_text("{not json")  # a damaged manifest counts as no progress, not a crash
    assert suite.cell_progress(tier_dir, pebble) == 0
    # 1 000 steps trained in 50 s: 20 steps/s, so 3 000 steps left take 150 s; nothing trained yet: unknown
    assert suite.estimate_eta(1000, 50.0, 3000) == 150.0
    assert suite.estimate_eta(0, 50.0, 3000) != suite.estimate_eta(0, 50.0, 3000)  # NaN
    assert suite.estimate_eta(1000, 50.0, 0) == 0.0
    assert suite.format_eta(150.0 * 60) == "2h30m"
