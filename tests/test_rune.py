"""RUNE's schedule and bonus in closed form, and as sac_rlhf.py applies them; the SURF/RUNE variants of sac_rlhf.py."""

from __future__ import annotations

import numpy as np
import pytest
import sac_rlhf
from script_runs import TINY_SAC_RLHF, argv, run_in_process, scalars

from rlhf.agent import SAC
from rlhf.replay import ReplayBuffer
from rlhf.rune import Rune, rune_beta
from rlhf.surf import Surf


def test_rune_beta_schedule_closed_form():
    assert rune_beta(0.05, 1e-4, 0) == pytest.approx(0.05)
    assert rune_beta(0.05, 1e-4, 10_000) == pytest.approx(0.05 * np.exp(10_000 * np.log1p(-1e-4)))
    assert rune_beta(0.05, 1e-4, 10_000) == pytest.approx(0.018394, abs=1e-6)  # ≈ 0.05 e^{-1}
    assert rune_beta(0.3, 0.0, 123_456) == pytest.approx(0.3)  # no decay
    steps = np.arange(0, 50_000, 997)
    b = rune_beta(0.05, 1e-4, steps)
    assert np.all(np.diff(b) < 0) and np.allclose(b[1:] / b[:-1], (1 - 1e-4) ** 997)


def test_rune_reward_adds_the_decayed_std_elementwise():
    mean = np.array([[0.1, -0.2], [0.3, 0.0]], np.float32)
    std = np.array([[0.5, 1.0], [0.0, 2.0]], np.float32)
    steps = np.array([[0], [100]])  # (T, 1) broadcasts over envs
    out = Rune(True, 0.2, 0.01).reward(mean, std, steps)
    expected = mean + 0.2 * np.array([[1.0], [0.99**100]]) * std
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32
    assert Rune(False, 0.2, 0.01).reward(mean, std, steps) is mean  # --no-rune: the mean reward as it is


def test_sac_rlhf_rune_bonus_is_beta_t_times_the_stored_std(tmp_path, monkeypatch):
    """With --rune, every SAC update on the learned reward gets r̂_mean + β_0 (1 − ρ)^step · r̂_std of its batch,
    where r̂_std is the per-transition std stored at relabel time. Also runs SURF with 'disagree' and ratio 4."""
    batches, updates = [], []
    original_sample, original_update = ReplayBuffer.sample, SAC.update

    def sample(self, *a, **k):
        batches.append(out := original_sample(self, *a, **k))
        return out

    def update(self, obs, actions, rewards, next_obs, terminated, step):
        updates.append((rewards.detach().numpy().copy(), step))
        return original_update(self, obs, actions, rewards, next_obs, terminated, step)

    monkeypatch.setattr(ReplayBuffer, "sample", sample)
    monkeypatch.setattr(SAC, "update", update)
    prepared = []
    original_prepare = Surf.prepare
    monkeypatch.setattr(
        Surf, "prepare", lambda self, *a, **k: prepared.append(self.cfg) or original_prepare(self, *a, **k)
    )
    extra = ["--rune", "--rune-beta", "0.5", "--rune-beta-decay", "0.001"]
    extra += ["--surf-sampling-strategy", "disagree", "--unlabeled-batch-ratio", "4"]
    m = run_in_process(sac_rlhf, argv(TINY_SAC_RLHF, tmp_path, *extra))
    assert m["step"] == 900 and m["feedback/total_labels"] == 15

    learned = updates[-len(batches) :]  # the updates after the first session use rb.sample; before: exploration
    assert len(batches) == 900 - 300
    bonus = []
    for batch, (rewards, step) in zip(batches, learned, strict=True):
        expected = batch["reward_mean"] + 0.5 * (1 - 0.001) ** step * batch["reward_std"]
        np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-6)
        bonus.append(np.mean(rewards - batch["reward_mean"]))
    assert bonus[0] > 0 and np.mean(bonus[:50]) > np.mean(bonus[-50:]) > 0  # the bonus decays
    assert len(prepared) == 3 and prepared[0].strategy == "disagree" and prepared[0].unlabeled_batch_ratio == 4
    s = scalars(m["run_dir"])
    assert len(s["reward_model/surf_confident_fraction"]) == 3
    assert all(0 <= v <= 1 for _, v in s["reward_model/surf_confident_fraction"])


def test_sac_rlhf_no_surf_trains_without_the_hooks(tmp_path, monkeypatch):
    monkeypatch.setattr(Surf, "prepare", lambda *a, **k: pytest.fail("SURF used with --no-surf"))
    captured = []
    original_update = SAC.update

    def update(self, obs, actions, rewards, next_obs, terminated, step):
        captured.append(rewards)
        return original_update(self, obs, actions, rewards, next_obs, terminated, step)

    monkeypatch.setattr(SAC, "update", update)
    m = run_in_process(sac_rlhf, argv(TINY_SAC_RLHF, tmp_path, "--no-surf"))
    assert m["feedback/sessions"] == 3 and m["feedback/total_labels"] == 15 and np.isfinite(m["eval/mean_return"])
    s = scalars(m["run_dir"])
    assert "reward_model/surf_confident_fraction" not in s and len(s["reward_model/val_accuracy"]) == 3


def test_cli_rejects_bad_surf_offsets_before_training(tmp_path, capsys):
    flags = ["--trajectory-length", "8", "--runs-dir", str(tmp_path), "--no-progress-bar"]
    assert sac_rlhf.cli(flags) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "--max-augmentation-offset" in err
    assert not any(tmp_path.iterdir())  # no run directory was created
    with pytest.raises(SystemExit) as e:
        sac_rlhf.cli(["-h"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--no-surf", "--surf-sampling-strategy", "--unlabeled-batch-ratio", "--surf-tau", "--lambda-ssl",
                 "--max-augmentation-offset", "--min-augmentation-offset", "--rune", "--rune-beta-decay"):  # fmt: skip
        assert flag in text, flag
