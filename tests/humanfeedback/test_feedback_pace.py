"""Issue 12, item 2: a labeller who answers every 2 s never waits inside a session, even when the trainer renders
a pair more slowly than that. The trainer's real publisher (HumanTeacher, its background thread, the HTTP client),
the real server and the real page in Debian's Chromium; only the renderer is replaced by one of known speed
(3 s a pair, real WebM clips), so the test means the same on a fast and on a loaded machine."""

from __future__ import annotations

import time

import numpy as np
import pytest

from .feedback_testutil import CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

# Every change of what the page shows, with its time: [ms, waiting shown, "run … · query …"].
RECORD_VIEWS = """
document.addEventListener("DOMContentLoaded", () => {
  window.views = [];
  const note = () => window.views.push([performance.now(), !document.getElementById("waiting").hidden,
                                        document.getElementById("run-info").textContent]);
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true,
                                                     attributes: true, attributeFilter: ["hidden"]});
});
"""


class TimedRenderer:
    """Stands in for rlhf.video.SegmentRenderer: each clip takes ``seconds`` and is the next of ``clips``."""

    def __init__(self, clips: list[bytes], seconds: float) -> None:
        self.clips, self.seconds, self.made = clips, seconds, 0

    def __call__(self, env_id: str, width: int, height: int) -> TimedRenderer:
        return self

    def clip(self, physics_states: np.ndarray, mask: np.ndarray, fmt: str) -> bytes:
        time.sleep(self.seconds)
        self.made += 1
        return self.clips[(self.made - 1) % len(self.clips)]

    def close(self) -> None:
        pass


def test_a_labeller_answering_every_two_seconds_never_waits_inside_a_session(
    live_server, webm_clips, tmp_path, chromium_path
):
    """Rendering takes 3 s a pair, the labeller answers every 2 s. The trainer holds the session's first pair back
    until enough are rendered (here 2 of 3), so the page never shows its waiting state between the first pair and
    the last answer. Against the pipeline before issue 12 (``answer_seconds=0``: each pair uploaded as soon as it
    exists, as the trainer did) this fails: the page waits about a second before the second pair (checked)."""
    from playwright.sync_api import sync_playwright
    from test_replay import fill

    from rlhf.human import HumanTeacher
    from rlhf.replay import ReplayBuffer

    rb = fill(ReplayBuffer(200, 3, 2, 4), [(60, False), (60, False)])
    rng = np.random.default_rng(0)
    seg_a, seg_b = rb.sample_segments(3, 16, rng), rb.sample_segments(3, 16, rng)
    client = live_server.client("pace")
    renderer = TimedRenderer(webm_clips, seconds=1.5)
    teacher = HumanTeacher(client, "Hopper-v5", "hop", tmp_path / "pending", 32, renderer_factory=renderer)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.add_init_script(RECORD_VIEWS)
            page.goto(live_server.page_url)
            page.wait_for_selector("#waiting", state="visible")
            teacher.submit(seg_a, seg_b, session=0)
            # While it renders, the page counts the session's pairs (issue 12, item 6) instead of "Pending 0".
            page.wait_for_function("() => document.getElementById('n-rendering').textContent === '3'")
            assert "being rendered" in page.text_content("#waiting")
            page.wait_for_selector("#compare", state="visible", timeout=30_000)
            answered_at = []
            for _ in range(3):
                page.wait_for_timeout(2000)  # the labeller watches for two seconds, then answers
                answered_at.append(page.evaluate("() => performance.now()"))
                page.keyboard.press("ArrowLeft")
            page.wait_for_selector("#waiting", state="visible")  # the session is over
            views = page.evaluate("() => window.views")
        finally:
            browser.close()
    (answers,) = teacher.collect(wait=True, timeout=20)
    teacher.close()
    np.testing.assert_array_equal(answers.labels, np.zeros(3, np.float32))  # every answer reached the trainer
    first = next(t for t, waiting, _ in views if not waiting)
    inside = [(t, waiting, info) for t, waiting, info in views if first <= t <= answered_at[-1]]
    assert not [v for v in inside if v[1]], inside  # never the waiting state inside the session
    shown = [info.rsplit("query ", 1)[-1] for _, waiting, info in inside if "query" in info]
    assert list(dict.fromkeys(shown)) == ["s0000-q000", "s0000-q001", "s0000-q002"]
