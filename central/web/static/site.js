// Site page: live windows/queues/devices over SSE, today's charts with the vendored uPlot.
(function () {
  "use strict";
  var live = document.getElementById("site-live");
  var dot = document.getElementById("live");
  var source = new EventSource("/live/sites/" + encodeURIComponent(live.dataset.site));
  source.addEventListener("live", function (message) {
    live.innerHTML = message.data;
    dot.classList.add("on");
    document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
  });
  source.onerror = function () { dot.classList.remove("on"); };

  var charts = JSON.parse(document.getElementById("charts-data").textContent);
  var labels = JSON.parse(document.getElementById("chart-labels").textContent);
  function width(element) { return Math.max(280, element.clientWidth || 360); }
  function bars(color) { return { stroke: color, fill: color + "55", paths: uPlot.paths.bars({ size: [0.6, 40] }), points: { show: false } }; }
  var hourAxis = { values: function (u, ticks) { return ticks.map(function (h) { return h + ":00"; }); } };
  var flow = document.getElementById("chart-flow");
  new uPlot({ width: width(flow), height: 200, scales: { x: { time: false } }, axes: [hourAxis, {}],
    series: [{ label: "h" }, Object.assign({ label: labels.arrivals }, bars("#2b5793")),
             Object.assign({ label: labels.served }, bars("#2e9d4f"))] },
    [charts.hour, charts.arrivals, charts.served], flow);
  var wait = document.getElementById("chart-wait");
  new uPlot({ width: width(wait), height: 200, scales: { x: { time: false } }, axes: [hourAxis, {}],
    series: [{ label: "h" }, { label: labels.wait, stroke: "#d7263d", spanGaps: false }] },
    [charts.hour, charts.wait_mean_s.map(function (s) { return s === null ? null : s / 60; })], wait);
  var ratings = document.getElementById("chart-ratings");
  new uPlot({ width: width(ratings), height: 200, scales: { x: { time: false } },
    axes: [{ values: function (u, ticks) { return ticks.map(function (g) { return g + "★"; }); } }, {}],
    series: [{ label: "★" }, Object.assign({ label: labels.ratings }, bars("#e0a100"))] },
    [[1, 2, 3, 4, 5], charts.ratings], ratings);

  // People waiting per service from the telemetry history (x: time, in the browser's zone).
  var telemetry = JSON.parse(document.getElementById("telemetry-data").textContent);
  var palette = ["#2b5793", "#2e9d4f", "#d7263d", "#e0a100", "#7b4fa0", "#1a9ba1", "#8a6d3b", "#555555"];
  var waiting = document.getElementById("chart-telemetry");
  new uPlot({ width: width(waiting), height: 200,
    series: [{}].concat(telemetry.series.map(function (s, i) {
      return { label: s.label, stroke: palette[i % palette.length], spanGaps: true, points: { show: false } };
    })) },
    [telemetry.t].concat(telemetry.series.map(function (s) { return s.values; })), waiting);
})();
