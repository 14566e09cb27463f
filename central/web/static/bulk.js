// Commands to many sites: send through the REST API, then follow the per-site results live.
(function () {
  "use strict";
  var form = document.getElementById("bulk-form");
  if (form) {
    var error = document.getElementById("bulk-error");
    var known = {
      announce: function (text) { return { text: text, repeat: 1 }; },
      screen_notice: function (text) { return { text: text, screen: null, duration_s: 3600 }; },
      reload_config: function (text) { return { version: text || null }; }
    };
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData(form);
      var name = String(data.get("name"));
      var text = String(data.get("text") || "").trim();
      var args;
      try {  // a kind this page has no form for takes its args as JSON
        args = known[name] ? known[name](text) : (text ? JSON.parse(text) : {});
      } catch (failure) { error.textContent = failure.message; return; }
      var target = data.get("target") === "towns" ? { towns: data.getAll("town") } : { all: true };
      error.textContent = "";
      fetch("/api/v1/bulk-commands", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Requested-With": "onedoor" },
        body: JSON.stringify({ name: name, args: args, ttl_s: Number(data.get("ttl_s") || 600),
                               target: target })
      }).then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) {
            throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail));
          }
          window.location.href = "/commands/" + body.id;
        });
      }).catch(function (failure) { error.textContent = failure.message; });
    });
  }
  // The emergency stop: decided and lifted through its own API (it keeps sending it).
  function post(url, body, error) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "onedoor" },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) {
          throw new Error(typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail));
        }
        window.location.reload();
      });
    }).catch(function (failure) { error.textContent = failure.message; });
  }
  var stopForm = document.getElementById("stop-form");
  var stopError = document.getElementById("stop-error");
  if (stopForm) {
    stopForm.addEventListener("submit", function (event) {
      event.preventDefault();
      var data = new FormData(stopForm);
      var town = String(data.get("target") || "");
      stopError.textContent = "";
      post("/api/v1/issuing/stops", { scope: town ? "town" : "city", target: town,
                                       reason: String(data.get("reason") || "").trim() }, stopError);
    });
  }
  var stops = document.getElementById("stops");
  if (stops && stopError) {
    stops.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-lift]");
      if (button) { post("/api/v1/issuing/stops/" + encodeURIComponent(button.dataset.lift) + "/lift", undefined, stopError); }
    });
  }
  var live = document.getElementById("bulk-live");
  if (live) {
    var state = live.dataset.state ? "?state=" + encodeURIComponent(live.dataset.state) : "";
    var source = new EventSource("/live/commands/" + encodeURIComponent(live.dataset.bulk) + state);
    source.addEventListener("live", function (message) {
      live.innerHTML = message.data;
      document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
    });
  }
})();
