/* Live progress on the console's job page (progressive enhancement: without this script
   the page has a Refresh link). While the job is queued or running, fetch the page's
   progress fragment every second and swap it in; announce status changes to screen
   readers; reload the page once the job has ended, to show its results. Hand-written,
   no dependencies. */
(function () {
  "use strict";
  var region = document.getElementById("job-progress");
  var url = region && region.getAttribute("data-job-progress");
  if (!url) return;
  document.documentElement.classList.add("js");
  var announce = document.getElementById("job-announce");
  var status = region.getAttribute("data-job-status");
  var INTERVAL = 1000;
  var failures = 0;

  function ended(value) {
    return value !== "queued" && value !== "running";
  }

  function poll() {
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        var next = response.headers.get("X-Job-Status") || status;
        return response.text().then(function (html) {
          return { html: html, status: next };
        });
      })
      .then(function (fresh) {
        failures = 0;
        region.innerHTML = fresh.html;
        if (fresh.status !== status) {
          status = fresh.status;
          region.setAttribute("data-job-status", status);
          if (announce) announce.textContent = "Job " + status + ".";
        }
        if (ended(status)) {
          window.location.reload();
          return;
        }
        window.setTimeout(poll, INTERVAL);
      })
      .catch(function () {
        // A restart or a dropped connection: keep trying, less often.
        failures += 1;
        window.setTimeout(poll, Math.min(INTERVAL * Math.pow(2, failures), 15000));
      });
  }

  window.setTimeout(poll, INTERVAL);
})();
