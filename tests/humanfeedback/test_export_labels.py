"""export_preferences.py on a store written through the real Store: each query's label is what the trainer makes
of its answers (the majority of the labellers' current answers; undone answers, skips, labellers excluded on the
server or by --exclude-labeller count nowhere), and repeats never train. Checked to fail with the export's earlier
rule (each query's newest answer only): the disagreeing double and the excluded labeller's label came through."""

from __future__ import annotations

import numpy as np
import pytest

from .feedback_testutil import REPO  # noqa: F401  (puts humanFeedback/ on sys.path)

H, OBS, ACT, STATE = 4, 3, 2, 5


def _session_file(path, n: int) -> None:
    """A trainer's pending_queries/session_0000.npz with n pairs; pair i's observations are all i (side a) and
    -i (side b), so that the exported rows can be traced back to their query."""
    arrays = {}
    for side, sign in (("a", 1.0), ("b", -1.0)):
        arrays[f"{side}_obs"] = np.broadcast_to(sign * np.arange(n, dtype=np.float32)[:, None, None], (n, H, OBS))
        arrays[f"{side}_actions"] = np.zeros((n, H, ACT), np.float32)
        arrays[f"{side}_true_rewards"] = np.zeros((n, H), np.float32)
        arrays[f"{side}_mask"] = np.ones((n, H), bool)
        arrays[f"{side}_physics_states"] = np.zeros((n, H, STATE), np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)


def test_the_export_combines_answers_as_the_trainer_does(tmp_path, webm_clips):
    from export_preferences import ExportError, export
    from store import Store

    from rlhf.pref_dataset import read

    run_dir = tmp_path / "r1"
    store = Store(run_dir / "feedback_server")
    store.register_run("r1", "which is better?", "Hopper-v5")
    clips = [(c, "video/webm") for c in webm_clips[:2]]

    def ask(index: int, answers: list[tuple[str, str]], wanted: int = 1) -> None:
        qid = f"s0000-q{index:03d}"
        store.add_query("r1", qid, 0, clips[0], clips[1], wanted=wanted)
        for who, choice in answers:
            assert store.claim(who, "r1")["query_id"] == qid
            store.answer(who, "r1", qid, choice)

    try:
        ask(0, [("ann", "A")])  # 0.0
        ask(1, [("ann", "A"), ("bob", "B")], wanted=2)  # bob is excluded below: ann's A stands
        ask(2, [("ann", "B"), ("carl", "B")], wanted=2)  # both B: 1.0 from ann+carl
        ask(3, [("bob", "B")])  # only bob: nothing once he is excluded
        ask(4, [("ann", "A")])
        store.undo("ann", "r1")  # changed her mind: equally good
        store.answer("ann", "r1", "s0000-q004", "equal")
        ask(5, [("dan", "B")])  # left out by --exclude-labeller
        ask(6, [("ann", "A"), ("carl", "B")], wanted=2)  # a disagreement: no majority, no label
        ask(7, [("carl", "skip")])  # a skip is no label
        store.add_repeat("r1", "s0001-r000", 1, "s0000-q000")  # a repeat never trains
        assert store.claim("ann", "r1")["query_id"] == "s0001-r000"
        store.answer("ann", "r1", "s0001-r000", "B")
        store.set_excluded("bob", True)
    finally:
        store.close()
    _session_file(run_dir / "pending_queries" / "session_0000.npz", 8)

    out = tmp_path / "labels.safetensors"
    assert export(run_dir / "feedback_server", "r1", out, exclude=["dan"]) == 4
    data = read(out)
    assert data.query_ids == ["s0000-q000", "s0000-q001", "s0000-q002", "s0000-q004"]
    np.testing.assert_array_equal(data.labels, [0.0, 0.0, 1.0, 0.5])
    assert data.labellers == ["ann", "ann", "ann+carl", "ann"]
    np.testing.assert_array_equal(data.seg_a.obs[:, 0, 0], [0, 1, 2, 4])  # each label with its own pair
    np.testing.assert_array_equal(data.seg_b.obs[:, 0, 0], [0, -1, -2, -4])
    assert np.all(np.diff(data.times) >= 0) and np.all(data.times > 1.7e9)  # in the order labels were settled

    with pytest.raises(ExportError, match="no labels to export"):
        export(run_dir / "feedback_server", "r1", tmp_path / "none.safetensors", exclude=["ann", "carl", "dan"])
