// syncengine console: the only script the page runs (no build step, no CDN).
// - pages with data-refresh="N" on <main> reload their content every N seconds (the server
//   renders the same escaped HTML; only <main> is swapped, and not while a form is in use)
// - "select all" checkboxes in tables
// - lag charts (figure.chart[data-src]) are drawn from their JSON document (the daemon's
//   stored history; points and caption computed by the server, set as attributes and text),
//   at load and at every refresh; the drawn figure is kept across a refresh until redrawn
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

  function drawCharts(root) {
    var bySource = {};
    root.querySelectorAll("figure.chart[data-src]").forEach(function (figure) {
      var src = figure.getAttribute("data-src");
      (bySource[src] = bySource[src] || []).push(figure);
    });
    Object.keys(bySource).forEach(function (src) {
      fetch(src, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (doc) {
          if (!doc) return;
          bySource[src].forEach(function (figure) {
            var chart = doc.charts[figure.getAttribute("data-series")];
            if (!chart) return;
            figure.querySelector("polyline").setAttribute("points", chart.points);
            figure.querySelector("figcaption").textContent = chart.caption;
            figure.setAttribute("data-count", String(chart.count));
            figure.setAttribute("data-oldest", chart.oldest === null ? "" : String(chart.oldest));
            figure.setAttribute("data-drawn", String(Date.now()));
          });
        })
        .catch(function () {});
    });
  }

  function keepCharts(main, swap) {
    var drawn = {};
    main.querySelectorAll("figure.chart[id]").forEach(function (figure) {
      drawn[figure.id] = figure;
    });
    swap();
    main.querySelectorAll("figure.chart[id]").forEach(function (figure) {
      if (drawn[figure.id]) figure.replaceWith(drawn[figure.id]);
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
            keepCharts(main, function () { main.innerHTML = html; });
            main.setAttribute("data-refreshed", String(Date.now()));
            bindSelectAll(main);
            drawCharts(main);
          }
        })
        .catch(function () {})
        .then(function () { setTimeout(tick, seconds * 1000); });
    }, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var main = document.getElementById("main");
    bindSelectAll(document);
    drawCharts(document);
    if (main) refresh(main);
  });
})();
