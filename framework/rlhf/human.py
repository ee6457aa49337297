"""The human teacher: people answer queries on the labelling server's page (humanFeedback/, SPEC §8).

``submit`` hands a session's pairs to a background thread (rlhf.query_publisher) that announces the session's
size to the server, renders each segment to a clip with one reusable offscreen renderer and uploads the pairs over
HTTP, so training is never stalled by rendering: the first ones once enough are rendered that a labeller answering
every ``answer_seconds`` never waits for the rest (all at once when rendering keeps up with labelling), and each
later one as soon as both its clips are ready. ``collect`` fetches answers through
the server's long-poll event log (no busy-waiting). The segments of every submitted query are written to
``pending_dir`` before upload and kept, so a restarted trainer of the same run re-reads those of the sessions its
checkpoint does not hold yet, gets every label given in the meantime from the server's log, and asks nothing again:
a session asked before the restart is asked with its stored segments when the resumed loop reaches it (issue 9,
item 2), so its labels stay attached to the pairs the labellers saw. ``finish`` ends the run's part: it withdraws
what the run no longer waits for from the server and reports how many queries were asked and answered.

Labeller quality (rlhf.labeller_quality, which says how the answers train): a share of each session's queries is
asked of two labellers, and earlier labelled pairs are asked again (repeats, on top of the session's queries);
labellers excluded by the flag or on the server count nowhere, and ``revisions`` hands back the sessions already
learned from whose labels an exclusion changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rlhf.feedback import Answers, query_id
from rlhf.feedback_client import FeedbackClient
from rlhf.label_log import LabelLog
from rlhf.labeller_quality import choose_doubled, choose_repeats, quality_scalars
from rlhf.query_publisher import QueryPublisher
from rlhf.segments import Segments
from rlhf.video import SegmentRenderer

log = logging.getLogger("cleanrlhf")


# A doubled query waits for a second labeller. With one person labelling there is none, and the session would wait
# forever: once a session has waited this long for nothing but second answers while only one labeller has answered
# in the run, the first answer stands (logged).
ALONE_SECONDS = 60.0


class HumanTeacher:
    def __init__(
        self,
        client: FeedbackClient,
        env_id: str,
        instruction: str,
        pending_dir: Path,
        clip_size: int = 240,
        page_url: str = "",
        status_every: float = 30.0,
        completed_sessions: set[int] | frozenset[int] = frozenset(),
        next_session: int | None = None,
        answer_seconds: float = 2.0,
        renderer_factory: Callable[[str, int, int], SegmentRenderer] = SegmentRenderer,
        repeat_fraction: float = 0.0,
        double_fraction: float = 0.0,
        exclude: tuple[str, ...] = (),
        rng: np.random.Generator | None = None,
        alone_seconds: float = ALONE_SECONDS,
    ):
        """``completed_sessions``: sessions whose labels the trainer already holds (restored from a checkpoint);
        ``next_session``: the first session the restored loop has not asked yet (the checkpoint's); the stored
        sessions from there on wait for the loop to ask them again. None: every stored session is outstanding.
        ``answer_seconds``: the labelling pace a session's first upload waits for (``ready_to_show``).
        ``renderer_factory(env_id, width, height)``: makes the clip renderer (a test passes one of known speed).
        ``repeat_fraction``/``double_fraction``: of each session's queries, how many more re-ask a labelled pair /
        how many are asked of two labellers; ``exclude``: labellers whose answers this run ignores; ``rng`` picks
        both (seeded by the run); ``alone_seconds``: how long doubled queries wait for a second labeller when only
        one labeller answers (then the first answer stands)."""
        self.client = client
        self.env_id, self.clip_size, self.page_url = env_id, clip_size, page_url
        self.pending_dir = Path(pending_dir)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.status_every = status_every
        self.repeat_fraction, self.double_fraction = repeat_fraction, double_fraction
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.exclude_flag = frozenset(exclude)
        self.doubled: dict[int, np.ndarray] = {}  # session -> (n,) bool: asked of two labellers
        self.alone_seconds = alone_seconds
        self._alone_since: float | None = None  # when the wait for a second labeller who does not exist began
        self._single: set[str] = set()  # doubled queries whose one answer stands (no second labeller came)
        # Sessions the loop learned from -> the exclusions their labels reflect (a resumed run's checkpoint is
        # taken as learned without any: revisions() recomputes those that an excluded labeller answered).
        self.learnt: dict[int, frozenset[str]] = dict.fromkeys(completed_sessions, frozenset())
        self._server_excluded: frozenset[str] = frozenset()
        self._repeated: set[str] = set()  # queries already asked again (each is repeated once at most)
        client.register_run(instruction, env_id, meta={"clip_fps_max": 30})
        self.answers = LabelLog()
        self.answers.apply(client.all_events(0))  # a restarted trainer gets its whole history back
        self.refresh_exclusions()
        self.outstanding: dict[int, tuple[Segments, Segments]] = {}  # session -> its pairs, until all answered
        # Sessions the interrupted run asked after its checkpoint: held until the resumed loop asks them again, so
        # they are learned from at the step the schedule says, and with the segments that were shown.
        self.asked_before_restart: dict[int, tuple[Segments, Segments]] = {}
        self.publisher = QueryPublisher(client, env_id, clip_size, answer_seconds, renderer_factory, self._wanted)
        for path in sorted(self.pending_dir.glob("session_*.npz")):  # queries of an interrupted run
            session = int(path.stem.split("_")[1])
            seg_a, seg_b, repeats = self._load(session)
            if session in completed_sessions:
                self._repeated |= set(repeats)
                continue
            self._enqueue(seg_a, seg_b, session, repeats)  # uploads what the interrupted run had not uploaded yet
            if next_session is not None and session >= next_session:
                self.asked_before_restart[session] = self.outstanding.pop(session)

    # -- asking ---------------------------------------------------------------------------------------------------
    def submit(self, seg_a: Segments, seg_b: Segments, session: int) -> None:
        """Persist the pairs, then render and upload them in the background. A session the interrupted run already
        asked keeps its stored pairs (labellers may have answered them), whatever was selected now."""
        if session in self.asked_before_restart:
            self.outstanding[session] = self.asked_before_restart.pop(session)
            log.info("feedback session %d was asked before the restart: waiting for its answers", session)
            return
        n = len(seg_a)
        self.doubled[session] = choose_doubled(n, self.double_fraction, self.rng)
        repeats = choose_repeats(n, self.repeat_fraction, self._repeatable(), self.rng)
        path = self.pending_dir / f"session_{session:04d}.npz"
        tmp = path.with_suffix(".tmp.npz")
        arrays = {**seg_a.as_arrays("a_"), **seg_b.as_arrays("b_"), "doubled": self.doubled[session],
                  "repeats": np.array(repeats, dtype=str)}  # fmt: skip
        np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy stub: **dict may bind allow_pickle
        tmp.replace(path)
        self._enqueue(seg_a, seg_b, session, repeats)

    def _load(self, session: int) -> tuple[Segments, Segments, list[str]]:
        """A submitted session from ``pending_dir``: its pairs, which were doubled, the queries it repeats."""
        with np.load(self.pending_dir / f"session_{session:04d}.npz", allow_pickle=False) as arrays:
            seg_a, seg_b = Segments.from_arrays(arrays, "a_"), Segments.from_arrays(arrays, "b_")
            doubled = arrays["doubled"] if "doubled" in arrays else np.zeros(len(seg_a), bool)
            repeats = [str(q) for q in arrays["repeats"]] if "repeats" in arrays else []
        self.doubled[session] = np.asarray(doubled, bool)
        return seg_a, seg_b, repeats

    def _repeatable(self) -> list[str]:
        """Queries of this run with a label that were not repeated yet (repeats themselves are ``-r`` ids)."""
        excluded = self.excluded
        return sorted(
            q
            for q in self.answers.answers
            if "-q" in q and q not in self._repeated and self.answers.label(q, excluded) is not None
        )

    def _enqueue(self, seg_a: Segments, seg_b: Segments, session: int, repeats: Sequence[str] = ()) -> None:
        self.outstanding[session] = (seg_a, seg_b)
        items: list = [(session, i, seg_a[i], seg_b[i]) for i in range(len(seg_a))]
        items = [it for it in items if not self._query_answered(session, it[1])]
        # Repeats go in among the new pairs, which keep their order (at places drawn from the session's own
        # generator, the same after a restart), so that the labeller cannot tell them by their position.
        places = np.random.default_rng(session).choice(len(items) + len(repeats), len(repeats), replace=False)
        for place, (j, of) in sorted(zip(places.tolist(), enumerate(repeats), strict=True)):
            items.insert(place, ("repeat", session, j, of))
        self._repeated |= set(repeats)
        for pos, item in enumerate(items):  # the session will hold all its pairs and repeats
            self.publisher.put(session, pos, len(items), len(seg_a) + len(repeats), item)

    def _wanted(self, session: int, i: int) -> int:
        doubled = self.doubled.get(session)
        if doubled is None or i >= len(doubled) or not doubled[i]:
            return 1
        return 1 if query_id(session, i) in self._single else 2

    def _waiting_for_a_second_labeller(self) -> list[str]:
        """The doubled queries the outstanding sessions wait for, when a second answer on them is all they wait for
        and fewer than two labellers (not excluded by the server) answered in this run; else []."""
        stuck = []
        for session in sorted(self.outstanding):
            for i in range(len(self.outstanding[session][0])):
                if self._query_answered(session, i):
                    continue
                if self._wanted(session, i) < 2 or not self.answers.answered(query_id(session, i), 1,
                                                                               self._server_excluded):  # fmt: skip
                    return []  # the session waits for a first answer too: someone is (or will be) labelling
                stuck.append(query_id(session, i))
        # only then the run's labellers (a pass over all its answers; collect() runs every poll)
        if stuck and len({w for given in self.answers.answers.values() for w in given} - self._server_excluded) >= 2:
            return []
        return stuck

    def _let_single_answers_stand(self) -> None:
        stuck = self._waiting_for_a_second_labeller()
        now = time.monotonic()
        if not stuck:
            self._alone_since = None
        elif self._alone_since is None:
            self._alone_since = now
        elif now - self._alone_since >= self.alone_seconds:
            log.warning(
                "%d doubled queries (%s) waited %.0f s for a second labeller, but only one labeller answers in this "
                "run: their one answer stands (--feedback-double-fraction needs two people)",
                len(stuck), ", ".join(stuck), now - self._alone_since,
            )  # fmt: skip
            self._single |= set(stuck)
            self._alone_since = None

    def _query_answered(self, session: int, i: int) -> bool:
        # Only the server's exclusions make a query unanswered again (the server then asks someone else); an answer
        # of a labeller excluded by this run's flag still completes it (nobody would be asked again), it just gives
        # no label (see _labels).
        return self.answers.answered(query_id(session, i), self._wanted(session, i), self._server_excluded)

    @property
    def excluded(self) -> frozenset[str]:
        """Labellers whose answers count nowhere: this run's --feedback-exclude-labeller and the server's."""
        return self.exclude_flag | self._server_excluded

    # -- receiving ------------------------------------------------------------------------------------------------
    def collect(self, wait: bool, timeout: float = 0.0) -> list[Answers]:
        """Sessions whose every query is answered (a label or a skip), oldest first.

        With ``wait``, block (long-polling the server) until every outstanding session is answered, or until
        ``timeout`` seconds (0 = no limit); the remaining sessions stay outstanding for a later call.
        """
        deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
        last_status = time.monotonic()
        while True:
            self.publisher.raise_error()
            poll = min(25.0, max(0.0, deadline - time.monotonic())) if wait else 0.0
            if self._alone_since is not None:  # wake up in time to let single answers stand
                poll = min(poll, max(0.05, self._alone_since + self.alone_seconds - time.monotonic()))
            self.answers.apply(self.client.events(after=self.answers.last_seq, wait=poll))
            self._let_single_answers_stand()
            done = [s for s in sorted(self.outstanding) if self._answered(s)]
            if done:  # an exclusion on the server may have made some of them unanswered again
                self.refresh_exclusions()
                done = [s for s in done if self._answered(s)]
            if done or not wait or not self.outstanding or time.monotonic() >= deadline:
                if wait and not done and self.outstanding:
                    self._log_timeout(timeout)
                return [self._take(s) for s in done]
            if time.monotonic() - last_status >= self.status_every:
                status = self.client.status()
                log.info(
                    "waiting for labels at %s: %d pending, %d labelled, %d skipped",
                    self.page_url or self.client.url,
                    status.pending + status.leased,
                    status.labelled,
                    status.skipped,
                )
                last_status = time.monotonic()

    def _log_timeout(self, timeout: float) -> None:
        for session in sorted(self.outstanding):
            n = len(self.outstanding[session][0])
            answered = sum(self._query_answered(session, i) for i in range(n))
            log.warning(
                "feedback session %d timed out after %.0f s (--feedback-timeout) with %d of %d queries answered; "
                "training goes on, and the session is learned from once all its answers are in",
                session,
                timeout,
                answered,
                n,
            )

    def _answered(self, session: int) -> bool:
        return all(self._query_answered(session, i) for i in range(len(self.outstanding[session][0])))

    def _labels(self, session: int, n: int) -> np.ndarray:
        """(n,) float32 training labels of a session (NaN: skipped, or no majority), without excluded labellers."""
        labels = [self.answers.label(query_id(session, i), self.excluded) for i in range(n)]
        return np.array([np.nan if v is None else v for v in labels], np.float32)

    def _labellers(self, session: int, n: int) -> list[str]:
        """Who gave each query's training label ("+"-joined when two labellers agreed; "" for none), for the run's
        preference dataset (rlhf.pref_dataset)."""
        out = []
        for i in range(n):
            label, given = (
                self.answers.label(query_id(session, i), self.excluded),
                self.answers.answers.get(query_id(session, i), {}),
            )
            out.append(
                "+".join(sorted(w for w, v in given.items() if v is not None and v == label and w not in self.excluded))
            )
        return out

    def _take(self, session: int) -> Answers:
        seg_a, seg_b = self.outstanding.pop(session)
        self.learnt[session] = self.excluded
        return self._answers(session, seg_a, seg_b)

    def _answers(self, session: int, seg_a: Segments, seg_b: Segments) -> Answers:
        """The session's training labels now, with who gave each and when (the last of them answered)."""
        n = len(seg_a)
        times = np.array([self.answers.time(query_id(session, i), self.excluded) for i in range(n)], np.float64)
        return Answers(seg_a, seg_b, self._labels(session, n), session, self._labellers(session, n), times)

    # -- labeller quality -----------------------------------------------------------------------------------------
    def refresh_exclusions(self, stats: list[dict] | None = None) -> None:
        """Learn which of the run's labellers the server excludes (from ``stats``, or one request). Only those
        who answered in this run matter: an excluded labeller can answer nothing more."""
        stats = self.client.labeller_stats() if stats is None else stats
        self._server_excluded = frozenset(s["labeller"] for s in stats if s["excluded"])

    def revisions(self) -> list[Answers]:
        """Sessions already learned from whose labels an exclusion made since changes (in a resumed run, also the
        flag's): their answers without that labeller's, for the loop to learn from instead of the old ones."""
        out = []
        for session, applied in sorted(self.learnt.items()):
            new = self.excluded - applied
            if not new or not (self.pending_dir / f"session_{session:04d}.npz").exists():
                continue
            self.learnt[session] = self.excluded
            seg_a, seg_b, _ = self._load(session)
            ids = [query_id(session, i) for i in range(len(seg_a))]
            if any(who in new for q in ids for who in self.answers.answers.get(q, {})):
                out.append(self._answers(session, seg_a, seg_b))
        return out

    def quality_scalars(self) -> dict[str, float]:
        """The server's per-labeller statistics of this run as ``feedback/labeller/...`` scalars (and the
        server's exclusions, refreshed on the way)."""
        stats = self.client.labeller_stats()
        self.refresh_exclusions(stats)
        return quality_scalars(stats)

    @property
    def render_seconds(self) -> list[float]:
        """Seconds to render each clip so far (for the run's log)."""
        return self.publisher.render_seconds

    def finish(self, withdraw: bool) -> dict[str, float]:
        """End of the run: stop uploading, report asked / answered (a log line; returns ``feedback/queries_*``
        scalars) and, with ``withdraw`` (the run ended and waits for nothing more), remove the run's unanswered
        queries from the server so that nobody labels them for nothing (issue 9, item 9)."""
        dropped = self.publisher.stop()
        status = self.client.status()
        withdrawn = self.client.withdraw() if withdraw else 0
        answered = status.labelled + status.skipped
        quiet = answered == status.total and not dropped  # loud when some queries went unanswered
        log.log(
            logging.INFO if quiet else logging.WARNING,
            "human feedback: %d queries asked, %d answered (%d labels, %d skipped)%s%s",
            status.total,
            answered,
            status.labelled,
            status.skipped,
            f"; {withdrawn} unanswered withdrawn from the server" if withdrawn else "",
            f"; {dropped} never uploaded" if dropped else "",
        )
        return {
            "feedback/queries_asked": float(status.total),
            "feedback/queries_answered": float(answered),
            "feedback/queries_withdrawn": float(withdrawn),
        }

    def close(self) -> None:
        self.publisher.stop()
        self.client.close()
