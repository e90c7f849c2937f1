// The segment builder (templates/segments/_builder.html). htmx does the
// requests; this keeps them kind to people typing and using a keyboard:
// - focus goes where the server says after a row is added, removed or moved;
// - what is typed while the rows are being re-rendered is put back;
// - edited JSON is not overwritten by a count arriving meanwhile;
// - a row's controls say aria-invalid while the row has a problem.
// No inline scripts (CSP).
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  let reshaping = null; // the request re-rendering the rows, while it runs
  let typed = {};

  function isReshape(e) {
    return e.detail && e.detail.target && e.detail.target.id === "builder";
  }

  document.addEventListener("htmx:beforeRequest", function (e) {
    if (!isReshape(e)) return;
    if (!reshaping) typed = {};
    reshaping = e.detail.xhr;
    const json = document.getElementById("id_rules");
    if (json) delete json.dataset.edited; // the server applies edited JSON first
  });

  document.addEventListener("input", function (e) {
    const el = e.target;
    if (el.id === "id_rules") {
      el.dataset.edited = "1";
    } else if (reshaping && el.id && el.closest("#builder")) {
      typed[el.id] = el.value;
    }
  });

  document.addEventListener("htmx:oobBeforeSwap", function (e) {
    const json = document.getElementById("id_rules");
    const target = e.detail.target;
    if (json && json.dataset.edited && target && target.id === "builder-json") {
      e.detail.shouldSwap = false;
    }
  });

  function markInvalid() {
    document.querySelectorAll("[data-row]").forEach(function (row) {
      const errors = row.querySelector(":scope > .row-errors");
      const bad = Boolean(errors && errors.textContent.trim());
      row.classList.toggle("invalid", bad);
      row
        .querySelectorAll(
          ":scope > .row-main .row-fields input:not([type=hidden]), :scope > .row-main .row-fields select"
        )
        .forEach(function (control) {
          if (bad) control.setAttribute("aria-invalid", "true");
          else control.removeAttribute("aria-invalid");
        });
    });
  }

  function afterReshape() {
    reshaping = null;
    let last = null;
    Object.keys(typed).forEach(function (id) {
      const el = document.getElementById(id);
      if (el && "value" in el && el.value !== typed[id] && el.tagName !== "SELECT") {
        el.value = typed[id];
        last = el;
      }
    });
    typed = {};
    const builder = document.getElementById("builder");
    const focusId = builder && builder.dataset.focusId;
    if (focusId) {
      delete builder.dataset.focusId;
      const el = document.getElementById(focusId);
      if (el && !el.disabled) el.focus();
    }
    if (last) htmx.trigger(last, "change"); // count what was typed
  }

  // A count's settle can come after the next reshape has started (the queue
  // moves on at swap time): only the reshape's own settle ends it.
  document.addEventListener("htmx:afterSettle", function (e) {
    if (reshaping && e.detail.xhr === reshaping) afterReshape();
    markInvalid();
  });
  ["htmx:responseError", "htmx:sendError", "htmx:timeout"].forEach(function (name) {
    document.addEventListener(name, function (e) {
      if (e.detail.xhr === reshaping) reshaping = null;
    });
  });
  document.addEventListener("DOMContentLoaded", markInvalid);
})();
