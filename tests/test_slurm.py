"""slurm/: the array template on a real SLURM cluster (a single node started by slurm/cluster_up.sh, as .ci/run
does): a 2 x 2 grid of env ids x seeds runs to completion, and a task stopped with SIGTERM saves a checkpoint,
requeues itself and, started again, continues the same run with --resume to the same final step."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rlhf.checkpoint import load_state
from rlhf.runs import read_scalars

REPO = Path(__file__).resolve().parents[1]
pytestmark = [
    pytest.mark.skipif(
        shutil.which("sbatch") is None,
        reason="no sbatch on this machine: these tests need SLURM; .ci/run starts a one-node cluster "
        "(sudo slurm/cluster_up.sh) and runs them with `uv run pytest -m slow tests/test_slurm.py`",
    ),
    pytest.mark.slow,
    pytest.mark.timeout(1500),  # jobs queue behind each other on the two CPUs
    pytest.mark.xdist_group("slurm"),  # one at a time: they share the cluster's two CPUs
]
TINY_SAC = ["--total-timesteps", "300", "--learning-starts", "100", "--batch-size", "16",
            "--actor-and-q-net-hidden-dim", "16", "--buffer-size", "1000", "--evaluation-frequency", "150",
            "--evaluation-episodes", "1", "--log-frequency", "50"]  # fmt: skip
TINY_PEBBLE = ["--total-timesteps", "4000", "--total-explore-steps", "300", "--explore-learning-starts", "100",
               "--learning-starts", "300", "--teacher-feedback-total-queries", "10",
               "--teacher-feedback-num-queries-per-session", "5", "--trajectory-length", "16", "--batch-size", "32",
               "--explore-batch-size", "32", "--actor-and-q-net-hidden-dim", "32", "--reward-net-hidden-dim", "32",
               "--teacher-update-epochs", "5", "--evaluation-frequency", "500", "--evaluation-episodes", "1",
               "--log-frequency", "100", "--buffer-size", "5000"]  # fmt: skip


def sh(*cmd: str, **kw) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    assert out.returncode == 0, f"{cmd}: {out.stdout}{out.stderr}"
    return out.stdout.strip()


@pytest.fixture(scope="module", autouse=True)
def cluster():
    if subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0:
        pytest.fail("sbatch is installed but no slurmctld answers: start one with `sudo slurm/cluster_up.sh`")


def submit(tmp_path: Path, env_ids: str, seeds: str, script: str, flags: list[str], **env) -> str:
    environ = {**os.environ, "SBATCH_EXTRA": f"--cpus-per-task=1 --mem=1G --output={tmp_path}/%x_%A_%a.out "
               f"--job-name=test-{tmp_path.name[:20]}", **env}  # fmt: skip
    return sh(str(REPO / "slurm" / "submit.sh"), "array", "--env-ids", env_ids, "--seeds", seeds, "--script", script,
              "--runs-dir", str(tmp_path / "runs"), "--", *flags, cwd=REPO, env=environ)  # fmt: skip


def states(job: str) -> dict[str, str]:
    out = sh("squeue", "-h", "-t", "all", "-j", job, "-o", "%i %T")
    return dict(line.split() for line in out.splitlines())


def wait_for(predicate, timeout: float, what: str) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_array_template_runs_a_grid_of_env_ids_by_seeds(tmp_path):
    t0 = time.time()
    job = submit(tmp_path, "InvertedPendulum-v5 Reacher-v5", "1 2", "framework/sac.py", TINY_SAC)
    wait_for(lambda: not sh("squeue", "-h", "-j", job), 900, f"array job {job}")
    print(f"2 x 2 grid finished in {time.time() - t0:.0f} s")
    assert states(job) == {f"{job}_{i}": "COMPLETED" for i in range(4)}
    for env_id in ("InvertedPendulum-v5", "Reacher-v5"):
        for seed in (1, 2):
            (run_dir,) = (tmp_path / "runs" / env_id / f"seed_{seed}").iterdir()
            args = json.loads((run_dir / "args.json").read_text())
            assert (args["env_id"], args["seed"], args["total_timesteps"]) == (env_id, seed, 300)
            assert [s.step for s in read_scalars(run_dir)["eval/mean_return"]] == [150, 300]
    logs = sorted(tmp_path.glob("*.out"))
    assert len(logs) == 4 and all("finished with status 0" in p.read_text() for p in logs)


def test_sigterm_checkpoints_requeues_and_resumes_to_the_same_final_step(tmp_path):
    t0 = time.time()
    job = submit(tmp_path, "InvertedPendulum-v5", "3", "framework/sac_rlhf.py", TINY_PEBBLE)
    task = f"{job}_0"
    task_dir = tmp_path / "runs" / "InvertedPendulum-v5" / "seed_3"
    # mid-run: exploration (the first 300 of 4000 steps) is over and saved
    wait_for(lambda: any(task_dir.glob("*/exploration/agent.json")), 600, "the end of exploration")
    sh("scancel", "--signal=TERM", "--batch", task)  # what --signal=B:TERM@120 does before a time limit
    wait_for(lambda: states(job).get(task) == "PENDING", 120, "the requeue")
    t_requeue = time.time()
    sh("scontrol", "update", f"jobid={task}", "StartTime=now")  # skip the cred_expire hold (about 20 s)
    wait_for(lambda: not sh("squeue", "-h", "-j", job), 900, "the requeued task")
    print(f"signal-requeue-resume finished in {time.time() - t0:.0f} s ({time.time() - t_requeue:.0f} s after requeue)")
    assert states(job) == {task: "COMPLETED"}
    (log,) = tmp_path.glob("*.out")
    text = log.read_text()
    assert "restart 0" in text and "restart 1" in text
    assert "SIGTERM at" in text and "training process exited with status 130 after saving its checkpoint" in text
    assert f"requeued {job}" in text or "requeued " in text
    (run_dir,) = task_dir.iterdir()  # one run, continued
    assert f"--resume {run_dir}" in text
    resumed = [int(m) for m in re.findall(r"resuming \S+ at step (\d+)", text)]
    assert len(resumed) == 1 and 300 <= resumed[0] < 4000
    assert load_state(run_dir / "checkpoints" / "final")["step"] == 4000
    assert read_scalars(run_dir)["eval/mean_return"][-1].step == 4000
    assert "finished with status 0" in text.rsplit("restart 1", 1)[1]


def test_sweep_workers_join_one_study(tmp_path):
    import optuna
    import yaml

    from rlhf.sweep_optuna import make_storage

    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({
        "name": "slurm-sweep", "method": "random", "metric": {"name": "eval/mean_return", "goal": "maximize"},
        "parameters": {"policy_lr": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.001}},
    }))  # fmt: skip
    storage = tmp_path / "study.log"
    environ = {**os.environ, "SBATCH_EXTRA": f"--cpus-per-task=1 --mem=1G --output={tmp_path}/%x_%A_%a.out"}
    t0 = time.time()
    job = sh(str(REPO / "slurm" / "submit.sh"), "sweep", "--workers", "2", "--config", str(config), "--count", "1",
             "--storage", str(storage), "--runs-dir", str(tmp_path / "runs"), "--algorithm", "sac", "--seeds", "1 2",
             "--", "--env-id", "InvertedPendulum-v5", *TINY_SAC, cwd=REPO, env=environ)  # fmt: skip
    wait_for(lambda: not sh("squeue", "-h", "-j", job), 900, f"sweep job {job}")
    print(f"2 sweep workers finished in {time.time() - t0:.0f} s")
    assert states(job) == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}
    study = optuna.load_study(study_name="slurm-sweep", storage=make_storage(str(storage)))
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert study.trials[0].params != study.trials[1].params  # each worker has its own sampler seed


def test_suite_runners_share_one_results_folder_and_continue_after_a_requeue(tmp_path):
    """Two array tasks of slurm/suite.sbatch on one results folder run the tiny tier's two cells once each; SIGTERM
    to both (as before a time limit) checkpoints the running cells, requeues the tasks, and the cells continue."""
    from suite_driver import write_driver

    driver = write_driver(tmp_path / "driver.py", 1500)
    environ = {**os.environ, "CLEANRLHF_SUITE": str(driver),
               "SBATCH_EXTRA": f"--cpus-per-task=1 --mem=2G --output={tmp_path}/%x_%A_%a.out"}  # fmt: skip
    t0 = time.time()
    job = sh(str(REPO / "slurm" / "submit.sh"), "suite", "--tasks", "2", "--", "--tier", "tiny", "--results-dir",
             str(tmp_path / "res"), cwd=REPO, env=environ)  # fmt: skip
    tier_dir = tmp_path / "res" / "tiny"
    pebble = "InvertedPendulum-v5__pebble10__seed1"
    wait_for(lambda: any((tier_dir / "runs" / pebble).glob("*/checkpoints/resume/state.json")), 600, "a checkpoint")
    sh("scancel", "--signal=TERM", "--batch", job)  # every task of the array
    wait_for(lambda: set(states(job).values()) <= {"PENDING", "COMPLETED"}, 300, "the requeues")
    for task, state in states(job).items():
        if state == "PENDING":
            sh("scontrol", "update", f"jobid={task}", "StartTime=now")  # skip the cred_expire hold (about 20 s)
    wait_for(lambda: not sh("squeue", "-h", "-j", job), 900, f"suite job {job}")
    print(f"2 suite runners finished in {time.time() - t0:.0f} s")
    assert states(job) == {f"{job}_0": "COMPLETED", f"{job}_1": "COMPLETED"}
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("*.out")))
    assert "SIGTERM at" in logs and "requeued " in logs and "restart 1" in logs
    assert "left to the runner(s) holding them" in logs  # a runner found the other's cell locked
    for name in ("InvertedPendulum-v5__sac__seed1", pebble):
        meta = json.loads((tier_dir / f"{name}.json").read_text())
        assert meta["final_step"] == 1500, name
        assert meta["attempts"][-1] == {**meta["attempts"][-1], "exit": 0}
        assert all(a["exit"] in (0, 130) for a in meta["attempts"])
        assert len(list((tier_dir / "runs" / name).glob("*/args.json"))) == 1  # one run, never started twice
    attempts = json.loads((tier_dir / f"{pebble}.json").read_text())["attempts"]
    assert [a["resumed"] for a in attempts] == [False, True] and attempts[0]["exit"] == 130
