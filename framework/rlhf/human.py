"""The human teacher: people answer queries on the labelling server's page (humanFeedback/, SPEC §8).

``submit`` hands a session's pairs to a background thread that renders each segment to a clip with one reusable
offscreen renderer and uploads the pair over HTTP as soon as both clips are ready, so labellers can start on the
first pair while the rest render, and training is never stalled by rendering. ``collect`` fetches answers through
the server's long-poll event log (no busy-waiting). The segments of every submitted query are written to
``pending_dir`` before upload and kept, so a restarted trainer of the same run re-reads those of the sessions its
checkpoint does not hold yet, gets every label given in the meantime from the server's log, and asks nothing again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

import numpy as np

from rlhf.feedback import Answers
from rlhf.feedback_client import FeedbackClient, LabelLog
from rlhf.segments import Segments
from rlhf.video import MIME, SegmentRenderer

log = logging.getLogger("cleanrlhf")


def query_id(session: int, index: int) -> str:
    return f"s{session:04d}-q{index:03d}"


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
    ):
        """``completed_sessions``: sessions whose labels the trainer already holds (restored from a checkpoint)."""
        self.client = client
        self.env_id, self.clip_size, self.page_url = env_id, clip_size, page_url
        self.pending_dir = Path(pending_dir)
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self.status_every = status_every
        client.register_run(instruction, env_id, meta={"clip_fps_max": 30})
        self.answers = LabelLog()
        self.answers.apply(client.all_events(0))  # a restarted trainer gets its whole history back
        self.outstanding: dict[int, tuple[Segments, Segments]] = {}  # session -> its pairs, until all answered
        self._uploads: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self.render_seconds: list[float] = []  # per segment, for the run's log
        # One renderer: Mesa's llvmpipe already spreads each frame over all cores; a second rendering thread made
        # clips slower here (0.27 vs 0.34 clips/s of 64 frames at 240 px on 2 cores).
        self._thread = threading.Thread(target=self._publish, daemon=True, name="query-publisher")
        self._thread.start()
        for path in sorted(self.pending_dir.glob("session_*.npz")):  # queries of an interrupted run
            session = int(path.stem.split("_")[1])
            if session in completed_sessions:
                continue
            with np.load(path, allow_pickle=False) as arrays:
                seg_a, seg_b = Segments.from_arrays(arrays, "a_"), Segments.from_arrays(arrays, "b_")
            self._enqueue(seg_a, seg_b, session)

    # -- asking ---------------------------------------------------------------------------------------------------
    def submit(self, seg_a: Segments, seg_b: Segments, session: int) -> None:
        """Persist the pairs, then render and upload them in the background."""
        path = self.pending_dir / f"session_{session:04d}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **seg_a.as_arrays("a_"), **seg_b.as_arrays("b_"))
        tmp.replace(path)
        self._enqueue(seg_a, seg_b, session)

    def _enqueue(self, seg_a: Segments, seg_b: Segments, session: int) -> None:
        self.outstanding[session] = (seg_a, seg_b)
        for i in range(len(seg_a)):
            if not self.answers.answered(query_id(session, i)):
                self._uploads.put((session, i, seg_a[i], seg_b[i]))

    def _publish(self) -> None:
        renderer = None
        try:
            while (item := self._uploads.get()) is not None:
                session, i, a, b = item
                if renderer is None:
                    renderer = SegmentRenderer(self.env_id, self.clip_size, self.clip_size)
                t0 = time.perf_counter()
                clip_a = renderer.clip(a.physics_states, a.mask, "webm")
                clip_b = renderer.clip(b.physics_states, b.mask, "webm")
                self.render_seconds.append((time.perf_counter() - t0) / 2)
                self.client.upload_query(query_id(session, i), session, clip_a, clip_b, MIME["webm"])
        except BaseException as e:  # surfaced by collect() on the training thread
            self._error = e
        finally:
            if renderer is not None:
                renderer.close()

    # -- receiving ------------------------------------------------------------------------------------------------
    def collect(self, wait: bool, timeout: float = 0.0) -> list[Answers]:
        """Sessions whose every query is answered (a label or a skip), oldest first.

        With ``wait``, block (long-polling the server) until every outstanding session is answered, or until
        ``timeout`` seconds (0 = no limit); the remaining sessions stay outstanding for a later call.
        """
        deadline = time.monotonic() + timeout if timeout > 0 else float("inf")
        last_status = time.monotonic()
        while True:
            self._raise_worker_error()
            poll = min(25.0, max(0.0, deadline - time.monotonic())) if wait else 0.0
            self.answers.apply(self.client.events(after=self.answers.last_seq, wait=poll))
            done = [s for s in sorted(self.outstanding) if self._answered(s)]
            if done or not wait or not self.outstanding or time.monotonic() >= deadline:
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

    def _answered(self, session: int) -> bool:
        return all(self.answers.answered(query_id(session, i)) for i in range(len(self.outstanding[session][0])))

    def _take(self, session: int) -> Answers:
        seg_a, seg_b = self.outstanding.pop(session)
        labels = np.array(
            [self.answers.labels.get(query_id(session, i), np.nan) for i in range(len(seg_a))], np.float32
        )
        return Answers(seg_a, seg_b, labels, session)

    def _raise_worker_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"rendering or uploading queries failed: {self._error}") from self._error

    def close(self) -> None:
        self._uploads.put(None)
        self._thread.join(timeout=60)
        self.client.close()
