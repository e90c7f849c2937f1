// Wide tables scroll inside their own box, never the page (phones, 390 px).
// Each data table is wrapped in a region named after its caption or heading;
// while it is wider than its box, the region takes keyboard focus, so arrow
// keys scroll it (and screen readers announce its name). Without JS the
// stylesheet makes the table itself scroll. No inline scripts (CSP).
(function () {
  "use strict";

  function nameOf(table) {
    const caption = table.querySelector("caption");
    if (caption && caption.textContent.trim()) return caption.textContent.trim();
    for (let node = table; node && node.tagName !== "MAIN"; node = node.parentElement) {
      for (let sibling = node.previousElementSibling; sibling; sibling = sibling.previousElementSibling) {
        const heading = sibling.matches("h1, h2, h3") ? sibling : null;
        // "Members table": the section around it may already be a region named "Members".
        if (heading && heading.textContent.trim()) return heading.textContent.trim() + " table";
      }
    }
    return "Table";
  }

  function updateFocusable(box) {
    if (box.scrollWidth > box.clientWidth + 1) box.setAttribute("tabindex", "0");
    else if (box.dataset.wrapped) box.removeAttribute("tabindex");
  }

  const observer = "ResizeObserver" in window
    ? new ResizeObserver(function (entries) { entries.forEach(function (e) { updateFocusable(e.target); }); })
    : null;

  function wrapTables(root) {
    const scope = root && root.querySelectorAll ? root : document;
    scope.querySelectorAll("table.data").forEach(function (table) {
      let box = table.parentElement;
      if (!box.matches(".table-scroll")) {
        box = document.createElement("div");
        box.className = "table-scroll";
        box.dataset.wrapped = "1";
        table.parentNode.insertBefore(box, table);
        box.appendChild(table);
      }
      if (!box.hasAttribute("role")) box.setAttribute("role", "region");
      if (!box.hasAttribute("aria-label") && !box.hasAttribute("aria-labelledby")) {
        box.setAttribute("aria-label", nameOf(table));
      }
      updateFocusable(box);
      if (observer) observer.observe(box);
    });
  }

  document.addEventListener("DOMContentLoaded", function () { wrapTables(document); });
  // Parts of pages swapped in by htmx (members search, deletion progress).
  document.addEventListener("htmx:load", function (e) { wrapTables(e.target); });
})();
