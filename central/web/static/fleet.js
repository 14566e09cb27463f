// Fleet overview: apply tile changes pushed by /live/fleet (server-sent events).
(function () {
  "use strict";
  var dot = document.getElementById("live");
  var source = new EventSource("/live/fleet");
  source.addEventListener("hello", function () { dot.classList.add("on"); });
  source.onerror = function () { dot.classList.remove("on"); };
  source.addEventListener("tiles", function (message) {
    var data = JSON.parse(message.data);
    data.tiles.forEach(function (tile) {
      var element = document.getElementById("t-" + tile[0]);
      if (!element) { return; }  // filtered out of this page
      element.className = "t " + tile[1] + " flash";
      var badge = element.querySelector("b");
      if (badge) { badge.textContent = tile[2] ? String(tile[2]) : ""; }
      setTimeout(function () { element.classList.remove("flash"); }, 1500);
    });
    Object.keys(data.counts).forEach(function (key) {
      var counter = document.querySelector('[data-count="' + key + '"]');
      if (counter) { counter.textContent = data.counts[key]; }
    });
    document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
  });
})();
