// Jobyard dashboard: the little behaviour the server-rendered pages need. Loaded as a file (no inline
// script anywhere), so a Content-Security-Policy of script-src 'self' holds.
"use strict";

// Replace an element's content with its fragment URL's HTML every data-refresh-s seconds, while the
// tab is visible. A fragment that carries [data-final] (a finished job) stops the polling; a redirect
// (the session ended) reloads the page, which lands on the login form.
function startRefresh(el) {
  const url = el.dataset.refreshUrl;
  const every = Math.max(1, Number(el.dataset.refreshS) || 5) * 1000;
  let timer = null;
  async function tick() {
    if (document.hidden) return;
    // Someone is typing in a form of the fragment (a reason to pause a queue): keep what they typed.
    const typing = Array.from(el.querySelectorAll("[data-hold-refresh]"));
    if (typing.some((input) => input.value || input === document.activeElement)) return;
    try {
      const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}});
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
        clearInterval(timer);
        window.location.reload(); // the page's actions depend on the final status
      }
    } catch (error) {
      // The API is restarting or the network blipped: say the figures are old; the next tick retries.
      el.classList.add("stale");
    }
  }
  timer = setInterval(tick, every);
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

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-refresh-url]").forEach(startRefresh);
  document.querySelectorAll("[data-select-all]").forEach(wireSelectAll);
  document.querySelectorAll("form#dead-letters").forEach(wireRows);
  document.querySelectorAll("select[data-autosubmit]").forEach(wireAutosubmit);
  document.documentElement.dataset.js = "ready";
});
