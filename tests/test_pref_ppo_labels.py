"""PrefPPO's labels stay attached to the observations/actions the teacher judged, although the rollout buffer is
overwritten every iteration and the segment window wraps; segments of the window never cross an episode."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pref_ppo
from script_runs import argv, run_in_process

from rlhf.checkpoint import load_state
from rlhf.preferences import PreferenceDataset
from rlhf.rollout import RolloutWindow

TINY_PREF_PPO = {
    "--env-id": "InvertedPendulum-v5",
    "--total-timesteps": 1536,
    "--num-envs": 2,
    "--num-steps": 64,
    "--num-minibatches": 4,
    "--update-epochs": 2,
    "--total-explore-steps": 256,
    "--teacher-feedback-total-queries": 12,
    "--teacher-feedback-num-queries-per-session": 4,
    "--trajectory-length": 16,
    "--query-window-rollouts": 2,
    "--reward-net-hidden-dim": 32,
    "--reward-net-val-split": 0.5,
    "--teacher-update-epochs": 5,
    "--evaluation-frequency": 768,
    "--evaluation-episodes": 1,
    "--log-frequency": 256,
}


def test_window_segments_stay_in_one_episode_and_are_copies(rng):
    window = RolloutWindow(num_envs=2, capacity=50, obs_dim=3, act_dim=1, state_dim=3)
    episode = np.zeros(2, np.int64)
    step = np.zeros(2, np.int64)
    for t in range(120):
        # obs = (env, episode, step in episode); env 0 terminates every 7 steps, env 1 is truncated every 40
        obs = np.stack([np.arange(2), episode, step], 1).astype(np.float32)
        terminated = np.array([step[0] == 6, False])
        truncated = np.array([False, step[1] == 39])
        window.add(obs, obs[:, :1] * 0 + t, obs, np.ones(2), terminated, truncated, obs)
        done = terminated | truncated
        episode, step = episode + done, np.where(done, 0, step + 1)
    seg = window.sample_segments(400, 10, rng)
    valid = seg.mask
    same_episode = seg.obs[:, :, :2] == seg.obs[:, :1, :2]
    assert same_episode.all()  # env and episode constant along every segment (padding repeats the last step)
    steps = seg.obs[:, :, 2]
    assert (np.diff(steps, axis=1)[valid[:, 1:]] == 1).all()  # consecutive steps where valid
    padded = ~valid.all(1)
    assert padded.any() and (seg.obs[padded, 0, 0] == 0).all()  # only env 0's 7-step episodes are padded
    assert (seg.true_rewards[~valid] == 0).all()
    np.testing.assert_array_equal(seg.physics_states, seg.obs)  # render state attached to the right step
    before = copy.deepcopy(seg)
    for _ in range(60):  # wrap the window completely
        window.add(np.full((2, 3), -1, np.float32), np.zeros((2, 1)), np.zeros((2, 3)), np.zeros(2),
                   np.zeros(2, bool), np.zeros(2, bool), np.zeros((2, 3)))  # fmt: skip
    np.testing.assert_array_equal(seg.obs, before.obs)  # the drawn segments are copies


def test_labels_keep_their_data_after_the_rollout_buffer_is_overwritten(tmp_path, monkeypatch):
    """Record what the teacher saw at each session; after many more rollouts (the window holds 2 rollouts, the
    run has 10 after the first session), the stored labels still hold exactly those observations/actions."""
    seen, windows = [], []
    original_add = PreferenceDataset.add
    original_sample = RolloutWindow.sample_segments

    def add(self, seg_a, seg_b, labels, *args, **kwargs):  # the answered queries, as they are being labelled
        seen.append((copy.deepcopy(seg_a), copy.deepcopy(seg_b), np.array(labels, copy=True)))
        return original_add(self, seg_a, seg_b, labels, *args, **kwargs)

    def sample_segments(self, n, length, rng):
        windows.append(self)
        return original_sample(self, n, length, rng)

    monkeypatch.setattr(PreferenceDataset, "add", add)
    monkeypatch.setattr(RolloutWindow, "sample_segments", sample_segments)
    m = run_in_process(pref_ppo, argv(TINY_PREF_PPO, tmp_path))
    assert m["feedback/sessions"] == 3 and m["feedback/total_labels"] == 12 and len(seen) == 3

    prefs = load_state(Path(m["run_dir"]) / "checkpoints" / "final")["feedback"]["preferences"]
    seg_a = np.concatenate([a.obs for a, _, _ in seen])
    np.testing.assert_array_equal(prefs["a_obs"], seg_a)
    np.testing.assert_array_equal(prefs["b_obs"], np.concatenate([b.obs for _, b, _ in seen]))
    np.testing.assert_array_equal(prefs["a_actions"], np.concatenate([a.actions for a, _, _ in seen]))
    np.testing.assert_array_equal(prefs["b_actions"], np.concatenate([b.actions for _, b, _ in seen]))
    np.testing.assert_array_equal(prefs["labels"], np.concatenate([y for _, _, y in seen]))
    # InvertedPendulum's observation is its MuJoCo state (qpos, qvel): the render state matches the observation
    # (after rlhf.envs' header: episode seed -1, as Gymnasium's model never changes, and the state's length 4)
    for side in ("a", "b"):
        valid = prefs[f"{side}_mask"]
        states = prefs[f"{side}_physics_states"][valid]
        np.testing.assert_array_equal(states[:, :2], np.broadcast_to([-1.0, 4.0], (len(states), 2)))
        np.testing.assert_allclose(states[:, 2:], prefs[f"{side}_obs"][valid], atol=1e-5)
    # oracle labels agree with the stored true rewards
    ret_a = (prefs["a_true_rewards"] * prefs["a_mask"]).sum(1)
    ret_b = (prefs["b_true_rewards"] * prefs["b_mask"]).sum(1)
    np.testing.assert_array_equal(prefs["labels"], np.where(ret_a == ret_b, 0.5, (ret_b > ret_a).astype(np.float32)))
    # and the first session's segments are long gone from the window the run ended with
    final = windows[-1]
    stored = np.concatenate([rb.obs[: rb.size] for rb in final.buffers])
    first = seen[0][0].obs[seen[0][0].mask]
    assert not (first[:, None, :] == stored[None, :, :]).all(-1).any()


def test_human_labels_reach_pref_ppo(tmp_path):
    """People label through the server's HTTP routes (a scripted labeller); the trainer stores exactly their answers
    with the segments it rendered; --capture-video keeps the queried clips (with their labels) and evaluation videos."""
    import threading

    from test_human_teacher import check_trainer_got_exactly, label_everything

    from rlhf.feedback_server_process import start_feedback_server

    server = start_feedback_server(port=0, data_dir=tmp_path / "server_data")
    given: dict = {}
    stop = threading.Event()
    labeller = threading.Thread(target=label_everything, args=(server.url, given, stop), daemon=True)
    labeller.start()
    flags = argv(TINY_PREF_PPO, tmp_path / "runs", "--teacher-feedback-mode", "human", "--feedback-server-url",
                 server.url, "--capture-video", teacher_feedback_total_queries=8, feedback_clip_size=48)  # fmt: skip
    try:
        m = run_in_process(pref_ppo, flags)
    finally:
        stop.set()
        labeller.join(timeout=15)
        server.stop()
    run_dir = Path(m["run_dir"])
    check_trainer_got_exactly(run_dir, given)
    assert m["feedback/sessions"] == 2 and m["feedback/skipped"] == 2  # the labeller skips every 4th query
    index = [json.loads(line) for line in (run_dir / "videos" / "queries" / "index.jsonl").read_text().splitlines()]
    assert len(index) == 8 and [q["label"] for q in index] == [given[k] for k in sorted(given)]
    assert all((run_dir / "videos" / "queries" / q["clip_a"]).is_file() for q in index)
    assert list((run_dir / "videos" / "eval").glob("step_*.mp4"))
