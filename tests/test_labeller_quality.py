"""Labeller quality on the trainer's side (rlhf.labeller_quality, LabelLog, HumanTeacher): how the answers of two
labellers make one label, which queries are doubled and repeated, and a human teacher that asks doubled queries and
repeats of a real server, waits for both answers, never trains on a repeat and drops an excluded labeller's labels
from sessions it has already handed over."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests

from rlhf.feedback_client import FeedbackClient, FeedbackEvent
from rlhf.label_log import LabelLog
from rlhf.labeller_quality import choose_doubled, choose_repeats, combine, quality_scalars


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({"ann": 1.0}, 1.0),
        ({"ann": 1.0, "bob": 1.0}, 1.0),
        ({"ann": 1.0, "bob": 0.0}, None),  # a tie: no majority, dropped
        ({"ann": 0.5, "bob": 0.0}, None),
        ({"ann": 0.0, "bob": None}, 0.0),  # a skip abstains
        ({"ann": None}, None),
        ({"ann": 1.0, "bob": 0.0, "cy": 0.0}, 0.0),
    ],
)
def test_combine_is_the_strict_majority_of_the_labels(answers, expected):
    assert combine(answers) == expected


def test_combine_ignores_excluded_labellers():
    assert combine({"ann": 1.0, "bob": 0.0}, excluded={"bob"}) == 1.0
    assert combine({"bob": 0.0}, excluded={"bob"}) is None


def test_doubled_and_repeated_counts():
    rng = np.random.default_rng(0)
    doubled = choose_doubled(20, 0.25, rng)
    assert doubled.dtype == bool and doubled.sum() == 5
    assert choose_doubled(20, 0.0, rng).sum() == 0
    picks = choose_repeats(20, 0.1, ["a", "b", "c"], rng)
    assert len(picks) == 2 and len(set(picks)) == 2 and set(picks) <= {"a", "b", "c"}
    assert choose_repeats(20, 0.5, ["a"], rng) == ["a"]  # no more than there are
    assert choose_repeats(20, 0.5, [], rng) == []


def _ev(seq: int, kind: str, q: str, who: str, label: float | None = None) -> FeedbackEvent:
    return FeedbackEvent(seq=seq, type=kind, query_id=q, labeller=who, created_at="", label=label)


def test_label_log_keeps_each_labellers_answer_and_a_retract_undoes_only_theirs():
    log = LabelLog()
    log.apply([_ev(1, "label", "q0", "ann", 1.0), _ev(2, "label", "q0", "bob", 0.0), _ev(3, "skip", "q1", "ann")])
    assert log.answers == {"q0": {"ann": 1.0, "bob": 0.0}, "q1": {"ann": None}}
    assert log.answered("q0", wanted=2) and not log.answered("q1", wanted=2)
    assert log.labels == {} and log.skipped == {"q0", "q1"}  # q0 disagrees: no label
    log.apply([_ev(4, "retract", "q0", "bob")])
    assert log.labels == {"q0": 1.0} and not log.answered("q0", wanted=2)
    assert not log.answered("q0", excluded={"ann"})


def test_quality_scalars_name_each_labeller():
    stats = [
        {
            "labeller": "ann smith",
            "excluded": False,
            "answers": 10,
            "median_seconds": 3.5,
            "agreement": {"n": 4, "rate": 0.75},
            "self_consistency": {"n": 0, "rate": None, "flip_rate": None},
        }
    ]
    out = quality_scalars(stats)
    assert out["feedback/labeller/ann_smith/agreement"] == 0.75
    assert out["feedback/labeller/ann_smith/median_answer_seconds"] == 3.5
    assert "feedback/labeller/ann_smith/self_consistency" not in out  # nothing measured yet
    assert out["feedback/labellers"] == 1.0 and out["feedback/labellers_excluded"] == 0.0


def _segments(n: int):
    """n pairs of 8-step segments in real Hopper states (so that clips render), distinct observations."""
    from test_replay import fill

    from rlhf.envs import get_physics_state, make_env
    from rlhf.replay import ReplayBuffer

    rb = fill(ReplayBuffer(200, 3, 2, 4), [(60, False), (60, False)])
    rng = np.random.default_rng(0)
    seg_a, seg_b = rb.sample_segments(n, 8, rng), rb.sample_segments(n, 8, rng)
    hopper = make_env("Hopper-v5", seed=0)
    hopper.reset(seed=0)
    state = get_physics_state(hopper).astype(np.float32)
    hopper.close()
    for seg in (seg_a, seg_b):
        seg.physics_states = np.broadcast_to(state, (n, 8, len(state))).copy()
    return seg_a, seg_b


def _label(url: str, who: str, choice_of, stop: threading.Event, log: list) -> None:
    """A scripted labeller through the page's routes: ``choice_of(query_id)`` is its answer."""
    http = requests.Session()
    while not stop.is_set():
        query = http.post(f"{url}/api/claim", json={"labeller": who}, timeout=10).json()["query"]
        if query is None:
            http.get(f"{url}/api/wait", params={"wait": 0.5, "labeller": who}, timeout=10)
            continue
        choice = choice_of(query["query_id"])
        body = {"labeller": who, "run_id": query["run_id"], "query_id": query["query_id"], "choice": choice}
        # Logged before it is sent: the trainer may see the answer (and the test read the log) before post() returns.
        log.append((who, query["query_id"], choice))
        http.post(f"{url}/api/answer", json=body, timeout=10).raise_for_status()


def test_human_teacher_doubles_repeats_and_revises_after_an_exclusion(tmp_path):
    """Session 0: 2 pairs, 1 of them doubled; ann always answers A, bob B (so the doubled pair disagrees and is
    dropped); session 1 repeats the labelled pair of session 0, which never trains. (2 pairs a session: each clip
    takes 1.5-2 s to render and encode here.) Excluding bob
    on the server revises session 0: the pairs only bob answered lose their label, the doubled ones get ann's."""
    from rlhf.feedback_server_process import start_feedback_server
    from rlhf.human import HumanTeacher

    seg_a, seg_b = _segments(2)
    server = start_feedback_server(port=0, data_dir=tmp_path / "server")
    stop = threading.Event()
    given: list = []
    workers = [
        threading.Thread(target=_label, args=(server.url, "ann", lambda q: "A", stop, given), daemon=True),
        threading.Thread(target=_label, args=(server.url, "bob", lambda q: "B", stop, given), daemon=True),
    ]
    try:
        teacher = HumanTeacher(FeedbackClient(server.url, "run-1"), "Hopper-v5", "hop", tmp_path / "pending", 32,
                               repeat_fraction=0.5, double_fraction=0.5, rng=np.random.default_rng(1))  # fmt: skip
        t_asked = time.time()
        teacher.submit(seg_a, seg_b, session=0)
        for w in workers:
            w.start()
        (first,) = teacher.collect(wait=True, timeout=120)
        # when each pair's last answer came (the run's preference dataset keeps it), from the server's event times
        assert first.times is not None and np.all((first.times > t_asked - 1) & (first.times < time.time() + 1))
        doubled = teacher.doubled[0]
        assert doubled.sum() == 1
        by_query: dict = {}
        for who, q, choice in given:
            by_query.setdefault(q, {})[who] = choice
        for i in range(2):
            answers = by_query[f"s0000-q{i:03d}"]
            assert len(answers) == (2 if doubled[i] else 1)  # the trainer waited for both labellers
            expected = np.nan if doubled[i] else {"A": 0.0, "B": 1.0}[next(iter(answers.values()))]
            np.testing.assert_equal(first.labels[i], expected)  # disagreeing doubles are dropped

        teacher.submit(seg_a, seg_b, session=1)
        (second,) = teacher.collect(wait=True, timeout=120)
        assert len(second.labels) == 2  # the session's own pairs only: repeats never train
        deadline = time.time() + 60
        while sum(q.startswith("s0001-r") for _, q, _ in given) < 1 and time.time() < deadline:
            time.sleep(0.1)
        repeats = [(who, q) for who, q, _ in given if q.startswith("s0001-r")]
        assert len(repeats) == 1  # round(2 * 0.5) repeats, answered by who labelled the original
        stats = {s["labeller"]: s for s in teacher.client.labeller_stats()}
        assert sum(s["self_consistency"]["n"] for s in stats.values()) == 1
        # Always answering the same side is what the swap catches: on the swapped pair it contradicts itself.
        assert all(s["self_consistency"]["rate"] in (None, 0.0) for s in stats.values())

        assert teacher.revisions() == []  # nothing excluded yet
        teacher.client.exclude_labeller("bob")
        teacher.quality_scalars()  # refreshes the exclusions, as the loop does at every reward update
        revised = {r.session: r for r in teacher.revisions()}
        assert set(revised) <= {0, 1} and 0 in revised
        for i in range(2):
            only_bob = set(by_query[f"s0000-q{i:03d}"]) == {"bob"}
            np.testing.assert_equal(revised[0].labels[i], np.nan if only_bob else 0.0)  # ann's A where she answered
        assert teacher.revisions() == []  # each exclusion revises once
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=15)
        server.stop()


class RevisingTeacher:
    """A teacher that answers a session at once and, once asked to, hands back session 0 revised (one label gone,
    as when its labeller is excluded), with labeller statistics as the server would give them."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.pending, self.revise = rng, [], None

    def submit(self, seg_a, seg_b, session):
        from rlhf.feedback import Answers

        self.pending.append(Answers(seg_a, seg_b, np.array([0.0, 1.0, 0.5, 1.0], np.float32), session))

    def collect(self, wait, timeout=0.0):
        out, self.pending = self.pending, []
        return out

    def revisions(self):
        out, self.revise = ([] if self.revise is None else [self.revise]), None
        return out

    def quality_scalars(self):
        return {"feedback/labeller/ann/agreement": 0.9}


def test_the_feedback_loop_replaces_a_revised_session_and_logs_labeller_scalars():
    """A revised session's old labels are forgotten and its new ones stored in their place (counted once)."""
    import torch

    from rlhf.feedback import Answers
    from rlhf.feedback_loop import FeedbackLoop, SessionConfig
    from rlhf.preferences import PreferenceDataset
    from rlhf.reward_model import RewardEnsemble
    from rlhf.reward_training import RewardTrainingConfig
    from rlhf.segments import Segments

    rng = np.random.default_rng(0)

    def segs(n: int = 4) -> Segments:  # n segments of 5 steps, 3-d observations, 2-d actions
        return Segments(obs=rng.normal(size=(n, 5, 3)).astype(np.float32),
                        actions=rng.normal(size=(n, 5, 2)).astype(np.float32), true_rewards=np.zeros((n, 5), np.float32),
                        mask=np.ones((n, 5), bool), physics_states=np.zeros((n, 5, 1), np.float32))  # fmt: skip

    def stored(seg: Segments, session: int) -> Segments:
        return seg[loop.prefs.session == session]

    class Data:
        def select(self, n, candidates, length, strategy, rng):
            return segs(n), segs(n)

        def newest(self, n):
            return segs(2)

        def reward_updated(self, updates):
            pass

    cfg = SessionConfig(4, 1, 5, "uniform", 0.0, None, RewardTrainingConfig(epochs=1), wait=False, timeout=0.0)
    ensemble = RewardEnsemble(3, 2, members=1, hidden_dim=8, hidden_layers=1)
    logged: list[dict] = []
    teacher = RevisingTeacher(rng)
    loop = FeedbackLoop(cfg, np.array([0, 100]), teacher, ensemble, torch.optim.Adam(ensemble.parameters()),
                        PreferenceDataset(5, 3, 2, 1), Data(), rng, log_scalars=lambda m, s: logged.append(m))  # fmt: skip
    assert loop.step(0) and loop.step(100)
    assert len(loop.prefs) == 8 and loop.stats.total_labels == 8 and loop.stats.equal == 2
    assert logged[-1]["feedback/labeller/ann/agreement"] == 0.9
    old0 = loop.prefs.seg_a.obs[loop.prefs.session == 0]
    revised_labels = np.array([0.0, np.nan, 0.5, 1.0], np.float32)  # the second one's labeller was excluded
    teacher.revise = Answers(stored(loop.prefs.seg_a, 0), stored(loop.prefs.seg_b, 0), revised_labels, 0)
    assert loop.step(200)  # no new session: the revision alone is an update
    assert len(loop.prefs) == 7 and loop.stats.total_labels == 7 and loop.stats.skipped == 1
    assert loop.stats.sessions == 2 and loop.stats.equal == 2
    kept = loop.prefs.session == 0
    np.testing.assert_array_equal(loop.prefs.labels[kept], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(loop.prefs.seg_a.obs[kept], old0[[0, 2, 3]])


def test_a_labeller_excluded_by_the_flag_completes_queries_but_gives_no_label():
    """--feedback-exclude-labeller is the run's own: the server does not ask that labeller's queries of anyone
    else, so waiting for another answer would wait forever; their answer completes the query and trains nothing.
    An exclusion on the server does make the query unanswered (the server asks someone else)."""
    from rlhf.human import HumanTeacher

    teacher = HumanTeacher.__new__(HumanTeacher)  # only the answer bookkeeping, no server
    teacher.answers, teacher.doubled = LabelLog(), {0: np.array([False, True])}
    teacher._single = set()  # no doubled query let stand alone
    teacher.exclude_flag, teacher._server_excluded = frozenset({"bob"}), frozenset()
    teacher.answers.apply([_ev(1, "label", "s0000-q000", "bob", 1.0), _ev(2, "label", "s0000-q001", "bob", 1.0),
                           _ev(3, "label", "s0000-q001", "ann", 0.0)])  # fmt: skip
    assert teacher._query_answered(0, 0) and teacher._query_answered(0, 1)
    np.testing.assert_array_equal(teacher._labels(0, 2), [np.nan, 0.0])  # bob's labels are gone
    teacher.exclude_flag, teacher._server_excluded = frozenset(), frozenset({"bob"})
    assert not teacher._query_answered(0, 0) and not teacher._query_answered(0, 1)


def test_with_one_labeller_a_doubled_query_takes_its_one_answer_after_a_while(tmp_path, caplog):
    """A doubled pair waits for a second labeller; when only one person labels, the session would wait forever
    (checked: without the fallback, collect() times out with nothing). After ``alone_seconds`` the one answer stands."""
    from rlhf.feedback_server_process import start_feedback_server
    from rlhf.human import HumanTeacher

    seg_a, seg_b = _segments(2)
    server = start_feedback_server(port=0, data_dir=tmp_path / "server")
    stop = threading.Event()
    given: list = []
    worker = threading.Thread(target=_label, args=(server.url, "ann", lambda q: "B", stop, given), daemon=True)
    try:
        teacher = HumanTeacher(FeedbackClient(server.url, "run-1"), "Hopper-v5", "hop", tmp_path / "pending", 32,
                               double_fraction=0.5, rng=np.random.default_rng(1), alone_seconds=1.0)  # fmt: skip
        teacher.submit(seg_a, seg_b, session=0)
        worker.start()
        t0 = time.monotonic()
        (answers,) = teacher.collect(wait=True, timeout=90)
        assert time.monotonic() - t0 < 60
        assert teacher.doubled[0].sum() == 1
        np.testing.assert_array_equal(answers.labels, [1.0, 1.0])  # ann's B on both, the doubled one included
        assert sorted(q for _, q, _ in given) == ["s0000-q000", "s0000-q001"]
        assert "waited" in caplog.text and "only one labeller" in caplog.text
    finally:
        stop.set()
        worker.join(timeout=15)
        server.stop()


def test_the_label_log_keeps_when_each_labeller_answered():
    log = LabelLog()
    log.apply([_ev(1, "label", "q0", "ann", 1.0), _ev(2, "label", "q0", "bob", 0.0)])
    log.apply([FeedbackEvent(3, "skip", "q1", "ann", "2026-12-03T17:00:05.250Z")])
    assert log.time("q1") == pytest.approx(1796317205.25)
    assert np.isnan(log.time("q2")) and np.isnan(log.time("q1", excluded={"ann"}))
    log.apply([FeedbackEvent(4, "retract", "q1", "ann", "2026-12-03T17:00:09Z")])
    assert np.isnan(log.time("q1"))  # undone: no answer, no time
