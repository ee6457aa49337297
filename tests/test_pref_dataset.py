"""Preference datasets (rlhf.pref_dataset, issue 12 item 3): the file round-trips bit-exactly, a foreign or damaged
file is a one-line error naming it, runs write their labels, --preferences-load trains on them before the first
session without spending the run's queries, and the offline command scores them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from safetensors.numpy import save_file
from script_runs import argv, run_in_process, scalars

from rlhf.pref_dataset import DatasetError, LabelledPairs, read, write
from rlhf.preferences import LOADED_SESSION, PreferenceDataset
from rlhf.segments import Segments


def segments(rng: np.random.Generator, n: int, H: int = 6, obs_dim: int = 3, act_dim: int = 2, state_dim: int = 5):
    mask = np.ones((n, H), bool)
    mask[0, 4:] = False  # a padded segment: its episode terminated after 4 steps
    return Segments(
        obs=rng.normal(size=(n, H, obs_dim)).astype(np.float32),
        actions=rng.normal(size=(n, H, act_dim)).astype(np.float32),
        true_rewards=np.where(mask, rng.normal(size=(n, H)), 0).astype(np.float32),
        mask=mask,
        physics_states=rng.normal(size=(n, H, state_dim)).astype(np.float32),
        next_obs=rng.normal(size=(n, H, obs_dim)).astype(np.float32),
    )


def pairs(rng: np.random.Generator, n: int = 4, env_id: str = "Hopper-v5") -> LabelledPairs:
    return LabelledPairs(
        env_id, segments(rng, n), segments(rng, n), np.resize(np.array([0.0, 0.5, 1.0], np.float32), n),
        rng.uniform(1.7e9, 1.8e9, n), np.arange(n, dtype=np.int64) // 2, [f"run-{i % 2}" for i in range(n)],
        [f"person {i}" for i in range(n)], [f"s{i // 2:04d}-q{i % 2:03d}" for i in range(n)],
    )  # fmt: skip


def test_a_dataset_round_trips_bit_exactly(tmp_path, rng):
    original = pairs(rng)
    write(tmp_path / "d.safetensors", original)
    back = read(tmp_path / "d.safetensors")
    for name in ("obs", "actions", "next_obs", "true_rewards", "mask", "physics_states"):
        for side in ("seg_a", "seg_b"):
            a, b = getattr(getattr(original, side), name), getattr(getattr(back, side), name)
            assert a.dtype == b.dtype and np.array_equal(a, b), (side, name)
    for name in ("labels", "times", "sessions"):
        assert np.array_equal(getattr(original, name), getattr(back, name))
    assert (back.env_id, back.run_ids, back.labellers, back.query_ids) == (
        original.env_id, original.run_ids, original.labellers, original.query_ids)  # fmt: skip
    assert back.true_rewards_known and back.source == "run"
    assert not list(tmp_path.glob("*.tmp"))  # written to a temporary name and renamed


def _rewrite(src: Path, dst: Path, change) -> None:
    from safetensors import safe_open

    with safe_open(str(src), "np") as f:
        header, arrays = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    change(header, arrays)
    save_file(arrays, str(dst), metadata=header)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, a: h.update(format="something-else"), "not a preference dataset (format 'something-else'"),
        (lambda h, a: h.update(version="2"), "format version '2'; this CleanRLHF reads version 1 (update"),
        (lambda h, a: a.update(label=np.full(4, 0.7, np.float32)), "labels must be P(B > A)"),
        (lambda h, a: a.update({"b.obs": a["b.obs"][:, :5]}), "b.obs has shape (4, 5, 3), expected (4, 6, 3)"),
        (lambda h, a: a.pop("b.mask"), "not a readable preference dataset ('b.mask')"),
        (lambda h, a: h.update(dataset=json.dumps({**json.loads(h["dataset"]), "obs_dim": 9})), "metadata says"),
    ],
)
def test_a_foreign_or_damaged_file_is_one_line_naming_it(tmp_path, rng, change, message):
    write(tmp_path / "good.safetensors", pairs(rng))
    bad = tmp_path / "bad.safetensors"
    _rewrite(tmp_path / "good.safetensors", bad, change)
    with pytest.raises(DatasetError) as e:
        read(bad)
    assert str(e.value).startswith(f"{bad}: ") and message in str(e.value) and "\n" not in str(e.value)


def test_a_file_that_is_no_safetensors_is_refused(tmp_path):
    (tmp_path / "notes.safetensors").write_text("not a dataset")
    with pytest.raises(DatasetError, match="notes.safetensors: not a preference dataset"):
        read(tmp_path / "notes.safetensors")
    with pytest.raises(DatasetError, match="missing.safetensors: no such file"):
        read(tmp_path / "missing.safetensors")


def test_loaded_labels_outlive_the_session_window(rng):
    """--pref-buffer-size-sessions forgets old sessions of the run, never the loaded labels."""
    data = PreferenceDataset(6, 3, 2, 5)
    loaded = pairs(rng)
    data.add(loaded.seg_a, loaded.seg_b, loaded.labels, LOADED_SESSION, 0.0, rng)
    for session in range(3):
        data.add(loaded.seg_a[:1], loaded.seg_b[:1], loaded.labels[:1], session, 0.0, rng)
    data.keep_last_sessions(1)
    assert data.session.tolist() == [LOADED_SESSION] * 4 + [2] and data.loaded() == 4


@pytest.mark.timeout(1200)
@pytest.mark.slow  # about 1 CPU-minute: a human-mode run rendering clips, then a pref_ppo run (~3.5 min on 2 loaded cores)
def test_labels_exported_from_a_human_runs_server_train_a_fresh_pref_ppo_run_and_are_scored_offline(tmp_path):
    """The must-show of issue 12, item 3: a human-mode sac_rlhf.py run with its autostarted server and a scripted
    labeller; humanFeedback/export_preferences.py exports the run's labels from the server's store (exactly the
    answers given, undone and skipped ones left out, with the labeller's name); the run wrote the same labels
    itself; a fresh pref_ppo.py run loads the export and trains on it at its first session's step, before asking,
    and still asks its own 12 queries; framework/train_reward_model.py scores the export."""
    import pref_ppo
    import train_reward_model
    from conftest import REPO_ROOT
    from test_human_teacher import HUMAN_RUN, free_port, label_everything
    from test_pref_ppo_labels import TINY_PREF_PPO

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    human = [*argv(HUMAN_RUN, tmp_path / "runs"), "--teacher-feedback-mode", "human", "--feedback-server-autostart",
             "--feedback-server-url", url]  # fmt: skip
    trainer = subprocess.Popen([sys.executable, "framework/sac_rlhf.py", *human], cwd=REPO_ROOT,
                               stderr=subprocess.PIPE, text=True)  # fmt: skip
    given: dict = {}
    stop = threading.Event()

    def label(undo_once: bool = True) -> None:  # a request timing out on loaded cores must not end the labeller
        while not stop.is_set():
            try:
                return label_everything(url, given, stop, undo_once)
            except requests.RequestException:
                undo_once = False

    labeller = threading.Thread(target=label, daemon=True)
    labeller.start()
    try:
        _, err = trainer.communicate(timeout=600)
    finally:
        stop.set()
        trainer.kill()
        for record in (tmp_path / "runs").glob("*/feedback_server/autostarted_server.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):  # a killed trainer leaves its server running
                os.kill(int(json.loads(record.read_text())["pid"]), signal.SIGTERM)
    assert trainer.returncode == 0, err[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()

    exported = tmp_path / "exported.safetensors"
    cmd = [sys.executable, "humanFeedback/export_preferences.py", "--data-dir", str(run_dir / "feedback_server"),
           "--run-id", run_dir.name, "--out", str(exported)]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = read(exported)
    labelled = {q: v for q, v in given.items() if v is not None}
    assert len(given) == 8 and len(labelled) == 6  # 2 skips
    assert dict(zip(data.query_ids, data.labels.tolist(), strict=True)) == labelled  # the undone answer replaced
    assert set(data.labellers) == {"tester"} and data.source == "server-export" and np.all(data.times > 1.7e9)
    own = read(run_dir / "preferences.safetensors")  # what the run wrote itself: the same labels and segments
    order = np.argsort(own.query_ids)
    assert sorted(data.query_ids) == [own.query_ids[i] for i in order] and set(own.labellers) == {"tester"}
    np.testing.assert_array_equal(data.seg_b.obs[np.argsort(data.query_ids)], own.seg_b.obs[order])
    np.testing.assert_array_equal(data.labels[np.argsort(data.query_ids)], own.labels[order])

    m = run_in_process(pref_ppo, argv(TINY_PREF_PPO, tmp_path / "ppo", "--preferences-load", str(exported),
                                      env_id="Hopper-v5"))  # fmt: skip
    assert m["feedback/total_labels"] + m["feedback/skipped"] == 12  # its own queries: the loaded spent none
    s = scalars(m["run_dir"])
    first_update = min(step for step, _ in s["reward_model/val_accuracy"])
    assert [v for step, v in s["feedback/loaded_labels"] if step == first_update][0] == 6
    assert [v for step, v in s["feedback/total_labels"] if step == first_update][0] == 0  # before its first answer

    scored = train_reward_model.main(train_reward_model.Args(datasets=(str(exported),),
                                                             test_preferences=(str(exported),)))  # fmt: skip
    assert scored["env_id"] == "Hopper-v5" and scored["labels"] == 6 and scored["test_labels"] == 6
    assert scored["train_accuracy"] >= 0.75 and 0 <= scored["test_accuracy"] <= 1
    assert -1 <= scored["test_pearson"] <= 1

    missing = subprocess.run([*cmd[:-2], "--out", str(tmp_path / "x.safetensors"), "--segments-dir",
                              str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert missing.returncode == 2 and "session_0000.npz: missing" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_run_writes_its_labels_and_a_fresh_run_trains_on_them_before_asking(tmp_path, capsys):
    """pref_ppo.py with a behaviour teacher (--teacher-sim-reward) writes preferences.safetensors: the checkpoint's
    labels, with labeller and time, and they are the criterion's, recomputed in closed form from the dataset's own
    segments. A fresh run loading it twice trains on the 24 loaded labels at its first session's step, before
    asking, asks its own 12 queries all the same, and writes only its own labels; a dataset of another segment
    length is exit 2."""
    import pref_ppo
    from test_custom_reward import CRITERIA
    from test_pref_ppo_labels import TINY_PREF_PPO

    from rlhf.checkpoint import load_state

    (tmp_path / "criteria.py").write_text(CRITERIA)
    spec = f"{tmp_path / 'criteria.py'}:first_coordinate"
    first = run_in_process(pref_ppo, argv(TINY_PREF_PPO, tmp_path / "a", "--teacher-sim-reward", spec))
    run_dir = Path(first["run_dir"])
    dataset = read(run_dir / "preferences.safetensors")
    kept = load_state(run_dir / "checkpoints" / "final")["feedback"]["preferences"]
    assert len(dataset) == 12 and np.array_equal(dataset.labels, kept["labels"])
    assert np.array_equal(dataset.seg_a.obs, np.asarray(kept["a_obs"]))
    assert set(dataset.labellers) == {f"simulated:{spec}"} and set(dataset.run_ids) == {run_dir.name}
    assert dataset.query_ids[:2] == ["s0000-q000", "s0000-q001"] and np.all(dataset.times > 1.7e9)
    returns = [(2.0 * s.obs[..., 0] * s.mask).sum(1) for s in (dataset.seg_a, dataset.seg_b)]
    np.testing.assert_array_equal(dataset.labels, (returns[1] > returns[0]).astype(np.float32))

    path = str(run_dir / "preferences.safetensors")
    second = run_in_process(pref_ppo, argv(TINY_PREF_PPO, tmp_path / "b", "--preferences-load", path,
                                           "--preferences-load", path))  # fmt: skip
    assert second["feedback/total_labels"] == 12  # its own queries: the loaded labels spent none of them
    s = scalars(second["run_dir"])
    first_update = min(step for step, _ in s["reward_model/val_accuracy"])
    assert [v for step, v in s["feedback/loaded_labels"] if step == first_update][0] == 24
    assert [v for step, v in s["feedback/total_labels"] if step == first_update][0] == 0  # before any answer
    assert len(read(Path(second["run_dir"]) / "preferences.safetensors")) == 12  # only its own labels

    code = pref_ppo.cli(argv(TINY_PREF_PPO, tmp_path / "c", "--preferences-load", path, trajectory_length=20))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"error: --preferences-load {path}: its segment_length is 16, this run's is 20 " \
        "(--trajectory-length)"  # fmt: skip
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
