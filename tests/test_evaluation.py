"""framework/evaluation.py on real and hand-built checkpoints: statistics, re-readable mp4s, the plot, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import evaluation
import numpy as np
import pref_ppo
import pytest
import sac_rlhf
import torch
import tyro
from conftest import FRAMEWORK, REPO_ROOT
from script_runs import TINY_SAC_RLHF, argv, run_in_process
from test_pref_ppo_labels import TINY_PREF_PPO

from rlhf.agent import SAC, SACConfig
from rlhf.checkpoint import load_state, save_state
from rlhf.evaluate import summary
from rlhf.ppo_agent import PPOAgent

HOPPER_OBS, HOPPER_ACT = 11, 3
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def evaluate(*flags: str) -> dict:
    return evaluation.main(tyro.cli(evaluation.Args, args=list(flags)))


def decode(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    return iio.imread(path)  # (T, h, w, 3)


def fake_sac_checkpoint(run_dir: Path, hidden_dim: int = 16, hidden_layers: int = 2) -> Path:
    """A run directory holding a sac.py-style final checkpoint of an untrained agent."""
    torch.manual_seed(0)
    low, high = -np.ones(HOPPER_ACT, np.float32), np.ones(HOPPER_ACT, np.float32)
    agent = SAC(HOPPER_OBS, HOPPER_ACT, low, high, SACConfig(hidden_dim=hidden_dim, hidden_layers=hidden_layers))
    args = {
        "env_id": "Hopper-v5",
        "actor_and_q_net_hidden_dim": hidden_dim,
        "actor_and_q_net_hidden_layers": hidden_layers,
    }
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "args.json").write_text(json.dumps(args))
    save_state(
        run_dir / "checkpoints" / "final",
        {"algorithm": "sac", "env_id": "Hopper-v5", "step": 600, "agent": agent.state_dict(), "args": args},
    )
    return run_dir


def check_outputs(result: dict, episodes: int, videos: int) -> None:
    out = Path(result["output_dir"])
    assert len(result["returns"]) == episodes and all(np.isfinite(result["returns"]))
    stats = summary(np.asarray(result["returns"]))
    for key in ("mean", "std", "ci95_low", "ci95_high", "min", "max", "median"):
        assert result[key] == pytest.approx(stats[key])
    assert json.loads((out / "summary.json").read_text())["mean"] == pytest.approx(result["mean"])
    assert (out / "returns.png").read_bytes()[:8] == PNG_MAGIC
    assert len(result["videos"]) == videos
    for name, length in zip(result["videos"], result["lengths"][: len(result["videos"])], strict=True):
        frames = decode(out / name)
        assert frames.ndim == 4 and frames.shape[-1] == 3 and frames.shape[0] >= 2
        assert frames.shape[0] <= length + 1  # at most one frame per step (+ the final state)
        assert frames.std() > 0  # not a blank picture


def test_real_sac_rlhf_checkpoint(tmp_path, capsys):
    trained = run_in_process(sac_rlhf, argv(TINY_SAC_RLHF, tmp_path / "runs"))
    run_dir = Path(trained["run_dir"])
    capsys.readouterr()
    result = evaluate("--path-to-model", str(run_dir), "--episodes", "2", "--video-size", "64")
    printed = capsys.readouterr().out
    assert result["algorithm"] == "sac_rlhf" and result["env_id"] == "Hopper-v5" and result["step"] == 900
    assert Path(result["output_dir"]) == run_dir / "evaluation"
    check_outputs(result, episodes=2, videos=2)
    for word in ("mean", "std", "95% CI", "min", "max", "median"):
        assert word in printed
    assert f"mean {result['mean']:.2f}" in printed

    # the same checkpoint named by its file, without video; same seed -> same returns (deterministic policy)
    again = evaluate(
        "--path-to-model",
        str(run_dir / "checkpoints" / "final.safetensors"),
        "--episodes",
        "1",
        "--no-capture-video",
        "--output-dir",
        str(tmp_path / "again"),
    )
    assert again["returns"] == result["returns"][:1] and again["videos"] == []
    # the exploration checkpoint holds only the agent: the rest comes from the run's args.json
    explore = evaluate(
        "--path-to-model",
        str(run_dir / "exploration" / "agent"),
        "--episodes",
        "1",
        "--no-capture-video",
        "--output-dir",
        str(tmp_path / "explore"),
    )
    assert explore["algorithm"] == "sac" and explore["env_id"] == "Hopper-v5"
    # with the seed of the script's final evaluation (seed + 10000 + step), the same return as the script logged
    final = evaluate(
        "--path-to-model",
        str(run_dir),
        "--episodes",
        "1",
        "--seed",
        str(1 + 10_000 + 900),
        "--no-capture-video",
        "--output-dir",
        str(tmp_path / "final"),
    )
    assert final["mean"] == pytest.approx(trained["eval/mean_return"], rel=1e-9)


def test_real_pref_ppo_checkpoint_reproduces_the_scripts_final_evaluation(tmp_path):
    trained = run_in_process(pref_ppo, argv(TINY_PREF_PPO, tmp_path / "runs"))
    step = int(trained["step"])
    result = evaluate(
        "--path-to-model", trained["run_dir"], "--episodes", "1", "--seed", str(1 + 10_000 + step), "--video-size", "64"
    )
    assert result["algorithm"] == "pref_ppo" and result["env_id"] == "InvertedPendulum-v5" and result["step"] == step
    check_outputs(result, episodes=1, videos=1)
    # the observation-normalisation statistics stored with the agent are used: same return as the script's
    assert result["mean"] == pytest.approx(trained["eval/mean_return"], rel=1e-9)


def test_sac_checkpoint_with_a_subset_of_episodes_filmed(tmp_path):
    run_dir = fake_sac_checkpoint(tmp_path / "Hopper-v5__sac__1__1", hidden_dim=8, hidden_layers=3)
    result = evaluate(
        "--path-to-model",
        str(run_dir / "checkpoints" / "final"),
        "--episodes",
        "3",
        "--video-episodes",
        "1",
        "--video-size",
        "64",
        "--seed",
        "5",
    )
    assert result["algorithm"] == "sac" and result["seed"] == 5
    check_outputs(result, episodes=3, videos=1)
    assert decode(Path(result["output_dir"]) / "episode_000.mp4").shape[1:] == (64, 64, 3)


def test_gifs_are_the_start_of_each_filmed_episode_at_half_the_video_rate(tmp_path):
    """--gif-seconds: Hopper's video plays at 25 fps (every 5th of its 125 steps a second), its GIF at 12.5 (every
    2nd video frame, 80 ms each), looping, and holds the same pictures; a GIF without video is a clear error."""
    from PIL import Image

    run_dir = fake_sac_checkpoint(tmp_path / "Hopper-v5__sac__1__1", hidden_dim=8)
    flags = ["--path-to-model", str(run_dir), "--episodes", "2", "--video-episodes", "1", "--video-size", "64"]
    result = evaluate(*flags, "--gif-seconds", "0.4")  # 0.4 s = 10 video frames -> 5 GIF frames at most
    out = Path(result["output_dir"])
    assert result["gifs"] == ["episode_000.gif"] and not (out / "episode_001.gif").exists()
    video = decode(out / "episode_000.mp4").astype(np.float64)
    gif = Image.open(out / "episode_000.gif")
    frames = []
    for i in range(gif.n_frames):
        gif.seek(i)
        frames.append(np.asarray(gif.convert("RGB"), np.float64))
        assert gif.info["duration"] == 80
    assert gif.info["loop"] == 0
    assert len(frames) == -(-min(10, len(video)) // 2)  # every 2nd of the first (up to) 10 video frames
    for i, frame in enumerate(frames):  # the same pictures, up to H.264's and the palette's losses
        assert np.abs(frame - video[2 * i]).mean() < 6
    assert np.abs(frames[0] - video[1]).mean() > np.abs(frames[0] - video[0]).mean()
    with pytest.raises(evaluation.EvaluationError, match="needs --capture-video"):
        evaluate(*flags, "--gif-seconds", "1", "--no-capture-video")
    with pytest.raises(evaluation.EvaluationError, match="--gif-seconds must be >= 0"):
        evaluate(*flags, "--gif-seconds", "-1")


def test_a_behaviour_criterion_scores_each_episode_beside_the_true_return(tmp_path, capsys):
    """A run taught by --teacher-sim-reward is scored by its criterion too, on each whole episode: a criterion of 1
    per step sums to the episode's length, and the observation's first coordinate (Hopper's torso height) to what
    the same seeded episodes give by hand; --criterion none leaves it out; a broken criterion is an error."""
    crit = tmp_path / "crit.py"
    crit.write_text("import numpy as np\ndef ones(t):\n    return np.ones(t.mask.shape)\n"
                    "def height(t):\n    return t.obs[..., 0]\ndef broken(t):\n    return t.obs[..., 0, 0]\n")  # fmt: skip
    run_dir = fake_sac_checkpoint(tmp_path / "Hopper-v5__sac_rlhf__1__1", hidden_dim=8)
    from rlhf.checkpoint import load_state

    state = load_state(run_dir / "checkpoints" / "final")
    state["args"]["teacher_sim_reward"] = f"{crit}:ones"  # as sac_rlhf.py's checkpoints record their flags
    save_state(run_dir / "checkpoints" / "final", state)
    flags = ["--path-to-model", str(run_dir), "--episodes", "2", "--no-capture-video"]
    result = evaluate(*flags)
    assert result["criterion"] == f"{crit}:ones" and result["criterion_returns"] == result["lengths"]
    assert json.loads((run_dir / "evaluation" / "summary.json").read_text())["criterion_returns"] == result["lengths"]
    assert f"criterion {crit}:ones: episodes 2: mean" in capsys.readouterr().out

    height = evaluate(*flags, "--criterion", f"{crit}:height")
    from rlhf.envs import make_env

    ckpt_state = evaluation.load_checkpoint(run_dir / "checkpoints" / "final", run_dir)
    env = make_env("Hopper-v5", seed=1)
    policy = evaluation.make_policy(ckpt_state, HOPPER_OBS, HOPPER_ACT, env.action_space.low, env.action_space.high)
    by_hand = []
    for i in range(2):
        obs, _ = env.reset(seed=1 + i)
        total, done = 0.0, False
        while not done:
            total += float(obs[0])
            obs, _, terminated, truncated, _ = env.step(policy(obs))
            done = terminated or truncated
        by_hand.append(total)
    env.close()
    assert height["criterion_returns"] == pytest.approx(by_hand, rel=1e-5)

    assert "criterion" not in evaluate(*flags, "--criterion", "none")
    with pytest.raises(evaluation.EvaluationError, match="returned shape"):
        evaluate(*flags, "--criterion", f"{crit}:broken")
    with pytest.raises(evaluation.EvaluationError, match="no function 'missing'"):
        evaluate(*flags, "--criterion", f"{crit}:missing")


def test_sac_policy_is_the_agents_deterministic_action():
    torch.manual_seed(1)
    low, high = np.array([-1, -2, 0], np.float32), np.array([1, 2, 4], np.float32)
    agent = SAC(HOPPER_OBS, HOPPER_ACT, low, high, SACConfig(hidden_dim=8, hidden_layers=3))
    policy = evaluation.make_policy(
        {"algorithm": "sac_rlhf", "agent": agent.state_dict()}, HOPPER_OBS, HOPPER_ACT, low, high
    )
    for obs in np.random.default_rng(0).normal(size=(5, HOPPER_OBS)).astype(np.float32):
        np.testing.assert_allclose(policy(obs), agent.act(obs, deterministic=True), rtol=1e-6)


def test_ppo_policy_uses_the_stored_observation_normalisation():
    torch.manual_seed(0)
    low, high = -np.ones(HOPPER_ACT, np.float32), np.ones(HOPPER_ACT, np.float32)
    agent = PPOAgent(HOPPER_OBS, HOPPER_ACT, low, high, hidden_dim=8)
    with torch.no_grad():
        agent.actor_mean[-1].weight.mul_(100)  # make actions depend visibly on the input
    agent.obs_norm.update(np.random.default_rng(0).normal(3.0, 2.0, size=(100, HOPPER_OBS)))
    state = {"algorithm": "ppo", "agent": agent.state_dict()}
    policy = evaluation.make_policy(state, HOPPER_OBS, HOPPER_ACT, low, high)
    obs = np.full(HOPPER_OBS, 3.0, np.float32)
    np.testing.assert_allclose(policy(obs), agent.act(obs), rtol=1e-6)
    unnormalised = PPOAgent(HOPPER_OBS, HOPPER_ACT, low, high, hidden_dim=8)
    unnormalised.load_state_dict(
        {k: v for k, v in agent.state_dict().items() if not k.startswith("obs_norm.")}, strict=False
    )
    assert not np.allclose(policy(obs), unnormalised.act(obs))


def test_checkpoint_without_a_usable_agent_is_a_clear_error():
    for algorithm in ("sac", "ppo"):
        with pytest.raises(evaluation.CheckpointError, match="no actor weights"):
            evaluation.make_policy({"algorithm": algorithm, "agent": {}}, 3, 1, -np.ones(1), np.ones(1))
    with pytest.raises(evaluation.EvaluationError, match="unknown algorithm 'dqn'"):
        evaluation.make_policy({"algorithm": "dqn", "agent": {}}, 3, 1, -np.ones(1), np.ones(1))


def test_path_resolution(tmp_path):
    run_dir = fake_sac_checkpoint(tmp_path / "run")
    final = run_dir / "checkpoints" / "final"
    for given in (run_dir, final, final.with_suffix(".json"), final.with_suffix(".safetensors")):
        assert evaluation.resolve_checkpoint(str(given)) == (final, run_dir)
    with pytest.raises(evaluation.EvaluationError, match="no checkpoint"):
        evaluation.resolve_checkpoint(str(tmp_path / "missing"))
    with pytest.raises(evaluation.EvaluationError, match="no checkpoints/final.json"):
        evaluation.resolve_checkpoint(str(tmp_path))


def test_a_run_still_going_is_evaluated_from_its_periodic_checkpoint_with_its_own_flags(tmp_path):
    """A run with no final checkpoint yet (running, or killed) means its checkpoints/resume bundle, whose state has no
    flags: they come from the run's args.json (before, the bundle's own folder was taken for the run directory, so
    a behaviour teacher's criterion went unscored and a bare run directory was refused)."""
    run_dir = fake_sac_checkpoint(tmp_path / "run")
    checkpoints = run_dir / "checkpoints"
    state = checkpoints / "resume" / "state"
    state.parent.mkdir()
    final = load_state(checkpoints / "final")
    save_state(state, {k: v for k, v in final.items() if k != "args"})  # a resume bundle's state has no flags
    for suffix in (".json", ".safetensors"):
        (checkpoints / "final").with_suffix(suffix).unlink()
    for given in (run_dir, state.parent, state, state.with_suffix(".json")):
        assert evaluation.resolve_checkpoint(str(given)) == (state, run_dir)
    (run_dir / "args.json").write_text(json.dumps({"env_id": "Hopper-v5", "teacher_sim_reward": "m:f"}))
    assert evaluation.load_checkpoint(state, run_dir)["args"]["teacher_sim_reward"] == "m:f"


def test_model_that_does_not_fit_the_environment_is_a_clear_error(tmp_path):
    run_dir = fake_sac_checkpoint(tmp_path / "run")
    with pytest.raises(evaluation.EvaluationError, match="observations of size 11"):
        evaluate("--path-to-model", str(run_dir), "--env-id", "Walker2d-v5", "--no-capture-video")


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_cli_from_the_repo_root(tmp_path):
    run_dir = fake_sac_checkpoint(tmp_path / "run")
    out = run_cli(
        [
            "framework/evaluation.py",
            "--path-to-model",
            str(run_dir),
            "--episodes",
            "2",
            "--video-episodes",
            "1",
            "--video-size",
            "64",
        ],
        cwd=REPO_ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "95% CI" in out.stdout and "median" in out.stdout
    assert decode(run_dir / "evaluation" / "episode_000.mp4").shape[0] >= 2
    assert (run_dir / "evaluation" / "returns.png").read_bytes()[:8] == PNG_MAGIC


def damage(final: Path, how: str) -> None:
    if how == "truncate":
        blob = final.with_suffix(".safetensors")
        blob.write_bytes(blob.read_bytes()[:200])
    elif how == "tamper_json":
        final.with_suffix(".json").write_text('{"format": "cleanrlhf-checkpoint-1", "tree": ')
    elif how == "not_a_checkpoint":
        final.with_suffix(".json").write_text('{"hello": "world"}')
    else:
        final.with_suffix(".safetensors").unlink()


@pytest.mark.parametrize("how", ["tamper_json", "not_a_checkpoint", "missing"])
def test_corrupted_checkpoint_is_an_error_with_status_2(tmp_path, capsys, how):
    final = fake_sac_checkpoint(tmp_path / "run") / "checkpoints" / "final"
    damage(final, how)
    assert evaluation.cli(["--path-to-model", str(final)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "final" in err[0]


def test_truncated_checkpoint_from_the_command_line_is_one_line_no_traceback(tmp_path):
    final = fake_sac_checkpoint(tmp_path / "run") / "checkpoints" / "final"
    damage(final, "truncate")
    out = run_cli(["evaluation.py", "--path-to-model", str(final)], cwd=FRAMEWORK)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "final.safetensors" in lines[0] and "truncated" in lines[0], out.stderr
