from pathlib import Path

import numpy as np
import sac
from script_runs import argv, run_in_process, scalars

from rlhf.checkpoint import load_state
from rlhf.manifest import read_manifest

TINY_SAC = {
    "--total-timesteps": 600,
    "--learning-starts": 200,
    "--batch-size": 32,
    "--actor-and-q-net-hidden-dim": 32,
    "--evaluation-frequency": 300,
    "--evaluation-episodes": 1,
    "--log-frequency": 100,
}


def test_sac_runs_logs_and_checkpoints(tmp_path):
    m = run_in_process(sac, argv(TINY_SAC, tmp_path, "--capture-video"))
    assert (
        len(list((Path(m["run_dir"]) / "videos" / "eval").glob("step_*.mp4"))) == 2
    )  # at 300 and 600 (the end, already evaluated, reuses it)
    assert m["step"] == 600 and np.isfinite(m["eval/mean_return"])
    s = scalars(m["run_dir"])
    assert {"charts/episodic_return", "losses/qf1_loss", "losses/actor_loss", "eval/mean_return"} <= set(s)
    ckpt = load_state(Path(m["run_dir"]) / "checkpoints" / "final")
    assert ckpt["algorithm"] == "sac" and ckpt["step"] == 600
    manifest = read_manifest(Path(m["run_dir"]))
    assert (manifest["algorithm"], manifest["status"], manifest["step"]) == ("sac", "finished", 600)
    assert "eval_videos" in manifest["paths"] and "preferences" not in manifest["paths"]


def test_early_stopping_stops(tmp_path):
    m = run_in_process(
        sac,
        argv(
            TINY_SAC,
            tmp_path,
            "--early-stopping",
            early_stopping_step=300,
            early_stopping_mean=-1e9,
            total_timesteps=3000,
        ),
    )
    assert m["step"] == 300
