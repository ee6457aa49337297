"""The page in a real browser (Playwright driving Debian's headless Chromium) against the real server: both clips
play, labels given by click and by key (and one undo) reach the trainer exactly, two labellers never see the same
query at once, and the README screenshot can be taken."""

from __future__ import annotations

import struct
import time

import pytest

from rlhf.label_log import LabelLog

from .feedback_testutil import CHROMIUM_ARGS, TOKEN

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

BOTH_PLAYING = (
    "() => ['clip-a', 'clip-b'].every(id => { const v = document.getElementById(id);"
    " return v.readyState >= 2 && !v.paused && v.currentTime > 0.3; })"
)


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shown_query(page) -> str | None:
    """The query id the page shows, or None while it waits for the trainer."""
    if page.is_visible("#waiting"):
        return None
    return page.text_content("#run-info").rsplit("query ", 1)[-1]


def wait_for_query(page, query_id: str | None, timeout: float = 10.0) -> None:
    if query_id is None:
        page.wait_for_selector("#waiting", state="visible", timeout=timeout * 1000)
        return
    page.wait_for_function(
        "(q) => !document.getElementById('compare').hidden &&"
        " document.getElementById('run-info').textContent.endsWith('query ' + q)",
        arg=query_id,
        timeout=timeout * 1000,
    )


def playback(page) -> list[tuple[float, int]]:
    """(currentTime, decoded frames so far) of clip A and clip B, read at the same instant."""
    return page.evaluate(
        "() => ['clip-a', 'clip-b'].map(id => { const v = document.getElementById(id);"
        " return [v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames]; })"
    )


def test_label_by_click_and_key_with_undo(browser, live_server, webm_clips):
    trainer = live_server.client("hopper-s1")
    trainer.register_run("make the hopper hop forward", "Hopper-v5")
    for i in range(4):
        trainer.upload_query(f"q{i}", 1, webm_clips[i], webm_clips[i + 1])
    ctx = browser.new_context()
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(live_server.page_url)
    # The labeller types their name; it is remembered and recorded with every label.
    page.fill("#labeller", "Alice Tester")
    page.press("#labeller", "Enter")
    wait_for_query(page, "q0")
    assert page.text_content("#instruction") == "make the hopper hop forward"

    # Both videos really play (decoded frames, advancing clocks), together.
    page.wait_for_function(BOTH_PLAYING, timeout=10_000)
    before = playback(page)
    time.sleep(0.6)
    after = playback(page)
    for (t0, f0), (t1, f1) in zip(before, after, strict=True):
        assert t1 != t0 and f1 > f0, (before, after)  # the clock moves and new frames are decoded
    assert abs(after[0][0] - after[1][0]) < 0.3, after  # in sync
    assert page.evaluate("() => ['clip-a','clip-b'].every(id => document.getElementById(id).muted)")

    page.click("#btn-a")  # q0: A better
    wait_for_query(page, "q1")
    page.keyboard.press("ArrowRight")  # q1: B better
    wait_for_query(page, "q2")
    page.keyboard.press("ArrowUp")  # q2: equally good ...
    wait_for_query(page, "q3")
    page.keyboard.press("u")  # ... undone: q2 comes back to us
    wait_for_query(page, "q2")
    assert "Undone" in page.text_content("#status")
    page.keyboard.press("ArrowDown")  # q2: can't tell (skip)
    wait_for_query(page, "q3")
    page.click("#btn-b")  # q3: B better
    wait_for_query(page, None)
    assert "Waiting for the trainer" in page.text_content("#waiting")
    assert page.is_disabled("#btn-a")
    page.wait_for_function("() => document.getElementById('n-mine').textContent === '4'")
    assert page.text_content("#n-labelled") == "3" and page.text_content("#n-skipped") == "1"

    events = trainer.all_events()
    assert [(e.type, e.query_id) for e in events] == [
        ("label", "q0"),
        ("label", "q1"),
        ("label", "q2"),
        ("retract", "q2"),
        ("skip", "q2"),
        ("label", "q3"),
    ]
    log = LabelLog()
    log.apply(events)
    assert log.labels == {"q0": 0.0, "q1": 1.0, "q3": 1.0} and log.skipped == {"q2"}
    assert {e.labeller for e in events} == {"Alice Tester"}

    # A new session arriving while the page waits shows up by itself (long-poll, no reload), with the opt-in beep.
    page.click("details.settings summary")
    page.check("#opt-sound")
    assert page.title() == "CleanRLHF · Which clip is better?"
    trainer.upload_query("q4", 2, webm_clips[5], webm_clips[6])
    wait_for_query(page, "q4", timeout=10)
    assert page.text_content("#status") == "New clip pairs arrived."
    assert page.evaluate("() => localStorage.getItem('cleanrlhf.sound')") == "1"
    page.wait_for_function(BOTH_PLAYING, timeout=10_000)
    page.reload()  # the name is remembered, and the held query is resumed
    wait_for_query(page, "q4")
    assert page.input_value("#labeller") == "Alice Tester"
    assert not errors, errors
    ctx.close()


def test_renaming_while_a_claim_is_in_flight_strands_no_pair(browser, live_server, webm_clips):
    """The page's first claim (under its generated name) is held back until after the labeller renames themself:
    the pair that claim leases must not stay leased to the old name, or it would be hidden until the lease expired."""
    trainer = live_server.client("rename")
    trainer.register_run("make the hopper hop forward", "Hopper-v5")
    for i in range(2):
        trainer.upload_query(f"q{i}", 1, webm_clips[i], webm_clips[i + 1])
    ctx = browser.new_context()
    page = ctx.new_page()
    held = []

    def hold_first_claim(route):
        if held:
            route.continue_()
        else:
            held.append(route)

    page.route("**/api/claim", hold_first_claim)
    page.goto(live_server.page_url)
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(20)
    assert held, "the page never claimed"
    page.fill("#labeller", "Renamed Labeller")
    page.press("#labeller", "Enter")
    page.wait_for_timeout(300)  # whatever the page sends after the rename reaches the server first
    held[0].continue_()
    wait_for_query(page, "q0")
    page.keyboard.press("ArrowLeft")
    wait_for_query(page, "q1")  # not stranded under the old name
    page.keyboard.press("ArrowRight")
    wait_for_query(page, None)
    events = trainer.all_events()
    assert [(e.query_id, e.labeller) for e in events] == [("q0", "Renamed Labeller"), ("q1", "Renamed Labeller")]
    ctx.close()


def test_visible_page_keeps_its_pair_past_the_lease_and_a_hidden_one_lets_it_go(browser, tmp_path, webm_clips):
    """With 3-second leases: a pair on screen in a visible tab, and the next one it prefetched, stay reserved long
    past their lease (the page renews them), so another labeller gets the pair after those and the first labeller's
    answer is saved; in a hidden tab the leases run out, the pair goes to someone else, and the page moves on by
    itself when it is shown again."""
    import requests

    from rlhf.feedback_server_process import start_feedback_server

    with start_feedback_server(port=0, data_dir=tmp_path / "data", token=TOKEN, lease_seconds=3) as server:
        trainer = server.client("lease")
        trainer.register_run("make the hopper hop forward", "Hopper-v5")
        for i in range(4):
            trainer.upload_query(f"q{i}", 1, webm_clips[i], webm_clips[i + 1])

        def other(route: str, **body) -> dict:
            r = requests.post(server.url + route, json={"labeller": "other", **body}, timeout=10,
                              headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
            assert r.status_code == 200, r.text
            return r.json()

        def other_claims() -> str:
            return other("/api/claim")["query"]["query_id"]

        ctx = browser.new_context()
        ctx.add_init_script("localStorage.setItem('cleanrlhf.labeller', 'watcher')")
        page = ctx.new_page()
        page.goto(server.page_url)
        wait_for_query(page, "q0")
        page.wait_for_timeout(7000)  # more than twice the lease
        assert other_claims() == "q2"  # q0 and the prefetched q1 are still reserved for the page
        other("/api/answer", run_id="lease", query_id="q2", choice="B")
        page.keyboard.press("ArrowLeft")
        wait_for_query(page, "q1")  # the prefetched pair

        # The tab goes to the background: renewals stop and the leases of q1 (and the prefetched q3) run out.
        page.evaluate(
            "() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
            " document.dispatchEvent(new Event('visibilitychange')); }"
        )
        page.wait_for_timeout(4500)
        assert other_claims() == "q1"  # q1's lease ran out, and it comes first
        page.evaluate(
            "() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
            " document.dispatchEvent(new Event('visibilitychange')); }"
        )
        page.wait_for_function(
            "() => !document.getElementById('run-info').textContent.endsWith('query q1')", timeout=10_000
        )
        assert "went to another labeller" in page.text_content("#status")
        events = trainer.all_events()
        assert [(e.query_id, e.labeller) for e in events] == [("q2", "other"), ("q0", "watcher")]
        assert shown_query(page) == "q3"
        ctx.close()


def test_two_labellers_never_see_the_same_query(browser, live_server, webm_clips):
    trainer = live_server.client("crowd")
    trainer.register_run("make the hopper hop forward", "Hopper-v5")
    n = 6
    for i in range(n):
        trainer.upload_query(f"q{i}", 1, webm_clips[i], webm_clips[(i + 1) % len(webm_clips)])
    pages = {}
    for name in ("ann", "bob"):
        ctx = browser.new_context()
        ctx.add_init_script(f"localStorage.setItem('cleanrlhf.labeller', '{name}')")
        pages[name] = ctx.new_page()
        pages[name].goto(live_server.page_url)
    for page in pages.values():
        page.wait_for_function("() => !document.getElementById('compare').hidden")
    key = {"ann": "ArrowLeft", "bob": "ArrowRight"}
    seen: dict[str, set[str]] = {"ann": set(), "bob": set()}
    for _ in range(n + 2):
        shown = {name: shown_query(p) for name, p in pages.items()}
        if shown["ann"] is not None and shown["bob"] is not None:
            assert shown["ann"] != shown["bob"], shown
        if all(q is None for q in shown.values()):
            break
        for name, q in shown.items():
            if q is None:
                continue
            seen[name].add(q)
            pages[name].keyboard.press(key[name])
            pages[name].wait_for_function(
                "(q) => !document.getElementById('run-info').textContent.endsWith('query ' + q)"
                " || !document.getElementById('waiting').hidden",
                arg=q,
            )
    assert not seen["ann"] & seen["bob"]
    assert seen["ann"] | seen["bob"] == {f"q{i}" for i in range(n)}
    events = trainer.all_events()
    assert len(events) == n and all(e.type == "label" for e in events)
    assert {e.query_id for e in events if e.labeller == "ann"} == seen["ann"]
    assert all(e.label == (0.0 if e.labeller == "ann" else 1.0) for e in events)
    for page in pages.values():
        page.context.close()


def test_screenshot_of_the_page(browser, live_server, tmp_path):
    from feedback_screenshot import make_demo_clips, populate, take_screenshot

    populate(live_server.url, TOKEN, make_demo_clips())
    out = tmp_path / "feedback_server.png"
    take_screenshot(live_server.page_url, out, browser=browser)
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1180, 900) and len(png) > 20_000


def test_page_drops_the_token_from_the_address_bar(browser, live_server, webm_clips):
    """Issue 9, item 5: once stored (sessionStorage), the token leaves the address bar (and so the history, a
    bookmark, a screen share); a reload still labels; the other parameters of the link stay."""
    trainer = live_server.client("tok")
    trainer.register_run("make the hopper hop forward", "Hopper-v5")
    for i in range(2):
        trainer.upload_query(f"q{i}", 1, webm_clips[i], webm_clips[i + 1])
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(live_server.page_url + "&run=tok")
    wait_for_query(page, "q0")
    assert TOKEN not in page.url and page.url.endswith("/?run=tok"), page.url
    assert page.evaluate("() => sessionStorage.getItem('cleanrlhf.token')") == TOKEN
    page.reload()  # asks for /?run=tok: no token in the URL any more
    wait_for_query(page, "q0")  # the same pair, resumed with the stored token
    page.keyboard.press("ArrowRight")
    wait_for_query(page, "q1")
    assert [(e.query_id, e.label) for e in trainer.all_events()] == [("q0", 1.0)]
    # A tab opened with the bare address (no token anywhere) says what to do instead of failing silently.
    bare = ctx.new_page()
    bare.goto(live_server.url + "/")
    bare.wait_for_function("() => document.getElementById('status').textContent.includes('token')")
    ctx.close()


def test_page_comes_back_later_when_every_long_poll_slot_is_taken(browser, tmp_path):
    """Issue 9, item 6: a long-poll beyond the server's slots is answered at once with retry_after; the page waits
    that long before asking again instead of looping as fast as the network allows."""
    import threading

    import requests

    from .feedback_testutil import serve

    with serve(tmp_path / "d", "--threads", "4") as url:  # 3 long-poll slots, 1 worker kept free
        auth = {"Authorization": f"Bearer {TOKEN}"}
        hold = [
            threading.Thread(target=requests.get, args=(url + "/api/wait?wait=7",), kwargs={"headers": auth})
            for _ in range(3)
        ]
        for t in hold:
            t.start()
        time.sleep(1.0)
        ctx = browser.new_context()
        page = ctx.new_page()
        waits: list[str] = []
        page.on("request", lambda r: waits.append(r.url) if "/api/wait" in r.url else None)
        page.goto(f"{url}/?token={TOKEN}")
        page.wait_for_selector("#waiting", state="visible")
        page.wait_for_timeout(5000)
        assert 1 <= len(waits) <= 4, len(waits)  # every 2-4 s, not hundreds of times
        assert requests.get(url + "/api/health", headers=auth, timeout=5).status_code == 200
        ctx.close()
        for t in hold:
            t.join(30)
