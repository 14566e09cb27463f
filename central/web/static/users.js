// Accounts page (city-wide admins) and "my account": every change through the REST API.
(function () {
  "use strict";
  function call(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Requested-With": "onedoor" },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (answer) {
        if (!response.ok) {
          var detail = answer.detail;
          throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
        }
        return answer;
      });
    });
  }
  function towns(text) {  // "三乡镇、石岐街道" or "三乡镇, 石岐街道"; empty: the whole city
    var names = String(text || "").split(/[、,，\s]+/).filter(Boolean);
    return names.length ? names : null;
  }
  var error = document.getElementById("users-error") || document.getElementById("account-error");
  function fail(failure) { error.textContent = failure.message; }
  function done() { window.location.reload(); }

  var table = document.getElementById("users");
  if (table) {
    table.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) { return; }
      var row = button.closest("tr");
      var url = "/api/v1/users/" + encodeURIComponent(row.dataset.username);
      error.textContent = "";
      if (button.hasAttribute("data-save")) {
        call("PATCH", url, { role: row.querySelector("[name=role]").value,
                             towns: towns(row.querySelector("[name=towns]").value) })
          .then(done).catch(fail);
      } else if (button.hasAttribute("data-enable")) {
        call("PATCH", url, { enabled: button.dataset.enable === "true" }).then(done).catch(fail);
      } else if (button.hasAttribute("data-password")) {
        var password = window.prompt(document.body.dataset.lang === "en" ? "New password (10+ characters)" : "新密码（至少 10 个字符）");
        if (password) { call("POST", url + "/password", { password: password }).then(done).catch(fail); }
      }
    });
    document.getElementById("new-user").addEventListener("submit", function (event) {
      event.preventDefault();
      var form = new FormData(event.target);
      error.textContent = "";
      call("POST", "/api/v1/users", {
        username: form.get("username"), display_name: form.get("display_name"),
        role: form.get("role"), towns: towns(form.get("towns")), password: form.get("password")
      }).then(done).catch(fail);
    });
  }
  var own = document.getElementById("own-password");
  if (own) {
    own.addEventListener("submit", function (event) {
      event.preventDefault();
      var form = new FormData(own);
      error.textContent = "";
      call("POST", "/api/v1/me/password", { old_password: form.get("old_password"),
                                            new_password: form.get("new_password") })
        .then(function () { window.location.href = "/login"; }).catch(fail);
    });
  }
})();
