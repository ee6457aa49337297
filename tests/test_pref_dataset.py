"""Preference datasets (rlhf.pref_dataset, issue 12 item 3): the file round-trips bit-exactly, a foreign or damaged
file is a one-line error naming it, runs write their labels, --preferences-load trains on them before the first
session without spending the run's queries, and the offline command scores them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from script_runs import TINY_SAC_RLHF, argv, run_in_process, scalars

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


def test_a_run_writes_its_labels_and_another_run_trains_on_them_first(tmp_path):
    """sac_rlhf.py writes preferences.safetensors (its checkpoint's labels, with labeller and time); a fresh run
    loading it twice trains on those labels at the first session's step, before asking it, and still asks exactly
    its own --teacher-feedback-total-queries; the offline command scores the dataset."""
    import sac_rlhf
    import train_reward_model

    from rlhf.checkpoint import load_state

    first = run_in_process(sac_rlhf, argv(TINY_SAC_RLHF, tmp_path / "a"))
    run_dir = Path(first["run_dir"])
    dataset = read(run_dir / "preferences.safetensors")
    kept = load_state(run_dir / "checkpoints" / "final")["feedback"]["preferences"]
    assert np.array_equal(dataset.labels, kept["labels"]) and len(dataset) == 15
    assert np.array_equal(
        dataset.seg_a.obs, kept["a_obs"].numpy() if hasattr(kept["a_obs"], "numpy") else kept["a_obs"]
    )
    assert set(dataset.labellers) == {"simulated:oracle"} and set(dataset.run_ids) == {run_dir.name}
    assert dataset.query_ids[:2] == ["s0000-q000", "s0000-q001"] and np.all(dataset.times > 1.7e9)

    path = str(run_dir / "preferences.safetensors")
    second = run_in_process(sac_rlhf, argv(TINY_SAC_RLHF, tmp_path / "b", "--preferences-load", path,
                                           "--preferences-load", path))  # fmt: skip
    assert second["feedback/total_labels"] == 15  # its own queries: the loaded ones spent none of them
    s = scalars(second["run_dir"])
    first_update = min(step for step, _ in s["reward_model/val_accuracy"])
    loaded_at_first = [v for step, v in s["feedback/loaded_labels"] if step == first_update]
    labels_at_first = [v for step, v in s["feedback/total_labels"] if step == first_update]
    assert loaded_at_first[0] == 30 and labels_at_first[0] == 0  # trained on the loaded labels before asking
    assert len(read(Path(second["run_dir"]) / "preferences.safetensors")) == 15  # only its own labels

    scored = train_reward_model.main(train_reward_model.Args(datasets=(path,), test_preferences=(path,), seed=0))
    assert scored["labels"] == 15 and scored["val_labels"] == 3 and 0 <= scored["val_accuracy"] <= 1
    assert scored["test_accuracy"] >= 0.8  # its own training labels, nearly all explained
    assert -1 <= scored["val_pearson"] <= 1
