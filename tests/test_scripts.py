"""scripts/: one launch script per task, each saying where its values come from, each runnable from the
repository root with budget flags appended (later flags win)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from rlhf.runs import read_scalars

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "scripts").glob("*.sh"))
MUJOCO = ["Ant", "HalfCheetah", "Hopper", "Humanoid", "HumanoidStandup", "InvertedDoublePendulum",
          "InvertedPendulum", "Pusher", "Reacher", "Swimmer", "Walker2d"]  # fmt: skip
DMC = ["walker_walk", "cheetah_run", "quadruped_walk"]
BUDGET = ["--total-timesteps", "120", "--total-explore-steps", "40", "--explore-learning-starts", "20",
          "--learning-starts", "40", "--teacher-feedback-total-queries", "4",
          "--teacher-feedback-num-queries-per-session", "2", "--trajectory-length", "16", "--batch-size", "8",
          "--explore-batch-size", "8", "--actor-and-q-net-hidden-dim", "8", "--reward-net-hidden-dim", "8",
          "--teacher-update-epochs", "2", "--evaluation-frequency", "120", "--evaluation-episodes", "1",
          "--log-frequency", "40", "--buffer-size", "500", "--no-progress-bar", "--log-level", "WARNING"]  # fmt: skip


def flags(script: Path) -> dict[str, str]:
    tokens = shlex.split(script.read_text().split("framework/", 1)[1].replace("\\\n", " "), comments=True)
    out, key = {}, None
    for t in tokens[1:]:
        if t.startswith("--"):
            key, out[t] = t, ""
        elif key and t != "$@":
            out[key], key = t, None
    return out


def test_a_synthetic_pebble_script_for_every_task():
    names = {p.name for p in SCRIPTS}
    expected = {f"synthetic_sac_rlhf_{m}_v5.sh" for m in MUJOCO} | {
        f"synthetic_sac_rlhf_dm_control_{t}_v0.sh" for t in DMC
    }
    assert expected <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_says_where_its_values_come_from(script):
    header = "".join(line for line in script.read_text().splitlines(keepends=True)[1:6] if line.startswith("#"))
    study = re.search(r"local Optuna study of ours, study '([^']+)'", header)
    assert study or "a paper's configuration" in header, header
    if study:  # the study's result file is committed and the script holds its best configuration
        result = json.loads((REPO / "scripts" / "studies" / f"{study[1]}.json").read_text())
        assert result["launch_script"] == f"scripts/{script.name}"
        assert len(result["trials"]) >= 2 and len(result["held_out"]["per_seed"]) >= 1
        assert set(result["held_out"]["seeds"]).isdisjoint(result["seeds"])
        given = flags(script)
        for name, value in result["best"]["params"].items():
            assert given[f"--{name.replace('_', '-')}"] == str(value)
        assert f"{result['held_out']['mean']:.2f}" in header


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_runs_a_few_steps(script, tmp_path):
    out = subprocess.run(["bash", str(script), *BUDGET, "--runs-dir", str(tmp_path)], capture_output=True, text=True,
                         timeout=600, cwd=REPO)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    args = json.loads((run_dir / "args.json").read_text())
    assert args["env_id"] == flags(script)["--env-id"] and args["total_timesteps"] == 120
    assert read_scalars(run_dir)["eval/mean_return"][-1].step == 120
