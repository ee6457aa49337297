"""What a run leaves behind with --capture-video and --track: decodable videos, the query clip index with its
labels, and an offline W&B run with the metrics (WANDB_MODE=offline, set in conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import sac_rlhf
from conftest import REPO_ROOT
from script_runs import TINY_SAC_RLHF, argv, run_in_process

from rlhf.checkpoint import load_state


def test_capture_video_and_offline_wandb(tmp_path):
    m = run_in_process(
        sac_rlhf,
        argv(
            TINY_SAC_RLHF,
            tmp_path,
            "--capture-video",
            "--track",
            total_timesteps=600,
            evaluation_frequency=600,
            teacher_feedback_total_queries=10,
        ),
    )
    run_dir = Path(m["run_dir"])
    (video,) = (run_dir / "videos" / "eval").glob("step_*.mp4")
    frames = iio.imread(video)
    assert frames.ndim == 4 and frames.shape[0] >= 2 and frames.shape[-1] == 3 and frames.max() > 0

    index = [json.loads(line) for line in (run_dir / "videos" / "queries" / "index.jsonl").read_text().splitlines()]
    prefs = load_state(run_dir / "checkpoints" / "final")["feedback"]["preferences"]
    given = [row["label"] for row in index if row["label"] is not None]
    np.testing.assert_array_equal(given, prefs["labels"])  # the index shows the labels the model learned from
    assert index[0]["clip_a"].endswith(".mp4")
    clip = iio.imread(run_dir / "videos" / "queries" / index[0]["clip_a"])
    assert clip.shape[0] == 16  # one frame per step of the segment

    (wandb_file,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    blob = wandb_file.read_bytes()
    for key in (b"charts/episodic_return", b"reward_model/val_accuracy", b"feedback/total_labels", b"eval/mean_return"):
        assert key in blob, key


def test_render_mode_human_without_a_display_is_a_clear_error(tmp_path):
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run(
        [sys.executable, "framework/sac_rlhf.py", "--render-mode", "human", "--runs-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2 and "needs a display" in out.stderr
