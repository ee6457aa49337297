"""ppo.py and pref_ppo.py with tiny budgets that pass through every branch; assertions on metrics, TensorBoard
scalars and checkpoints; one CLI subprocess per script (from the repo root and from framework/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import ppo
import pref_ppo
import pytest
from script_runs import argv, raising_on_call, run_in_process, scalars
from test_pref_ppo_labels import TINY_PREF_PPO

from rlhf.checkpoint import load_state
from rlhf.manifest import read_manifest
from rlhf.rune import Rune

REPO = Path(__file__).resolve().parents[1]
TINY_PPO = {
    "--env-id": "InvertedPendulum-v5",
    "--total-timesteps": 1024,
    "--num-envs": 2,
    "--num-steps": 64,
    "--num-minibatches": 4,
    "--update-epochs": 2,
    "--evaluation-frequency": 512,
    "--evaluation-episodes": 1,
    "--log-frequency": 256,
}


def test_ppo_run_logs_evaluates_and_saves_the_normalisation_statistics(tmp_path):
    m = run_in_process(ppo, argv(TINY_PPO, tmp_path, "--capture-video"))
    assert m["step"] == 1024 and np.isfinite(m["eval/mean_return"]) and m["eval/mean_return"] >= 1
    s = scalars(m["run_dir"])
    for tag in (
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/SPS",
        "charts/learning_rate",
        "losses/value_loss",
        "losses/policy_loss",
        "charts/entropy",
        "charts/approx_kl",
        "eval/mean_return",
    ):
        assert tag in s, tag
    assert {tag for tag in s if tag.startswith("losses/")} == {"losses/value_loss", "losses/policy_loss"}  # only losses
    assert [step for step, _ in s["eval/mean_return"]] == [512, 1024, 1024]  # two periodic + the final one
    lrs = [v for _, v in s["charts/learning_rate"]]
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] < 3e-4  # annealed
    ckpt = load_state(Path(m["run_dir"]) / "checkpoints" / "final")
    assert ckpt["algorithm"] == "ppo" and ckpt["step"] == 1024
    assert (read_manifest(Path(m["run_dir"])) or {}).get("status") == "finished"
    # every observation the policy acted on went into the statistics: 1024 steps' observations
    assert float(ckpt["agent"]["obs_norm.count"]) == pytest.approx(1024, abs=1e-3)
    assert np.abs(ckpt["agent"]["obs_norm.mean"].numpy()).sum() > 0
    assert "optimizer" in ckpt and "reward_scaler" in ckpt
    videos = sorted(p.name for p in (Path(m["run_dir"]) / "videos" / "eval").glob("*.mp4"))
    assert videos == ["step_00000512.mp4", "step_00001024.mp4"]  # the final evaluation reused the one at 1024


def test_ppo_ctrl_c_saves_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(ppo, "ppo_update", raising_on_call(ppo.ppo_update, 2, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run_in_process(ppo, argv(TINY_PPO, tmp_path))
    (run_dir,) = list(tmp_path.iterdir())
    assert load_state(run_dir / "checkpoints" / "final")["step"] == 128  # the last completed iteration
    manifest = read_manifest(run_dir)
    assert (manifest["algorithm"], manifest["status"], manifest["step"]) == ("ppo", "interrupted", 128)


def test_pref_ppo_with_surf_rune_and_entropy_queries(tmp_path, monkeypatch):
    rune_calls = []
    original_reward = Rune.reward

    def recording_rune(self, mean, std, steps):
        rune_calls.append((mean, std, steps.copy()))
        return original_reward(self, mean, std, steps)

    monkeypatch.setattr(Rune, "reward", recording_rune)
    extra = ["--surf", "--rune", "--rune-beta", "0.5", "--surf-sampling-strategy", "disagree",
             "--unlabeled-batch-ratio", "4", "--preference-sampling", "entropy"]  # fmt: skip
    m = run_in_process(pref_ppo, argv(TINY_PREF_PPO, tmp_path, *extra))
    assert m["step"] == 1536 and m["feedback/sessions"] == 3 and m["feedback/total_labels"] == 12
    s = scalars(m["run_dir"])
    for tag in (
        "charts/episodic_return",
        "losses/value_loss",
        "reward_model/val_accuracy",
        "reward_model/ensemble_std",
        "reward_model/surf_confident_fraction",
        "feedback/total_labels",
        "eval/mean_return",
    ):
        assert tag in s, tag
    assert [step for step, _ in s["feedback/total_labels"]][:3] == [384, 768, 1152]  # after the scheduled rollouts
    # RUNE relabels each of the 10 learning rollouts (64 steps × 2 envs) with its own global steps
    assert len(rune_calls) == 10
    first_steps = [int(steps.min()) for _, _, steps in rune_calls]
    assert first_steps == list(range(256, 1536, 128))
    mean, std, steps = rune_calls[0]
    assert steps.shape == (64, 2) and (std > 0).all()
    exploration = Path(m["run_dir"]) / "exploration"
    window = load_state(exploration / "replay_buffer")
    assert int(window["env0"]["counters"][0]) == 128  # 2 rollouts of 64 steps per env, the window's capacity

    # the CLI from framework/, loading that exploration (agent + window) and skipping it
    cmd = [sys.executable, "pref_ppo.py", *argv(TINY_PREF_PPO, tmp_path / "cli"), "--exploration-load",
           "--path-to-replay-buffer", str(exploration / "replay_buffer.safetensors"),
           "--path-to-model", str(exploration / "agent.safetensors")]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO / "framework", capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = list((tmp_path / "cli").iterdir())
    s = scalars(run_dir)
    assert min(step for step, _ in s["charts/SPS"]) > 256  # nothing logged during the skipped exploration
    assert load_state(run_dir / "checkpoints" / "final")["feedback"]["stats"]["total_labels"] == 12
    assert (read_manifest(run_dir) or {}).get("algorithm") == "pref_ppo"


def test_a_budget_between_rollouts_is_rounded_up_and_said(tmp_path, caplog):
    """1000 steps in rollouts of 2 × 64 = 128: 8 whole rollouts, 1024 steps, and one log line says so (issue 9,
    item 12: 50 000 used to become 49 152 without a word)."""
    caplog.set_level("INFO", logger="cleanrlhf")
    m = run_in_process(ppo, argv(TINY_PPO, tmp_path, "--log-level", "INFO", total_timesteps=1000))
    assert m["step"] == 1024
    said = [r.getMessage() for r in caplog.records if "not a multiple of one rollout" in r.getMessage()]
    assert said == ["--total-timesteps 1000 is not a multiple of one rollout (--num-envs × --num-steps = 128): "
                    "running 8 rollouts, 1024 steps"]  # fmt: skip


def test_ppo_cli_from_the_repo_root(tmp_path):
    cmd = [sys.executable, "framework/ppo.py", *argv(TINY_PPO, tmp_path, total_timesteps=256)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = list(tmp_path.iterdir())
    assert (run_dir / "checkpoints" / "final.safetensors").is_file() and (run_dir / "args.json").is_file()


@pytest.mark.parametrize(
    ("module", "flags", "needle"),
    [
        (ppo, ["--num-minibatches", "3"], "--num-minibatches"),
        (ppo, ["--total-timesteps", "0"], "--total-timesteps"),
        (pref_ppo, ["--num-minibatches", "3"], "--num-minibatches"),
        (pref_ppo, ["--total-explore-steps", "1536"], "--total-explore-steps"),
        (pref_ppo, ["--surf", "--max-augmentation-offset", "16"], "--max-augmentation-offset"),
        (pref_ppo, ["--teacher-feedback-mode", "human", "--feedback-server-url", "ftp://x"], "--feedback-server-url"),
        (pref_ppo, ["--query-window-rollouts", "0"], "--query-window-rollouts"),
    ],
)
def test_bad_flags_exit_2_before_training(tmp_path, capsys, module, flags, needle):
    base = TINY_PPO if module is ppo else TINY_PREF_PPO
    assert module.cli(argv(base, tmp_path, *flags)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and needle in err
    assert not any(tmp_path.iterdir())


def test_help_documents_the_ppo_flags(capsys):
    with pytest.raises(SystemExit) as e:
        pref_ppo.cli(["-h"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--learning-rate", "--num-steps", "--anneal-lr", "--gae-lambda", "--num-minibatches",
                 "--update-epochs", "--norm-adv", "--clip-coef", "--clip-vloss", "--ent-coef", "--vf-coef",
                 "--max-grad-norm", "--target-kl", "--num-envs", "--surf", "--rune", "--lambda-ssl",
                 "--preference-sampling", "--exploration-load", "--query-window-rollouts"):  # fmt: skip
        assert flag in text, flag
    assert "--explore-batch-size" not in text and "--explore-learning-starts" not in text  # SAC-only knobs
    defaults = pref_ppo.Args()
    assert defaults.teacher_feedback_schedule == "linear" and not defaults.surf and not defaults.rune


LEARN = {"--env-id": "InvertedPendulum-v5", "--total-timesteps": 40960, "--evaluation-frequency": 10240,
         "--evaluation-episodes": 10}  # fmt: skip
LEARN_PREF = {"--total-explore-steps": 4096, "--teacher-feedback-total-queries": 200,
              "--teacher-feedback-num-queries-per-session": 20, "--trajectory-length": 50}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["ppo", "pref_ppo"])
def test_learns_inverted_pendulum(tmp_path, algorithm):
    """PPO on the true reward and PrefPPO with 200 oracle labels both reach a true return >= 900 (seed 1; see
    benchmarks/learning_ppo.py for more seeds)."""
    module = ppo if algorithm == "ppo" else pref_ppo
    m = run_in_process(module, argv({**LEARN, **(LEARN_PREF if algorithm == "pref_ppo" else {})}, tmp_path))
    assert max(v for _, v in scalars(m["run_dir"])["eval/mean_return"]) >= 900
