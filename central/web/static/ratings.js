// 差评 case page: each step posts to the REST API with the session cookie (SameSite=Strict),
// then the page reloads to show the case as the server now holds it.
(function () {
  "use strict";
  var form = document.getElementById("case-step");
  if (!form) { return; }
  var error = document.getElementById("step-error");
  form.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    var action = button.dataset.action;
    var note = form.elements.note.value.trim();
    if (!note) { error.hidden = false; error.textContent = form.elements.note.labels[0].textContent.trim(); return; }
    var review = action === "uphold" || action === "reject";
    var url = "/api/v1/bad-ratings/" + form.dataset.case + "/" + (review ? "review" : action);
    var body = review ? { decision: action, note: note } : { note: note };
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "X-Requested-With": "onedoor", "Content-Type": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().then(function (data) {
        if (!response.ok) { throw new Error(data.detail || String(response.status)); }
        window.location.reload();
      });
    }).catch(function (failure) {
      form.querySelectorAll("button").forEach(function (b) { b.disabled = false; });
      error.hidden = false;
      error.textContent = failure.message;
    });
  });
})();
