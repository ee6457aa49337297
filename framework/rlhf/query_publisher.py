"""Rendering a session's pairs to clips and uploading them to the labelling server, on a background thread, so that
training is never stalled by rendering (issue 12, item 2). Used by the human teacher (rlhf.human).

The trainer announces each session's size first (the page counts the pairs still being rendered), then holds the
session's first pairs back until :func:`ready_to_show` says that someone answering every ``answer_seconds`` never
waits for the rest; from then on each pair goes up as soon as its two clips exist. Repeats (a labelled pair asked
again, rlhf.labeller_quality) reuse the original's clips on the server and go up when their place comes.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from rlhf.feedback import query_id, repeat_id
from rlhf.feedback_client import FeedbackClient, FeedbackServerError
from rlhf.video import MIME, SegmentRenderer

log = logging.getLogger("cleanrlhf")

# Render times vary with the machine's load; plan with a quarter more than measured, so that a slower pair than
# the recent ones does not make the labeller wait.
RENDER_TIME_MARGIN = 1.25


def ready_to_show(rendered: int, total: int, pair_seconds: float, answer_seconds: float) -> bool:
    """Whether a session's first ``rendered`` of ``total`` pairs can go to the labellers now, such that someone who
    answers a pair every ``answer_seconds`` never waits for the rest, each of which takes ``pair_seconds`` to render.

    Shown now, pair j (1-based) > ``rendered`` exists after (j - rendered) * pair_seconds and is reached after
    (j - 1) * answer_seconds; both are linear in j, so checking the next pair and the last one covers all
    (issue 12, item 2). ``answer_seconds`` 0: every pair goes up as soon as it exists.
    """
    if rendered >= total or (rendered >= 1 and answer_seconds <= 0):
        return True
    if rendered < 1:
        return False
    return (
        pair_seconds <= rendered * answer_seconds and (total - rendered) * pair_seconds <= (total - 1) * answer_seconds
    )


class QueryPublisher:
    """The background thread that renders and uploads; ``put`` queues one item of a session (a pair or a repeat),
    ``raise_error`` surfaces a failure on the caller's thread, ``stop`` ends it."""

    def __init__(
        self,
        client: FeedbackClient,
        env_id: str,
        clip_size: int,
        answer_seconds: float,
        renderer_factory: Callable[[str, int, int], SegmentRenderer],
        wanted: Callable[[int, int], int],
    ):
        """``wanted(session, i)``: how many labellers answer pair i of the session (2 for a doubled query)."""
        self.client, self.env_id, self.clip_size, self.answer_seconds = client, env_id, clip_size, answer_seconds
        self._renderer_factory, self._wanted = renderer_factory, wanted
        self._held: list[Callable[[], object]] = []  # a session's uploads (rendered pairs, repeats) not shown yet
        self._pair_seconds: deque[float] = deque(maxlen=10)  # recent render times of a pair (two clips)
        self.render_seconds: list[float] = []  # per segment, for the run's log
        self._uploads: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        # One renderer: Mesa's llvmpipe already spreads each frame over all cores; a second rendering thread made
        # clips slower here (0.27 vs 0.34 clips/s of 64 frames at 240 px on 2 cores).
        self._thread = threading.Thread(target=self._publish, daemon=True, name="query-publisher")
        self._thread.start()

    def put(self, session: int, pos: int, todo: int, size: int, item: tuple) -> None:
        """Item ``pos`` of the ``todo`` still to upload of a session of ``size`` queries: ``(session, i, seg_a,
        seg_b)`` for pair i, or ``("repeat", session, j, of)`` for the session's j-th repeat of query ``of``."""
        self._uploads.put((session, pos, todo, size, item))

    def raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"rendering or uploading queries failed: {self._error}") from self._error

    def stop(self) -> int:
        """Stop rendering and uploading; returns how many queries were still waiting to be uploaded (dropped)."""
        dropped = 0
        while True:
            try:
                dropped += self._uploads.get_nowait() is not None
            except queue.Empty:
                break
        self._uploads.put(None)
        self._thread.join(timeout=60)
        return dropped + len(self._held)

    def _publish(self) -> None:
        """Render each pair and upload it. A session's first pairs are held back until ``ready_to_show``: when
        rendering is slower than labelling, a labeller who started on the first pair at once would wait for every
        later one; held back, they label the whole session without a pause, finishing about when they would have
        anyway. Once a session is shown, each further pair goes up as soon as it exists."""
        renderer = None
        shown = False
        try:
            while (entry := self._uploads.get()) is not None:
                session, pos, todo, size, item = entry
                if pos == 0:
                    self.client.announce_session(session, size)
                    shown = False
                if item[0] == "repeat":  # the server reuses the original's clips: nothing to render
                    self._held.append(functools.partial(self._repeat, *item[1:]))
                else:
                    _, i, a, b = item
                    if renderer is None:
                        renderer = self._renderer_factory(self.env_id, self.clip_size, self.clip_size)
                    t0 = time.perf_counter()
                    clip_a = renderer.clip(a.physics_states, a.mask, "webm")
                    clip_b = renderer.clip(b.physics_states, b.mask, "webm")
                    self._pair_seconds.append(time.perf_counter() - t0)
                    self.render_seconds.append(self._pair_seconds[-1] / 2)
                    self._held.append(
                        functools.partial(self.client.upload_query, query_id(session, i), session, clip_a, clip_b,
                                          MIME["webm"], labellers=self._wanted(session, i))
                    )  # fmt: skip
                recent = self._pair_seconds
                pair_seconds = RENDER_TIME_MARGIN * sum(recent) / len(recent) if recent else 0.0
                if shown or ready_to_show(pos + 1, todo, pair_seconds, self.answer_seconds):
                    shown = True
                    while self._held:  # in the session's order: a repeat goes up when its place comes
                        self._held[0]()
                        self._held.pop(0)
        except BaseException as e:  # surfaced by collect() on the training thread
            self._error = e
        finally:
            if renderer is not None:
                renderer.close()

    def _repeat(self, session: int, j: int, of: str) -> None:
        try:
            self.client.repeat_query(repeat_id(session, j), session, of)
        except FeedbackServerError as e:  # its label was undone (or its labeller excluded) since it was chosen
            if e.error != "not_labelled":
                raise
            log.info("not repeating %s: it has no label any more", of)
