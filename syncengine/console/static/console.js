// syncengine console: the only script the page runs (no build step, no CDN).
// - pages with data-refresh="N" on <main> reload their content every N seconds (the server
//   renders the same escaped HTML; only <main> is swapped, and not while a form is in use)
// - "select all" checkboxes in tables
"use strict";
(function () {
  function bindSelectAll(root) {
    root.querySelectorAll("input.select-all").forEach(function (box) {
      box.addEventListener("change", function () {
        var form = box.closest("form");
        form.querySelectorAll('input[type="checkbox"][name="id"]').forEach(function (item) {
          item.checked = box.checked;
        });
      });
    });
  }

  function busy(main) {
    var active = document.activeElement;
    return active && main.contains(active) && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(active.tagName);
  }

  function refresh(main) {
    var seconds = parseInt(main.getAttribute("data-refresh") || "0", 10);
    if (!seconds) return;
    setTimeout(function tick() {
      if (busy(main) || main.querySelector('input[type="checkbox"]:checked')) {
        setTimeout(tick, seconds * 1000);
        return;
      }
      fetch(window.location.href, { headers: { "X-Partial": "1" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (html !== null) {
            main.innerHTML = html;
            main.setAttribute("data-refreshed", String(Date.now()));
            bindSelectAll(main);
          }
        })
        .catch(function () {})
        .then(function () { setTimeout(tick, seconds * 1000); });
    }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var main = document.getElementById("main");
    bindSelectAll(document);
    if (main) refresh(main);
  });
})();
