// Alarms page: live list over SSE; acknowledge through the REST API with the session cookie (SameSite=Strict).
(function () {
  "use strict";
  var live = document.getElementById("alarms-live");
  var source = new EventSource("/live/alarms");
  source.addEventListener("live", function (message) {
    if (live.querySelector("button[data-ack]:disabled")) { return; }  // an ack is in flight
    live.innerHTML = message.data;
    document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-ack]");
    if (!button) { return; }
    button.disabled = true;
    fetch("/api/v1/alarms/" + button.dataset.ack + "/ack", {
      method: "POST", credentials: "same-origin", headers: { "X-Requested-With": "onedoor" }
    }).then(function (response) {
      if (!response.ok) { throw new Error(String(response.status)); }
      return response.json();
    }).then(function (alarm) {
      var cell = button.parentElement;
      cell.textContent = alarm.acknowledged_by + " ✓";
      cell.classList.add("acked");
    }).catch(function (error) {
      button.disabled = false;
      button.title = error.message;
    });
  });
})();
