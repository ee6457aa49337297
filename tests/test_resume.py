"""Exact resume: a run killed with SIGKILL after a checkpoint and resumed with --resume ends in the same state
(weights, labels, step) as the same run uninterrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT
from script_runs import TINY_SAC_RLHF, argv

from rlhf.checkpoint import CheckpointError, load_state

RESUMABLE = {
    **TINY_SAC_RLHF,
    "--total-timesteps": 1500,
    "--checkpoint-frequency": 400,
    "--threads": 1,
    "--teacher-feedback-total-queries": 25,
    "--evaluation-frequency": 750,
}


def script(*args: str) -> list[str]:
    return [sys.executable, "framework/sac_rlhf.py", *args]


def assert_same_final_state(a: Path, b: Path) -> None:
    sa, sb = load_state(a / "checkpoints" / "final"), load_state(b / "checkpoints" / "final")
    assert sa["step"] == sb["step"] == 1500
    for key in ("agent", "reward_ensemble"):
        for name, tensor in sa[key].items():
            assert torch.equal(tensor, sb[key][name]), f"{key}.{name} differs"
    np.testing.assert_array_equal(sa["preferences"]["labels"], sb["preferences"]["labels"])
    np.testing.assert_array_equal(sa["preferences"]["a_obs"], sb["preferences"]["a_obs"])
    assert sa["feedback_stats"] == sb["feedback_stats"]


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    whole = subprocess.run(
        script(*argv(RESUMABLE, tmp_path / "whole")), cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert whole.returncode == 0, whole.stderr[-3000:]

    proc = subprocess.Popen(
        script(*argv(RESUMABLE, tmp_path / "killed")),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not list((tmp_path / "killed").glob("*/checkpoints/resume/state.json")):
        assert proc.poll() is None, "the run ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run_dir,) = (tmp_path / "killed").iterdir()
    assert not (run_dir / "checkpoints" / "final.json").exists()  # it really died mid-run
    resumed = subprocess.run(
        script("--resume", str(run_dir), "--no-progress-bar", "--threads", "1"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr
    (whole_dir,) = (tmp_path / "whole").iterdir()
    assert_same_final_state(whole_dir, run_dir)
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # the resumed run appends to the same run


def test_resume_of_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    out = subprocess.run(
        script(*argv(RESUMABLE, tmp_path, total_timesteps=600, evaluation_frequency=600)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    blob = run_dir / "checkpoints" / "resume" / "replay_buffer.safetensors"
    blob.write_bytes(blob.read_bytes()[:1000])
    out = subprocess.run(script("--resume", str(run_dir)), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "does not match its checksum" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(CheckpointError):
        load_state(blob.with_suffix(""))


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
    """A cluster scheduler's SIGTERM is handled like Ctrl-C: a checkpoint is written and the run can continue."""
    proc = subprocess.Popen(
        script(*argv(RESUMABLE, tmp_path, checkpoint_frequency=100_000)),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not list(tmp_path.glob("*/exploration/agent.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    (run_dir,) = tmp_path.iterdir()
    step = load_state(run_dir / "checkpoints" / "final")["step"]
    assert 300 <= step < 1500
    resumed = subprocess.run(
        script("--resume", str(run_dir), "--no-progress-bar"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_state(run_dir / "checkpoints" / "final")["step"] == 1500
