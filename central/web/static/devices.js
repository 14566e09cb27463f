// Site page (operators): take the site over to a waiting edge device, ask a device for its
// diagnostics and show them once they arrive (both through the REST API).
(function () {
  "use strict";
  var headers = { "Content-Type": "application/json", "X-Requested-With": "onedoor" };
  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin", headers: headers,
                        body: JSON.stringify(body) }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) {
          throw new Error(typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail));
        }
        return answer;
      });
    });
  }
  var takeoverError = document.getElementById("takeover-error");
  document.querySelectorAll("form.takeover").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      takeoverError.textContent = "";
      var skip = Number(new FormData(form).get("skip") || 0);
      post("/api/v1/sites/" + encodeURIComponent(form.dataset.site) + "/takeover",
           { device: form.dataset.device, skip: skip })
        .then(function () { window.location.reload(); })
        .catch(function (failure) { takeoverError.textContent = failure.message; });
    });
  });
  var form = document.getElementById("diagnostics-form");
  if (!form) { return; }
  var waiting = document.getElementById("diagnostics-wait");
  var error = document.getElementById("diagnostics-error");
  function poll(id, tries) {
    fetch("/api/v1/diagnostics/" + id, { credentials: "same-origin" }).then(function (response) {
      if (response.ok) { window.location.reload(); return; }
      if (tries <= 0) { waiting.hidden = true; error.textContent = "timeout"; return; }
      setTimeout(function () { poll(id, tries - 1); }, 1000);
    });
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    error.textContent = "";
    var lines = Number(new FormData(form).get("lines") || 100);
    post("/api/v1/sites/" + encodeURIComponent(form.dataset.site) + "/commands",
         { name: "diagnostics", args: { lines: lines }, ttl_s: 120 })
      .then(function (command) {
        waiting.hidden = false;
        form.dataset.lastCommand = command.id;
        poll(command.id, 120);
      })
      .catch(function (failure) { error.textContent = failure.message; });
  });
})();
