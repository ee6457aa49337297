// CleanRLHF labelling page. Plain JS, no build step, no external resources.
// Flow: claim a query and the next one (prefetch) -> show the first's two clips looping in sync while the second's
// load in hidden players -> answer (A / B / equal / skip) -> the prefetched pair plays at once, and the page claims
// a new next one in the background (issue 12, item 2). With nothing to claim, long-poll GET /api/wait (the server
// answers as soon as work arrives; no tight loop), backing off exponentially on network errors. Labels are
// P(B > A): A = 0.0, B = 1.0, equal = 0.5.
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const token = keepToken(params);
  const runFilter = params.get("run");
  const NAME_RE = /^[\p{L}\p{N}_](?:[\p{L}\p{N}_ .@+-]{0,62}[\p{L}\p{N}_.@+-])?$/u;
  const CHOICE_TEXT = { A: "A is better", B: "B is better", equal: "equally good", skip: "can't tell (skipped)" };
  const LONG_POLL_S = 25;

  const $ = (id) => document.getElementById(id);
  // The pair on screen and the hidden pair that loads the next one's clips; they trade places on answer.
  let videos = [$("clip-a"), $("clip-b")];
  let spare = [$("clip-a-next"), $("clip-b-next")];
  const choiceButtons = Array.from(document.querySelectorAll("button.choice"));

  const state = {
    labeller: "",
    query: null, // the query shown (leased to us)
    next: null, // the prefetched query (leased to us too), its clips loading in the spare players
    startedKey: null, // the query whose clips were started together
    busy: false, // an answer/undo request is in flight
    gen: 0, // bumps to cancel a running claim/wait loop
    claiming: null, // the latest /api/claim request (a promise)
    leaseSeconds: 120, // how long the server reserves a claimed pair (it says so in every claim's answer)
    backoffMs: 1000,
    started: false, // a first query was shown
  };

  // ------------------------------------------------------------------ helpers
  // The link carries the token (?token=...). Keep it in this tab's sessionStorage and drop it from the address bar,
  // so that it is not in the history, a bookmark or a screen share; a reload finds it there. Only once it is
  // stored: without sessionStorage (blocked by the browser) the address keeps it, or a reload would lose it.
  function keepToken(params) {
    const KEY = "cleanrlhf.token";
    const fromLink = params.get("token");
    let stored = null;
    try {
      if (fromLink) sessionStorage.setItem(KEY, fromLink);
      stored = sessionStorage.getItem(KEY);
    } catch (err) {
      return fromLink;
    }
    if (fromLink && stored === fromLink) {
      params.delete("token");
      const rest = params.toString();
      history.replaceState(history.state, "", location.pathname + (rest ? "?" + rest : "") + location.hash);
    }
    return fromLink || stored;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function withToken(path) {
    if (!token) return path;
    return path + (path.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method: "GET", headers, cache: "no-store" };
    if (body !== undefined) {
      init.method = "POST";
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      throw new ApiError(0, "network", "cannot reach the server");
    }
    let data = null;
    try {
      data = await res.json();
    } catch (err) {
      data = null;
    }
    if (!res.ok) {
      throw new ApiError(res.status, data && data.error, (data && data.message) || res.statusText);
    }
    return data;
  }

  function announce(text) {
    $("status").textContent = text;
  }

  // ------------------------------------------------------------------ labeller name
  function loadName() {
    let name = localStorage.getItem("cleanrlhf.labeller") || "";
    if (!NAME_RE.test(name)) {
      name = "labeller-" + Math.random().toString(36).slice(2, 6);
      localStorage.setItem("cleanrlhf.labeller", name);
    }
    $("labeller").value = name;
    return name;
  }

  $("who").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("labeller");
    const name = input.value.trim();
    if (!NAME_RE.test(name)) {
      input.setCustomValidity("1-64 letters, digits, spaces or . _ @ + -");
      input.reportValidity();
      return;
    }
    input.setCustomValidity("");
    if (name === state.labeller) return;
    const old = state.labeller;
    localStorage.setItem("cleanrlhf.labeller", name);
    state.labeller = name;
    state.gen += 1; // stop the loop that claims under the old name
    try {
      // A claim still in flight under the old name may lease a pair after a release sent now; let it land first,
      // so that the release gives that pair back too.
      await state.claiming;
    } catch (err) {
      // Failed claims hold nothing.
    }
    try {
      await api("/api/release", { labeller: old });
    } catch (err) {
      // The old lease simply expires.
    }
    announce(`You are now labelling as “${name}”.`);
    input.blur();
    next();
  });
  $("labeller").addEventListener("input", () => $("labeller").setCustomValidity(""));

  // ------------------------------------------------------------------ progress
  function showProgress(p) {
    if (!p) return;
    $("n-labelled").textContent = p.labelled;
    $("n-skipped").textContent = p.skipped;
    $("n-pending").textContent = p.pending;
    $("n-leased").textContent = p.leased;
    $("n-rendering").textContent = p.rendering;
    $("n-mine").textContent = p.mine;
    // The tab title shows what is waiting, so a labeller sees it from another tab.
    document.title = (p.pending > 0 ? `(${p.pending}) ` : "") + "CleanRLHF · Which clip is better?";
    // Pairs the trainer announced but has not uploaded yet count too: the bar is not nearly full mid-session.
    const bar = $("progress-bar");
    bar.max = Math.max(p.total + p.rendering, 1);
    bar.value = p.labelled + p.skipped;
    state.rendering = p.rendering;
    if (!$("waiting").hidden) showWaitingText();
  }

  function showWaitingText() {
    const n = state.rendering || 0;
    $("waiting-title").textContent = n > 0 ? "The trainer is rendering the next clips…" : "Waiting for the trainer…";
    $("waiting-detail").textContent =
      n > 0
        ? `${n} clip pair${n === 1 ? " is" : "s are"} being rendered. They appear here by themselves once enough are ` +
          "ready to label the session without pauses."
        : "No clip pairs are pending. New ones appear here by themselves as soon as the trainer sends them.";
  }

  // ------------------------------------------------------------------ clips, in sync
  const keyOf = (q) => (q ? q.run_id + "/" + q.query_id : null);

  function resetVideos(pair) {
    for (const v of pair) {
      v.pause();
      delete v.dataset.query;
      delete v.dataset.ready;
      v.removeAttribute("src");
      v.load();
    }
  }

  function playBoth(fromStart) {
    for (const v of videos) {
      if (fromStart) v.currentTime = 0;
      const p = v.play();
      if (p) p.catch(() => announce("Press R or click Replay to start the clips."));
    }
  }

  function loadClips(pair, q) {
    pair.forEach((v, i) => {
      v.pause();
      delete v.dataset.ready;
      v.dataset.query = keyOf(q);
      v.src = withToken(i === 0 ? q.clip_a_url : q.clip_b_url);
      v.load();
    });
  }

  // Start both only when both can play, so they begin on the same frame; once per pair shown.
  function maybeStart() {
    const k = keyOf(state.query);
    if (k === null || state.startedKey === k) return;
    if (videos.every((v) => v.dataset.query === k && v.dataset.ready)) {
      state.startedKey = k;
      playBoth(true);
    }
  }

  // The prefetched pair's players come on screen (with the ids the rest of the page knows) and the old ones hide.
  function swapPlayers() {
    [videos, spare] = [spare, videos];
    videos.forEach((v, i) => {
      v.id = i === 0 ? "clip-a" : "clip-b";
      v.hidden = false;
    });
    spare.forEach((v, i) => {
      v.pause();
      v.id = i === 0 ? "clip-a-next" : "clip-b-next";
      v.hidden = true;
    });
  }

  for (const v of [...videos, ...spare]) {
    v.addEventListener("canplay", () => {
      v.dataset.ready = "1";
      if (videos.includes(v)) maybeStart();
    });
    // Loop together: when both have ended (a shorter clip holds its last frame), restart both.
    v.addEventListener("ended", () => {
      if (videos.includes(v) && videos.every((x) => x.ended)) playBoth(true);
    });
    v.addEventListener("error", () => {
      if (videos.includes(v) && v.getAttribute("src")) announce("A clip failed to load; try Replay, or skip this pair.");
    });
    // Keep B on A's clock while both play (decoders drift apart over loops).
    v.addEventListener("timeupdate", () => {
      const [a, b] = videos;
      if (v !== a) return;
      if (!a.paused && !b.paused && !a.ended && !b.ended && Math.abs(a.currentTime - b.currentTime) > 0.12) {
        if (a.currentTime < b.duration) b.currentTime = a.currentTime;
      }
    });
  }

  // ------------------------------------------------------------------ showing a query / waiting
  function setButtons() {
    const canAnswer = state.query !== null && !state.busy;
    for (const b of choiceButtons) b.disabled = !canAnswer;
    $("btn-replay").disabled = state.query === null;
    $("btn-undo").disabled = state.busy;
  }

  function show(q) {
    const k = keyOf(q);
    const changed = keyOf(state.query) !== k;
    state.query = q;
    $("waiting").hidden = true;
    $("compare").hidden = false;
    $("instruction").textContent = q.run.instruction || "(no instruction given)";
    $("run-info").textContent = `run ${q.run.run_id} · ${q.run.env_id} · session ${q.session} · query ${q.query_id}`;
    if (changed || videos[0].dataset.query !== k) {
      state.startedKey = null;
      if (spare[0].dataset.query === k) swapPlayers(); // prefetched: its clips are loaded already
      else loadClips(videos, q);
    }
    maybeStart();
    setButtons();
    scheduleRenewal(); // a full third of the lease from now
  }

  // The prefetched pair: load its clips into the hidden players (unless they hold them already).
  function setNext(q) {
    state.next = q;
    if (q !== null && spare[0].dataset.query !== keyOf(q)) loadClips(spare, q);
  }

  // What a claim returned: keep showing the pair on screen if we still hold it, prefetch the other one.
  function adopt(data) {
    const held = [data.query, data.next].filter(Boolean);
    const current = held.find((q) => keyOf(q) === keyOf(state.query)) || held[0];
    show(current);
    setNext(held.find((q) => q !== current) || null);
    if (state.next === null) watchForNext();
  }

  function showWaiting() {
    state.query = null;
    state.next = null;
    state.startedKey = null;
    resetVideos(videos);
    resetVideos(spare);
    $("compare").hidden = true;
    $("waiting").hidden = false;
    showWaitingText();
    $("run-info").textContent = runFilter ? `run ${runFilter}` : "";
    setButtons();
  }

  // Who is asking, for the run this page is filtered to (if any).
  function labellerBody() {
    const body = { labeller: state.labeller };
    if (runFilter) body.run_id = runFilter;
    return body;
  }

  // POST /api/claim: the pair we hold (its lease renewed) or the next pending one. Kept in state.claiming so that
  // a rename can wait for it to land before releasing the old name's lease.
  async function claim() {
    state.claiming = api("/api/claim", { ...labellerBody(), prefetch: true });
    const data = await state.claiming;
    if (data.lease_seconds) state.leaseSeconds = data.lease_seconds;
    return data;
  }

  // Claim the next query; if there is none, wait for one (long-poll). Only one loop runs at a time.
  async function next() {
    const gen = ++state.gen;
    let waited = false;
    while (gen === state.gen) {
      try {
        const data = await claim();
        if (gen !== state.gen) return;
        state.backoffMs = 1000;
        showProgress(data.progress);
        if (data.query) {
          const first = !state.started;
          state.started = true;
          if (waited) notifyNewWork();
          adopt(data);
          if (waited) announce("New clip pairs arrived.");
          else if (first) announce(`Labelling as “${state.labeller}”. Watch both clips, then answer with the buttons or the arrow keys.`);
          return;
        }
        if (!waited) {
          showWaiting();
          announce("Waiting for the trainer…");
          if (data.progress.total === 0) $("instruction").textContent = "(no run has sent clips yet)";
        }
        waited = true;
        // With our name: a doubled query we answered, or a repeat meant for someone else, is no work for us.
        const q = `/api/wait?wait=${LONG_POLL_S}&labeller=${encodeURIComponent(state.labeller)}` +
          (runFilter ? `&run_id=${encodeURIComponent(runFilter)}` : "");
        const waitedFor = await api(q);
        // Every long-poll slot of the server was taken: it answered at once and says when to come back.
        if (waitedFor && waitedFor.retry_after) await sleep(waitedFor.retry_after * 1000 * (1 + Math.random()));
      } catch (err) {
        if (gen !== state.gen) return;
        if (err.status === 401) {
          announce("Missing or wrong token: open the exact link the server printed.");
          return;
        }
        if (err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
          announce(`Error: ${err.message}`);
          return;
        }
        announce(`Cannot reach the server; retrying in ${Math.round(state.backoffMs / 1000)} s…`);
        await sleep(state.backoffMs);
        state.backoffMs = Math.min(state.backoffMs * 2, 30000);
      }
    }
  }

  // ------------------------------------------------------------------ keeping the lease
  // The server reserves the shown pair for lease_seconds, and claiming again renews the reservation. A visible tab
  // renews at a third of that, so a labeller who watches the clips for minutes keeps their pair; a hidden tab lets
  // it run out, so a pair left in a forgotten tab goes to someone else.
  async function renewLease() {
    if (!state.query || state.busy || document.hidden) return;
    await reclaim();
  }

  // Claim again: renews the leases of the pair on screen and of the prefetched one, or fetches a next one. If the
  // pair on screen went to someone else meanwhile (its lease ran out in a hidden tab), move on.
  async function reclaim() {
    const q = state.query;
    const gen = state.gen;
    let data;
    try {
      data = await claim();
    } catch (err) {
      return; // the next tick tries again
    }
    if (state.query !== q || state.gen !== gen || state.busy || q === null) return; // answered or replaced meanwhile
    showProgress(data.progress);
    const held = [data.query, data.next].filter(Boolean);
    if (!held.some((x) => keyOf(x) === keyOf(q))) {
      announce("Your reservation of that pair ran out and it went to another labeller; here is the next one.");
    }
    if (held.length) adopt(data);
    else next();
  }

  // While a pair is on screen and nothing is prefetched (the rest of the session was not uploaded yet), long-poll
  // for new work and prefetch it as soon as it arrives, so that it too plays at once on answer.
  let watching = false;
  async function watchForNext() {
    if (watching) return;
    watching = true;
    const gen = state.gen;
    const wanted = () => gen === state.gen && state.query !== null && state.next === null && !document.hidden;
    try {
      while (wanted()) {
        let waitedFor;
        try {
          waitedFor = await api(
            `/api/wait?wait=${LONG_POLL_S}` + (runFilter ? `&run_id=${encodeURIComponent(runFilter)}` : ""),
          );
        } catch (err) {
          if (err.status === 401) return;
          await sleep(state.backoffMs);
          continue;
        }
        if (waitedFor && waitedFor.retry_after) await sleep(waitedFor.retry_after * 1000 * (1 + Math.random()));
        else if (waitedFor && waitedFor.claimable > 0 && wanted() && !state.busy) await reclaim();
      }
    } finally {
      watching = false;
    }
  }

  let renewTimer = null;
  function scheduleRenewal() {
    clearTimeout(renewTimer);
    renewTimer = setTimeout(async () => {
      await renewLease();
      if (state.query) scheduleRenewal(); // show() starts it again for the next pair
    }, Math.max(1, state.leaseSeconds / 3) * 1000);
  }

  document.addEventListener("visibilitychange", () => {
    // Back from another tab: keep the pair, or learn that it is gone (and prefetch again).
    if (!document.hidden) renewLease();
  });

  // ------------------------------------------------------------------ answering and undo
  async function answer(choice) {
    const q = state.query;
    if (!q || state.busy) return;
    state.busy = true;
    setButtons();
    const btn = choiceButtons.find((b) => b.dataset.choice === choice);
    btn.classList.add("flash");
    try {
      const data = await api("/api/answer", {
        labeller: state.labeller,
        run_id: q.run_id,
        query_id: q.query_id,
        choice,
      });
      showProgress(data.progress);
      announce(`Saved: ${CHOICE_TEXT[choice]} (query ${q.query_id}).`);
      const following = state.next;
      state.query = null;
      state.next = null;
      state.busy = false;
      if (following) {
        show(following); // prefetched: it plays at once
        reclaim(); // and prefetch the one after it
      } else {
        next();
      }
    } catch (err) {
      state.busy = false;
      if (err.status === 409 || err.status === 404) {
        announce(`Not saved: ${err.message}. Loading the next pair.`);
        state.query = null;
        next();
      } else {
        announce(`Not saved (${err.message}). Try again.`);
      }
    } finally {
      setTimeout(() => btn.classList.remove("flash"), 150);
      setButtons();
    }
  }

  async function undo() {
    if (state.busy) return;
    state.busy = true;
    setButtons();
    try {
      const body = labellerBody();
      const data = await api("/api/undo", body);
      state.gen += 1; // stop any waiting loop: we hold the undone query now
      state.next = null; // the server gave the prefetched pair back
      show(data.query);
      showProgress(data.progress);
      reclaim(); // prefetch again
      announce(`Undone: answer the pair of query ${data.query.query_id} again.`);
    } catch (err) {
      announce(err.code === "nothing_to_undo" ? "Nothing to undo." : `Undo failed: ${err.message}`);
    } finally {
      state.busy = false;
      setButtons();
    }
  }

  for (const b of choiceButtons) b.addEventListener("click", () => answer(b.dataset.choice));
  $("btn-undo").addEventListener("click", undo);
  $("btn-replay").addEventListener("click", () => playBoth(true));

  const KEYS = { ArrowLeft: "A", ArrowRight: "B", ArrowUp: "equal", ArrowDown: "skip" };
  document.addEventListener("keydown", (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const t = ev.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement) return;
    if (ev.key in KEYS) {
      ev.preventDefault(); // no scrolling
      if (!ev.repeat) answer(KEYS[ev.key]);
    } else if (ev.key === "u" || ev.key === "U" || ev.key === "Backspace") {
      ev.preventDefault();
      if (!ev.repeat) undo();
    } else if (ev.key === "r" || ev.key === "R") {
      if (state.query) playBoth(true);
    }
  });

  // ------------------------------------------------------------------ optional notifications (opt-in)
  const optSound = $("opt-sound");
  const optNotify = $("opt-notify");
  optSound.checked = localStorage.getItem("cleanrlhf.sound") === "1";
  optNotify.checked = localStorage.getItem("cleanrlhf.notify") === "1" && "Notification" in window;
  optSound.addEventListener("change", () => {
    localStorage.setItem("cleanrlhf.sound", optSound.checked ? "1" : "0");
    if (optSound.checked) beep(); // also unlocks audio with this user gesture
  });
  optNotify.addEventListener("change", async () => {
    if (optNotify.checked) {
      if (!("Notification" in window)) {
        optNotify.checked = false;
        announce("This browser has no notifications.");
      } else if ((await Notification.requestPermission()) !== "granted") {
        optNotify.checked = false;
        announce("Notifications were not allowed.");
      }
    }
    localStorage.setItem("cleanrlhf.notify", optNotify.checked ? "1" : "0");
  });

  let audioCtx = null;
  function beep() {
    try {
      audioCtx = audioCtx || new (window.AudioContext || window.webkitAudioContext)();
      const osc = audioCtx.createOscillator();
      const gain = audioCtx.createGain();
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.15, audioCtx.currentTime);
      gain.gain.exponentialRampToValueAtTime(0.001, audioCtx.currentTime + 0.25);
      osc.connect(gain).connect(audioCtx.destination);
      osc.start();
      osc.stop(audioCtx.currentTime + 0.25);
    } catch (err) {
      // No audio available: the visual state still changes.
    }
  }

  function notifyNewWork() {
    if (optSound.checked) beep();
    if (optNotify.checked && "Notification" in window && Notification.permission === "granted" && document.hidden) {
      new Notification("CleanRLHF: new clips to label", { body: "The trainer sent a new feedback session." });
    }
  }

  // ------------------------------------------------------------------ start / leave
  window.addEventListener("pagehide", () => {
    // Give the pair back at once instead of letting its lease run out.
    if (!state.query) return;
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    fetch("/api/release", {
      method: "POST",
      headers,
      body: JSON.stringify({ labeller: state.labeller }),
      keepalive: true,
    }).catch(() => {});
  });

  state.labeller = loadName();
  setButtons();
  next();
})();
