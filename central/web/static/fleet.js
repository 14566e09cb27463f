// Fleet overview: apply the changes pushed by /live/fleet (server-sent events).
// The stream carries only what this page shows (#fleet's data-live scope: every site,
// the towns of a province, or one town's sites). Updates are applied once per animation
// frame, the latest state of each tile winning, so a burst never queues up work; the
// page records how far behind the server it is (data-live-lag-ms) for the benchmark.
(function () {
  "use strict";
  var dot = document.getElementById("live");
  var fleet = document.getElementById("fleet");
  var scope = fleet ? fleet.dataset.live : "";
  var body = document.body.dataset;
  var pendingTiles = new Map();
  var pendingDrift = new Map();
  var pendingTowns = new Map();
  var pendingCounts = null;
  var newestAt = 0;
  var scheduled = false;
  var towns = null;  // town name -> element, found once

  function townElement(name) {
    if (towns === null) {
      towns = new Map();
      document.querySelectorAll("[data-town]").forEach(function (element) {
        towns.set(element.dataset.town, element);
      });
    }
    return towns.get(name);
  }

  function flash(element) {
    element.classList.add("flash");
    setTimeout(function () { element.classList.remove("flash"); }, 1500);
  }

  // The same title as pages.drift_title: each difference, what runs and what should.
  function driftTitle(drift) {
    var lines = [];
    function line(template, running, expected) {
      lines.push(template.replace("{running}", running || "\u2014")
                         .replace("{expected}", expected || "\u2014"));
    }
    if (drift[0]) { line(fleet.dataset.softwareDiffers, drift[1], drift[2]); }
    if (drift[3]) { line(fleet.dataset.configDiffers, drift[4], drift[5]); }
    return lines.join("\n");
  }

  function applyDrift(element, drift) {
    var mark = element.querySelector("i.drift");
    if (!drift) {
      if (mark) { mark.remove(); }
      return;
    }
    if (!mark) {
      mark = document.createElement("i");
      mark.className = "drift";
      mark.textContent = "\u2260";  // pages.DRIFT_MARK
      element.insertBefore(mark, element.firstChild);  // first: long names are cut
    }
    var title = driftTitle(drift);
    mark.title = title;
    mark.setAttribute("aria-label", title);
  }

  function apply() {
    scheduled = false;
    pendingDrift.forEach(function (drift, id) {
      var element = document.getElementById("t-" + id);
      if (element) { applyDrift(element, drift); }
    });
    pendingTiles.forEach(function (tile, id) {
      var element = document.getElementById("t-" + id);
      if (!element) { return; }  // not on this page
      element.className = "t " + tile[0];
      var badge = element.querySelector("b");
      if (badge) { badge.textContent = tile[1] ? String(tile[1]) : ""; }
      flash(element);
    });
    pendingTowns.forEach(function (town, name) {
      var element = townElement(name);
      if (!element) { return; }
      element.className = "t town " + town[0];
      element.querySelector('[data-n="sites"]').textContent = town[1];
      element.querySelector('[data-n="offline"]').textContent = town[4];
      element.querySelector('[data-n="alarm"]').textContent = town[2] + town[3];
      flash(element);
    });
    if (pendingCounts) {
      Object.keys(pendingCounts).forEach(function (key) {
        var counter = document.querySelector('[data-count="' + key + '"]');
        if (counter) { counter.textContent = pendingCounts[key]; }
      });
    }
    pendingTiles.clear();
    pendingDrift.clear();
    pendingTowns.clear();
    pendingCounts = null;
    var lag = Math.max(0, Date.now() - newestAt);
    body.liveLagMs = String(lag);
    body.liveLagMaxMs = String(Math.max(lag, Number(body.liveLagMaxMs || 0)));
    body.liveUpdates = String(Number(body.liveUpdates || 0) + 1);
  }

  if (scope === "" || scope === undefined) { return; }  // a filtered town view: no recount
  var source = new EventSource("/live/fleet?scope=" + encodeURIComponent(scope));
  source.addEventListener("hello", function () { dot.classList.add("on"); });
  source.onerror = function () { dot.classList.remove("on"); };
  source.addEventListener("tiles", function (message) {
    var data = JSON.parse(message.data);
    (data.tiles || []).forEach(function (tile) { pendingTiles.set(tile[0], [tile[1], tile[2]]); });
    Object.keys(data.drift || {}).forEach(function (id) { pendingDrift.set(id, data.drift[id]); });
    (data.towns || []).forEach(function (town) { pendingTowns.set(town[0], town.slice(1)); });
    pendingCounts = data.counts;
    newestAt = Math.max(newestAt, data.at || 0);
    body.liveMessages = String(Number(body.liveMessages || 0) + 1);
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(apply);
    }
  });
})();
