// Site page (operators): send a remote command through the REST API; its result arrives live.
(function () {
  "use strict";
  var form = document.getElementById("command-form");
  var error = document.getElementById("command-error");
  function args(name, text) {
    if (name === "announce") { return { text: text, repeat: 1 }; }
    if (name === "screen_notice") { return { text: text, screen: null, duration_s: 300 }; }
    if (name === "reprint") { return { ticket: text }; }
    return { version: text || null };
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var data = new FormData(form);
    var name = data.get("name");
    error.textContent = "";
    fetch("/api/v1/sites/" + encodeURIComponent(form.dataset.site) + "/commands", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "onedoor" },
      body: JSON.stringify({ name: name, args: args(name, String(data.get("text") || "").trim()),
                             ttl_s: Number(data.get("ttl_s") || 600) })
    }).then(function (response) {
      return response.json().then(function (body) {
        if (!response.ok) { throw new Error(typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)); }
        form.dataset.lastCommand = body.id;
      });
    }).catch(function (failure) { error.textContent = failure.message; });
  });
})();
