// The segment builder's live member count (docs/console.md "Segments"): after typing stops, the
// expression is POSTed to /segments/preview (with the form's CSRF token: up to 16 KiB does not
// fit in a URL) and the answer (a count, or the API's error) is shown beside it. Loaded as a
// file: the console's CSP allows no inline script.
(function () {
  "use strict";
  var box = document.getElementById("expression");
  var out = document.getElementById("live-count");
  if (!box || !out) return;
  var timer = null;
  var sent = 0;

  function show(text, invalid) {
    out.textContent = "";
    out.className = invalid ? "error" : "count";
    if (invalid) {
      var label = document.createElement("strong");
      label.textContent = out.dataset.invalid + " ";
      out.appendChild(label);
    }
    out.appendChild(document.createTextNode(text));
  }

  function count() {
    var mine = ++sent;
    out.className = "counting";
    out.textContent = out.dataset.counting;
    var body = new URLSearchParams();
    body.append("expr", box.value);
    body.append("csrf_token", box.form.elements.csrf_token.value);
    fetch(box.dataset.preview, {
      method: "POST", body: body, credentials: "same-origin",
      headers: { Accept: "application/json" }
    })
      .then(function (response) { return response.json(); })
      .then(function (answer) {
        if (mine !== sent) return; // a newer expression was sent meanwhile
        if (answer.ok) show(answer.text, false);
        else show(answer.error, true);
      })
      .catch(function () {
        if (mine === sent) show(out.dataset.failed, false);
      });
  }

  box.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(count, 500);
  });
  Array.prototype.forEach.call(document.querySelectorAll(".use-example"), function (button) {
    button.addEventListener("click", function () {
      box.value = button.dataset.example;
      count();
    });
  });
  if (box.value.trim()) count();
})();
