"""The store's side of labeller quality: doubled queries go to two different labellers, repeats only to who
labelled the original (sides swapped), an exclusion re-opens what only the excluded labeller answered, undo of a
doubled answer, and a store written before these columns existed opens with its rows intact."""

from __future__ import annotations

import sqlite3

import pytest

from .feedback_testutil import REPO  # noqa: F401  (puts humanFeedback/ on sys.path)


@pytest.fixture
def store(tmp_path, webm_clips):
    from store import Store

    s = Store(tmp_path / "data")
    s.register_run("r", "which is better?", "Hopper-v5")
    s.clips = [(c, "video/webm") for c in webm_clips[:3]]
    yield s
    s.close()


def test_a_doubled_query_goes_to_a_second_labeller_and_is_done_after_two_answers(store):
    store.add_query("r", "q0", 0, store.clips[0], store.clips[1], wanted=2)
    assert store.claim("ann", "r")["query_id"] == "q0"
    store.answer("ann", "r", "q0", "A")
    assert store.get_query("r", "q0")["state"] == "pending"
    assert store.claim("ann", "r") is None and store.wait_claimable("r", labeller="ann") == 0
    assert store.wait_claimable("r", labeller="bob") == 1
    assert store.claim("bob", "r")["query_id"] == "q0"
    store.answer("bob", "r", "q0", "skip")
    assert store.get_query("r", "q0")["state"] == "labelled"  # one label and one skip: the label stands
    store.undo("bob", "r")  # leased back to bob; ann's answer stays
    q = store.get_query("r", "q0")
    assert q["state"] == "leased" and q["lease_holder"] == "bob"


def test_a_repeat_swaps_the_clips_and_goes_only_to_who_labelled_the_original(store):
    from store import Conflict

    store.add_query("r", "q0", 0, store.clips[0], store.clips[1])
    store.add_query("r", "q1", 0, store.clips[0], store.clips[2])
    with pytest.raises(Conflict):
        store.add_repeat("r", "r0", 1, "q0")  # nothing to repeat yet
    store.claim("ann", "r")
    store.answer("ann", "r", "q0", "B")
    store.claim("bob", "r")
    store.answer("bob", "r", "q1", "skip")
    with pytest.raises(Conflict):
        store.add_repeat("r", "r1", 1, "q1")  # a skip is no label to check against
    rep, created = store.add_repeat("r", "r0", 1, "q0")
    orig = store.get_query("r", "q0")
    assert created and (rep["clip_a"], rep["clip_b"]) == (orig["clip_b"], orig["clip_a"])
    assert store.add_repeat("r", "r0", 1, "q0")[1] is False  # idempotent
    assert store.claim("bob", "r") is None
    assert store.claim("ann", "r")["query_id"] == "r0"
    store.answer("ann", "r", "r0", "A")  # the same judgement on the swapped pair
    (ann,) = [s for s in store.labeller_stats("r") if s["labeller"] == "ann"]
    assert ann["self_consistency"] == {"n": 1, "agreed": 1, "rate": 1.0, "se": 0.0, "flip_rate": 0.0}


def test_exclusion_reopens_what_only_they_answered_and_is_a_store_query(store):
    from store import Forbidden

    store.add_query("r", "q0", 0, store.clips[0], store.clips[1])
    store.add_query("r", "q1", 0, store.clips[0], store.clips[2], wanted=2)
    store.claim("carl", "r")
    store.answer("carl", "r", "q0", "A")
    store.claim("carl", "r")
    store.answer("carl", "r", "q1", "A")
    store.claim("ann", "r")
    store.answer("ann", "r", "q1", "B")
    assert store.get_query("r", "q1")["state"] == "labelled"
    assert store.excluded_labellers() == set()
    assert store.set_excluded("carl", True) == 2
    assert store.excluded_labellers() == {"carl"}
    assert store.get_query("r", "q0")["state"] == "pending"  # only carl had answered it
    assert store.get_query("r", "q1")["state"] == "pending"  # ann's answer is one of the two it needs
    with pytest.raises(Forbidden):
        store.claim("carl", "r")
    assert store.set_excluded("carl", False) == 2  # taken back: done again
    assert store.get_query("r", "q0")["state"] == "labelled" and store.excluded_labellers() == set()


def test_a_version_1_store_gains_the_new_columns_and_keeps_its_rows(tmp_path, webm_clips):
    import store as store_module
    import store_schema

    data = tmp_path / "old"
    (data / "clips").mkdir(parents=True)
    db = sqlite3.connect(data / "feedback.sqlite3")
    db.executescript(store_schema.SCHEMA)  # the tables as version 1 made them (the new columns are ALTERed in)
    db.execute("INSERT INTO runs VALUES ('r', 'x', 'Hopper-v5', '{}', 0)")
    db.execute("INSERT INTO labellers VALUES ('ann', 0, 0)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.commit()
    db.close()
    s = store_module.Store(data)
    try:
        assert s.get_run("r")["env_id"] == "Hopper-v5"
        assert s.labeller_stats()[0]["labeller"] == "ann" and s.excluded_labellers() == set()
        s.add_query("r", "q0", 0, (webm_clips[0], "video/webm"), (webm_clips[1], "video/webm"), wanted=2)
        assert s.claim("ann", "r")["query_id"] == "q0"
    finally:
        s.close()
    version = sqlite3.connect(data / "feedback.sqlite3").execute("SELECT value FROM meta").fetchone()[0]
    assert version == str(store_schema.SCHEMA_VERSION) == "2"
