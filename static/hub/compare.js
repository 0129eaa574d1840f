/* Compare runs: each run's train_loss (solid) and val_loss (dashed) in its own colour on one
   chart, following every run live over its own socket (a reconnect asks for what it missed,
   and a snapshot reloads the run's points), with the status and best losses in the table. */
"use strict";

(function () {
  const root = document.getElementById("compare");
  if (!root) return;
  const COLOURS = ["#3b5bdb", "#e67700", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#5c940d", "#d9480f", "#495057", "#1098ad"];
  const chart = document.getElementById("chart");
  const xMode = document.getElementById("x-mode"), logScale = document.getElementById("log-scale");
  const runs = [...document.querySelectorAll("#runs thead th[data-job]")].map((th, index) => ({
    id: th.dataset.job,
    name: th.dataset.name,
    colour: COLOURS[index % COLOURS.length],
    seq: Number(th.dataset.seq) || 0,
    stepsPerEpoch: Number(th.dataset.stepsPerEpoch) || null,
    series: { train_loss: [], val_loss: [] },
  }));
  runs.forEach((run, index) => {
    const swatch = document.querySelector(`#runs .swatch[data-index="${index}"]`);
    if (swatch) swatch.style.background = run.colour;
  });
  const fmt = (value) => (value === null || value === undefined ? "—" : Number(value).toFixed(4));

  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(draw);
  }

  function draw() {
    pending = false;
    if (!window.Plotly) return;
    const byEpoch = xMode.value === "epoch";
    const traces = [];
    for (const run of runs) {
      const x = (p) => (byEpoch && run.stepsPerEpoch ? p.step / run.stepsPerEpoch : p.step);
      for (const [key, dash, mode] of [["train_loss", "solid", "lines"], ["val_loss", "dash", "lines+markers"]]) {
        const points = run.series[key] || [];
        traces.push({
          name: `${run.name} · ${key}`, legendgroup: run.id,
          x: points.map(x), y: points.map((p) => p.value), mode,
          line: { color: run.colour, dash, width: key === "val_loss" ? 2 : 1.5 }, marker: { size: 6 },
        });
      }
    }
    // The legend goes below the axis title: as many rows as it needs at this width.
    const perRow = Math.max(1, Math.floor((chart.clientWidth || 600) / 220));
    const rows = Math.ceil(traces.length / perRow);
    chart.style.height = `${320 + 20 * rows}px`;
    const layout = {
      uirevision: `compare-${xMode.value}`,
      margin: { t: 24, r: 16, b: 64 + 20 * rows, l: 56 },
      xaxis: { title: { text: byEpoch ? "epoch" : "step" } },
      yaxis: { title: { text: "loss" }, type: logScale.checked ? "log" : "linear" },
      legend: { orientation: "h", yref: "container", y: 0, yanchor: "bottom" },
      font: { family: "system-ui, sans-serif", size: 12 },
    };
    window.Plotly.react(chart, traces, layout, { responsive: true, displaylogo: false });
  }

  async function load(run) {
    const response = await fetch(`/api/v1/jobs/${run.id}/metrics/?keys=train_loss,val_loss&points=2000`, { credentials: "same-origin" }).catch(() => null);
    if (!response || !response.ok) return;
    const data = await response.json();
    for (const key of data.keys) run.series[key] = data.metrics[key];
    schedule();
  }

  function append(run, series) {
    for (const [key, points] of Object.entries(series)) {
      if (!(key in run.series)) continue;
      const known = run.series[key];
      const last = known.length ? known[known.length - 1].step : -1;
      for (const point of points) if (point.step > last) known.push(point);
    }
    schedule();
  }

  function cell(run, field) {
    return document.querySelector(`#runs td[data-job="${run.id}"][data-field="${field}"]`);
  }

  function showDetails(run, data) {
    for (const field of ["train_loss", "val_loss"]) if (data[field] !== undefined && cell(run, field)) cell(run, field).textContent = fmt(data[field]);
    if (data.best_epoch !== undefined && cell(run, "best_epoch")) cell(run, "best_epoch").textContent = data.best_epoch ?? "—";
    if (data.epochs_completed !== undefined && cell(run, "epochs")) {
      const [, of] = cell(run, "epochs").textContent.split(" of ");
      cell(run, "epochs").textContent = `${data.epochs_completed ?? 0} of ${of ?? "—"}`;
    }
    if (data.steps_per_epoch) run.stepsPerEpoch = data.steps_per_epoch;
  }

  function follow(run) {
    window.HubLive(() => `/ws/jobs/${run.id}/?after=${run.seq}`, (message, live) => {
      if (message.type === "heartbeat") {
        if (message.seq > run.seq) live.send({ type: "catch_up", after: run.seq });
        return;
      }
      if (message.type === "snapshot") {
        run.seq = message.seq;
        const job = message.data.job;
        cell(run, "status").replaceChildren(window.hubStatusBadge(job.status));
        showDetails(run, message.data.status_details);
        load(run);
        return;
      }
      if (message.type !== "event") return;
      run.seq = message.seq;
      const data = message.data;
      if (message.event === "metrics") append(run, data.series);
      else if (message.event === "progress") showDetails(run, data);
      else if (message.event === "status") cell(run, "status").replaceChildren(window.hubStatusBadge(data.status));
      else if (message.event === "job" && data.reset) load(run);
    });
  }

  for (const control of [xMode, logScale]) control.addEventListener("input", schedule);
  Promise.all(runs.map(load)).then(() => runs.forEach(follow));
  window.hubCompare = runs; // for the browser tests and the curious
})();
