// Jobyard dashboard: the little behaviour the server-rendered pages need. Loaded as a file (no inline
// script anywhere), so a Content-Security-Policy of script-src 'self' holds.
"use strict";

// Live pages. Each [data-refresh-url] element is re-read from its fragment URL: at once when the
// dashboard's events stream (/dashboard/events) says something it shows changed (a job event; on a
// job page, an event of that job: data-live-subject), and by polling every data-refresh-s seconds
// while the tab is visible, for what no event tells (a job enqueued or started). While the stream
// is up, polling slows to LIVE_SLOWDOWN times that pace; when it fails, polling is back at its pace.
// A fragment carrying [data-final] (a finished job) ends the refreshing and swaps in the page's new
// content (its actions depend on the final status) without reloading it. A redirect (the session
// ended) reloads the page, which lands on the login form.
const LIVE_SLOWDOWN = 4;
// The shortest time between two event-driven reads of one fragment: a busy farm sends many events.
const LIVE_MIN_GAP_MS = 1000;
const LIVE_EVENTS = ["job.succeeded", "job.dead", "job.retrying", "job.cancelled", "job.progress",
  "message.status", "unread.changed"];
const refreshers = [];

function startRefresh(el) {
  const every = Math.max(1, Number(el.dataset.refreshS) || 5) * 1000;
  const state = {el: el, subject: el.dataset.liveSubject || null, busy: false, again: false,
    last: 0, timer: null, stopped: false, pollTimer: null};
  async function read() {
    if (state.stopped) return;
    // Someone is typing in a form of the fragment (a reason to pause a queue): keep what they typed;
    // the next event or poll reads it again.
    const typing = Array.from(el.querySelectorAll("[data-hold-refresh]"));
    if (typing.some((input) => input.value || input === document.activeElement)) return;
    if (state.busy) { state.again = true; return; }
    state.busy = true;
    state.last = Date.now();
    try {
      const response = await fetch(el.dataset.refreshUrl,
        {credentials: "same-origin", headers: {"Accept": "text/html"}});
      if (response.redirected || response.status === 401 || response.status === 403) {
        window.location.reload();
        return;
      }
      if (!response.ok) {
        el.classList.add("stale");
        return;
      }
      el.innerHTML = await response.text();
      el.classList.remove("stale");
      el.dataset.refreshedAt = new Date().toISOString();
      if (el.querySelector("[data-final]")) {
        state.stopped = true;
        clearTimeout(state.pollTimer);
        await swapPage();
      }
    } catch (error) {
      // The API is restarting or the network blipped: say the figures are old; the next read retries.
      el.classList.add("stale");
    } finally {
      state.busy = false;
      if (state.again && !state.stopped) { state.again = false; soon(); }
    }
  }
  function soon() {
    if (state.timer !== null || state.stopped) return;
    const wait = Math.max(0, state.last + LIVE_MIN_GAP_MS - Date.now());
    state.timer = setTimeout(() => { state.timer = null; read(); }, wait);
  }
  function poll() {
    const pace = document.documentElement.dataset.live === "on" ? every * LIVE_SLOWDOWN : every;
    state.pollTimer = setTimeout(() => {
      if (!document.hidden) read();
      if (!state.stopped) poll();
    }, pace);
  }
  state.changed = soon;
  state.repace = () => { clearTimeout(state.pollTimer); if (!state.stopped) poll(); };
  poll();
  refreshers.push(state);
}

// The page's new content in place of the old, without a reload (no navigation: the page's state and
// its events stream stay); its behaviours are wired again.
async function swapPage() {
  const response = await fetch(window.location.href,
    {credentials: "same-origin", headers: {"Accept": "text/html"}});
  if (!response.ok || response.redirected) {
    window.location.reload();
    return;
  }
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html").querySelector("main");
  const main = document.querySelector("main");
  if (!fresh || !main) return;
  main.innerHTML = fresh.innerHTML;
  wire(main);
}

// The events stream: each event makes the fragments it concerns read again. EventSource reconnects
// by itself after a dropped connection; a refused one (the session ended, too many streams) closes
// it for good, and polling carries on alone.
function startLive() {
  if (!window.EventSource || refreshers.length === 0) return;
  const root = document.documentElement;
  const source = new EventSource("/dashboard/events");
  function setLive(on) {
    if ((root.dataset.live === "on") === on) return;
    root.dataset.live = on ? "on" : "off";
    refreshers.forEach((r) => r.repace());
  }
  source.addEventListener("ready", () => setLive(true));
  // A job's progress concerns its own page only: the overview and the workers page count no progress.
  const changed = (event) => {
    let subject = null;
    try { subject = JSON.parse(event.data).subject; } catch (error) { subject = null; }
    for (const r of refreshers) {
      if (r.stopped) continue;
      if (r.subject === null ? event.type !== "job.progress" : r.subject === subject) r.changed();
    }
  };
  LIVE_EVENTS.forEach((type) => source.addEventListener(type, changed));
  source.addEventListener("error", () => setLive(false));
  window.addEventListener("pagehide", () => source.close());
}

// A header checkbox that checks or clears every row checkbox of its form.
function wireSelectAll(box) {
  box.addEventListener("change", () => {
    for (const row of box.form.querySelectorAll('input[type="checkbox"][name="ids"]')) {
      row.checked = box.checked;
    }
    const selected = box.form.querySelector('input[name="target"][value="selected"]');
    if (selected) selected.checked = true;
  });
}

// Checking a row means "act on the checked jobs".
function wireRows(form) {
  form.addEventListener("change", (event) => {
    if (event.target.name === "ids" && event.target.checked) {
      const selected = form.querySelector('input[name="target"][value="selected"]');
      if (selected) selected.checked = true;
    }
  });
}

// The header's tenant selector: choosing is enough (its Show button is for pages without script).
function wireAutosubmit(select) {
  select.addEventListener("change", () => select.form.requestSubmit());
}

function wire(root) {
  root.querySelectorAll("[data-refresh-url]").forEach(startRefresh);
  root.querySelectorAll("[data-select-all]").forEach(wireSelectAll);
  root.querySelectorAll("form#dead-letters").forEach(wireRows);
  root.querySelectorAll("select[data-autosubmit]").forEach(wireAutosubmit);
}

document.addEventListener("DOMContentLoaded", () => {
  wire(document);
  startLive();
  document.documentElement.dataset.js = "ready";
});
