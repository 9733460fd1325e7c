/* The campaign pages' small script layer (docs/console.md "Campaigns"; no inline script: the
   CSP allows script-src 'self' only).
   - The wizard: when the schedule fields change, ask /campaigns/schedule.json for the schedule
     in words and its next run times (computed by the service's own schedule functions).
   - A campaign's page: while a preview runs, poll its status and reload the page once done;
     a status that is gone (404/410) stops the polling with a message. */
(function () {
  "use strict";

  function scheduleLive(box) {
    var form = document.getElementById("campaign-form");
    var names = ["schedule_kind", "time", "weekdays", "cron", "rrule"];
    var timer = null;
    function query() {
      var params = new URLSearchParams();
      names.forEach(function (name) {
        form.querySelectorAll('[name="' + name + '"]').forEach(function (el) {
          if ((el.type === "checkbox" || el.type === "radio") && !el.checked) { return; }
          params.append(name, el.value);
        });
      });
      return params.toString();
    }
    function show(answer) {
      document.getElementById("schedule-words").textContent = answer.words || "";
      document.getElementById("schedule-error").textContent = answer.error || "";
      var list = document.getElementById("next-runs");
      while (list.firstChild) { list.removeChild(list.firstChild); }
      (answer.times || []).forEach(function (t) {
        var item = document.createElement("li");
        item.textContent = t;
        list.appendChild(item);
      });
    }
    function update() {
      fetch(box.dataset.url + "?" + query(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (answer) { if (answer) { show(answer); } })
        .catch(function () { /* the server-rendered times stay */ });
    }
    function later() {
      if (timer) { clearTimeout(timer); }
      timer = setTimeout(update, 300);
    }
    names.forEach(function (name) {
      form.querySelectorAll('[name="' + name + '"]').forEach(function (el) {
        el.addEventListener("change", later);
        el.addEventListener("input", later);
      });
    });
  }

  function previewPoll(running) {
    function poll() {
      fetch(running.dataset.poll, { credentials: "same-origin" })
        .then(function (r) {
          if (r.status === 404 || r.status === 410) {
            // The job is gone (expired, or another preview replaced it): asking again never
            // helps, so stop and say so.
            running.textContent = running.dataset.gone;
            running.className = "error";
            return false;
          }
          return r.ok ? r.json() : null;
        })
        .then(function (job) {
          if (job === false) { return; }
          if (job && (job.status === "done" || job.status === "failed")) {
            window.location.reload();
          } else {
            setTimeout(poll, 1000);
          }
        })
        .catch(function () { setTimeout(poll, 3000); });
    }
    setTimeout(poll, 500);
  }

  var box = document.getElementById("schedule-preview");
  if (box) { scheduleLive(box); }
  var running = document.getElementById("preview-running");
  if (running) { previewPoll(running); }
})();
