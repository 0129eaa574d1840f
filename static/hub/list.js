/* The job list, live: rows change as their jobs do, and new jobs appear at the top of the first
   page when they match its filters. Filters and scroll position are left alone. */
"use strict";

(function () {
  const table = document.getElementById("job-table");
  if (!table) return;
  const body = table.tBodies[0];
  const firstPage = table.dataset.page === "1";

  function row(id) { return body.querySelector(`tr[data-job="${id}"]`); }

  async function addRow(id) {
    const response = await fetch(`/jobs/${id}/row/${location.search}`, { credentials: "same-origin" });
    if (response.status !== 200 || row(id)) return;
    body.insertAdjacentHTML("afterbegin", await response.text());
    table.hidden = false;
    const empty = document.querySelector(".empty");
    if (empty) empty.remove();
  }

  // The progress cell from the row's status and the status details it keeps (data-*), in the
  // words the server renders (hubProgressWords): a finished job's bar is complete.
  const PROGRESS = { percentage_done: "percentageDone", epochs: "epochs", epochs_completed: "epochsCompleted", total_steps: "totalSteps", steps_completed: "stepsCompleted" };
  function showProgress(tr) {
    const cell = tr.querySelector(".cell-progress");
    const bar = cell.querySelector(".bar span"), pct = cell.querySelector(".pct");
    if (!bar || !pct) return;
    const details = Object.fromEntries(Object.entries(PROGRESS).map(([key, name]) => [key, cell.dataset[name]]));
    const words = window.hubProgressWords(tr.dataset.status, details);
    bar.style.width = `${words.width}%`;
    cell.querySelector(".bar").setAttribute("aria-valuenow", Math.round(words.width));
    pct.textContent = words.short;
  }

  function update(tr, message) {
    const data = message.data;
    if (message.event === "status") {
      tr.dataset.status = data.status;
      const cell = tr.querySelector(".cell-status");
      cell.replaceChildren(window.hubStatusBadge(data.status));
      if (data.status === "running" && !tr.dataset.started) tr.dataset.started = data.updated_at;
      if (["ready", "failed", "cancelled", "completed"].includes(data.status)) delete tr.dataset.running;
      showProgress(tr);
    } else if (message.event === "progress" && data.percentage_done !== null && data.percentage_done !== undefined) {
      const cell = tr.querySelector(".cell-progress");
      for (const [key, name] of Object.entries(PROGRESS)) if (data[key] !== undefined && data[key] !== null) cell.dataset[name] = data[key];
      showProgress(tr);
      if (data.elapsed_time !== null) tr.querySelector(".cell-elapsed").textContent = window.hubDuration(data.elapsed_time);
    } else if (message.event === "job" && data.name) {
      tr.querySelector(".cell-name").textContent = data.name;
    }
  }

  // Rows read again from the server: after a gap notice (this page's socket fell behind).
  async function refreshRows() {
    for (const tr of [...body.rows]) {
      const response = await fetch(`/jobs/${tr.dataset.job}/row/${location.search}`, { credentials: "same-origin" });
      if (response.status === 200) tr.outerHTML = await response.text();
    }
  }

  window.HubLive(() => "/ws/jobs/", (message) => {
    if (message.type === "gap") { refreshRows(); return; }
    if (message.type !== "event") return;
    const tr = row(message.job);
    if (tr) update(tr, message);
    else if (firstPage) addRow(message.job);
  });

  // Elapsed time of running jobs moves on between events.
  setInterval(() => {
    for (const tr of body.querySelectorAll('tr[data-status="running"][data-started]')) {
      const seconds = (Date.now() - Date.parse(tr.dataset.started)) / 1000;
      tr.querySelector(".cell-elapsed").textContent = window.hubDuration(seconds);
    }
  }, 1000);
})();
