// Behaviour for the ••• menu button and modal dialogs. No inline scripts (CSP).
(function () {
  "use strict";

  function menuItems(list) {
    return Array.from(list.querySelectorAll('[role="menuitem"]'));
  }

  function openMenu(button, list, focusLast) {
    list.hidden = false;
    button.setAttribute("aria-expanded", "true");
    const items = menuItems(list);
    if (items.length) (focusLast ? items[items.length - 1] : items[0]).focus();
  }

  function closeMenu(button, list, returnFocus) {
    list.hidden = true;
    button.setAttribute("aria-expanded", "false");
    if (returnFocus) button.focus();
  }

  function setUpMenu(menu) {
    const button = menu.querySelector("[aria-haspopup]");
    const list = menu.querySelector('[role="menu"]');
    if (!button || !list || menu.dataset.ready) return;
    menu.dataset.ready = "1";
    button.addEventListener("click", function () {
      if (list.hidden) openMenu(button, list, false);
      else closeMenu(button, list, false);
    });
    button.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown" || e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        openMenu(button, list, false);
      } else if (e.key === "ArrowUp") {
        e.preventDefault();
        openMenu(button, list, true);
      }
    });
    list.addEventListener("keydown", function (e) {
      const items = menuItems(list);
      const i = items.indexOf(document.activeElement);
      if (e.key === "Escape") {
        e.preventDefault();
        closeMenu(button, list, true);
      } else if (e.key === "ArrowDown") {
        e.preventDefault();
        items[(i + 1) % items.length].focus();
      } else if (e.key === "ArrowUp") {
        e.preventDefault();
        items[(i - 1 + items.length) % items.length].focus();
      } else if (e.key === "Home") {
        e.preventDefault();
        items[0].focus();
      } else if (e.key === "End") {
        e.preventDefault();
        items[items.length - 1].focus();
      } else if (e.key === "Tab") {
        closeMenu(button, list, false);
      }
    });
    list.addEventListener("click", function (e) {
      const item = e.target.closest('[role="menuitem"]');
      if (item && item.getAttribute("aria-disabled") === "true") {
        e.preventDefault();
        return;
      }
      // A button item (Refresh) acts in place: focus goes back to the menu
      // button rather than to a hidden item. A link's dialog or page takes it.
      if (item) closeMenu(button, list, item.tagName === "BUTTON");
    });
    document.addEventListener("click", function (e) {
      if (!menu.contains(e.target) && !list.hidden) closeMenu(button, list, false);
    });
  }

  // A menu item with data-dialog="ID" opens that <dialog> as a modal; when the
  // dialog closes, focus returns to the menu button that opened it.
  document.addEventListener("click", function (e) {
    const opener = e.target.closest("[data-dialog]");
    if (!opener) return;
    const dialog = document.getElementById(opener.dataset.dialog);
    if (!dialog) return;
    e.preventDefault();
    const menu = opener.closest(".menu");
    dialog.returnFocusTo = menu ? menu.querySelector("[aria-haspopup]") : opener;
    dialog.showModal();
    const first = dialog.querySelector("[autofocus], input, button");
    if (first) first.focus();
  });

  document.addEventListener("click", function (e) {
    const closer = e.target.closest("[data-close-dialog]");
    if (!closer) return;
    e.preventDefault();
    const dialog = closer.closest("dialog");
    if (dialog) dialog.close();
  });

  document.addEventListener(
    "close",
    function (e) {
      const dialog = e.target;
      let back = dialog.tagName === "DIALOG" && dialog.returnFocusTo;
      // A poll may have swapped the opener for a copy with the same id.
      if (back && !back.isConnected && back.id) back = document.getElementById(back.id);
      if (back) back.focus();
    },
    true
  );

  // Names compare as the server compares them (segments/names.py): NFC, no
  // invisible characters, spaces trimmed and collapsed; capitals count.
  function normalName(text) {
    return (text || "")
      .normalize("NFC")
      .replace(/[\p{Cf}\p{Cc}\u034f\u115f\u1160\u17b4\u17b5\u3164\uffa0]/gu, (ch) =>
        /[\t\n\v\f\r\x1c-\x1f\x85]/.test(ch) ? " " : ""
      )
      .normalize("NFC")
      .replace(/\s+/g, " ")
      .trim();
  }
  function sameName(typed, name) {
    return normalName(typed) === normalName(name);
  }

  // Type-to-confirm: the submit button stays disabled until the typed text is
  // exactly the expected value, and its hint (aria-describedby) says why.
  // The server checks again; this only helps.
  function syncConfirm(input) {
    const form = input.form;
    if (!form) return;
    const matches = sameName(input.value, input.dataset.confirmMatch);
    const submit = form.querySelector("[data-confirm-submit]");
    if (submit) submit.disabled = !matches;
    const hint = form.querySelector("[data-confirm-hint]");
    if (hint) {
      const text = matches ? hint.dataset.match : input.value ? hint.dataset.mismatch : hint.dataset.empty;
      if (text && hint.textContent !== text) hint.textContent = text;
    }
  }

  document.addEventListener("input", function (e) {
    const input = e.target.closest("[data-confirm-match]");
    if (input) syncConfirm(input);
  });

  // The page's one live region (#announcer). Swapped-in content carries
  // [data-announce] texts, each with a key naming its event (a refresh, a
  // deletion's start, a milestone, its end). A key is announced once, and
  // keys already on the page when it loads are not announced at all: the
  // region says only what changed while the user was here.
  const announced = new Set();

  function announceables(root) {
    const found = Array.from(root.querySelectorAll ? root.querySelectorAll("[data-announce-key]") : []);
    if (root.matches && root.matches("[data-announce-key]")) found.unshift(root);
    return found;
  }

  function announce(root, quietly) {
    const region = document.getElementById("announcer");
    announceables(root).forEach(function (el) {
      const key = el.dataset.announceKey;
      if (announced.has(key)) return;
      announced.add(key);
      if (!quietly && region) region.textContent = el.dataset.announce;
    });
  }

  // After a swap that took away the focused element (a dialog closed, a
  // button gone when a deletion ended, Refresh disabled while it runs), focus
  // goes to the status the swap brought in instead of falling to <body>.
  // htmx itself keeps focus on an element whose id comes back.
  let focusBeforeSwap = null;
  document.addEventListener("htmx:beforeSwap", function () {
    focusBeforeSwap = document.activeElement;
  });
  document.addEventListener("htmx:afterSettle", function (e) {
    const before = focusBeforeSwap;
    focusBeforeSwap = null;
    if (!before || before === document.body) return; // nothing had the focus
    if (before.isConnected && !before.disabled) return; // it still has it
    const now = document.activeElement;
    if (now && now !== document.body && now !== before) return; // htmx or autofocus moved it
    const target = e.detail && e.detail.target;
    const swapped = target && (target.isConnected ? target : target.id && document.getElementById(target.id));
    const status =
      (swapped && swapped.querySelector("[data-status-focus]")) || document.querySelector("[data-status-focus]");
    if (status) status.focus();
  });

  // A submit button marked data-native-submit (the CSV download in the deletion
  // dialog) posts its form the ordinary way, not through the form's hx-post:
  // the browser saves the file and the dialog stays open. Stopping the event
  // here, before it reaches the form, keeps htmx from taking it over.
  document.addEventListener(
    "submit",
    function (e) {
      if (e.submitter && e.submitter.hasAttribute("data-native-submit")) e.stopPropagation();
    },
    true
  );

  function init(root) {
    root.querySelectorAll(".menu").forEach(setUpMenu);
    const dialogs = Array.from(root.querySelectorAll("dialog[data-open]"));
    if (root.matches && root.matches("dialog[data-open]")) dialogs.push(root);
    dialogs.forEach(function (d) {
      if (d.open) return;
      d.returnFocusTo =
        document.querySelector(d.dataset.returnFocus || "#segment-actions-button") ||
        document.querySelector(".menu [aria-haspopup]");
      d.showModal();
      const first = d.querySelector("[autofocus]");
      if (first) first.focus();
    });
    root.querySelectorAll("[data-confirm-match]").forEach(syncConfirm);
  }

  document.addEventListener("DOMContentLoaded", function () {
    announce(document, true);
    init(document);
  });
  document.addEventListener("htmx:load", function (e) {
    const elt = e.detail.elt;
    // htmx's own start-up fires htmx:load on <body>: that is the page load.
    announce(elt, elt === document.body);
    init(elt);
  });
})();
