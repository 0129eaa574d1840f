/* The job page, live: status, progress, the loss chart and the timeline change as events
   arrive; a reconnect asks for what was missed (?after=seq), so nothing is lost or doubled. */
"use strict";

(function () {
  const root = document.getElementById("job");
  if (!root) return;
  const id = root.dataset.job;
  const FINISHED = ["completed", "ready", "failed", "cancelled"];
  // The training type's own measures (DPO's reward margin and preference accuracy): shown on
  // the right axis from the start; any other series waits behind a click on its legend.
  const MEASURES = (root.dataset.measures || "").split(",").filter(Boolean);
  const state = {
    seq: Number(root.dataset.seq),
    status: root.querySelector("#status-badge .status").textContent.trim(),
    stepsPerEpoch: Number(root.dataset.stepsPerEpoch) || null,
    epochs: Number(root.dataset.epochs) || null,
    series: { train_loss: [], val_loss: [] },
    total: {},
    downsampled: false,
    // From the page as rendered: a reloaded page asks only for the events after it, and the
    // marker must not wait for the next progress event.
    bestEpoch: Number(root.dataset.bestEpoch) || null,
    // The status details the progress line is written from (hubProgressWords), as rendered;
    // progress events move them on, and a status event rewrites the line from them.
    progress: {
      percentage_done: root.dataset.percentageDone, epochs: root.dataset.epochs,
      epochs_completed: root.dataset.epochsCompleted, steps_completed: root.dataset.stepsCompleted,
      total_steps: root.dataset.totalSteps,
    },
    startedAt: null,
    finishedAt: null,
  };
  const $ = (selector) => root.querySelector(selector);
  const fmt = (value, digits = 4) => (value === null || value === undefined ? "—" : Number(value).toFixed(digits));

  // Status, header and progress

  function setStatus(status, data) {
    state.status = status;
    $("#status-badge").replaceChildren(window.hubStatusBadge(status));
    $("#cancel-form").hidden = FINISHED.includes(status) || status === "cancelling";
    // An external run is started again where it ran, not here.
    $("#resubmit-form").hidden = !FINISHED.includes(status) || root.dataset.kind === "external";
    $("#delete-link").hidden = !FINISHED.includes(status);
    const field = root.querySelector('[data-field="status"]');
    if (field) field.textContent = status;
    const failure = $("#failure");
    if (status === "failed") {
      $("#failure-message").textContent = data.failure_message || data.message;
      $("#failure-type").textContent = data.failure_label || (data.failure_type || "").replace(/_/g, " ");
      if (data.failure_by_user !== undefined) {
        $("#failure-blame").textContent = data.failure_by_user
          ? "Something in the job's inputs needs to change before resubmitting."
          : "This was the hub's problem, not the job's inputs: resubmitting may succeed.";
      }
      failure.hidden = false;
    }
    // The progress line says where the job is; a failure's words are in the banner above,
    // not repeated here.
    const link = $("#link-progress");
    if (link) link.textContent = status === "ready" ? link.dataset.ready || "Linked and verified." : status === "failed" ? "Stopped: see why above." : data.message;
    if (status === "ready") refreshResults();
    showProgress();
    if (FINISHED.includes(status)) $("#eta-wrap").hidden = true;
    followQueue();
  }

  // A pending job's place in the queue and what it waits for: asked every few seconds while
  // it waits (other people's jobs move it, which its own events do not tell).
  let queueTimer = null;
  function followQueue() {
    const info = $("#queue-info");
    if (!info) return;
    if (state.status !== "pending") {
      info.hidden = true;
      clearTimeout(queueTimer);
      queueTimer = null;
      return;
    }
    if (queueTimer) return;
    const ask = async () => {
      queueTimer = null;
      if (state.status !== "pending") return;
      const response = await fetch(`/api/v1/jobs/${id}/queue/`, { credentials: "same-origin" }).catch(() => null);
      if (response && response.ok) {
        const { queue } = await response.json();
        if (queue && state.status === "pending") { info.textContent = queue.reason; info.hidden = false; }
      }
      if (state.status === "pending") queueTimer = setTimeout(ask, 5000);
    };
    queueTimer = setTimeout(ask, 5000);
  }

  function setBars(percent, stepFraction) {
    const bar = $("#pct-bar");
    if (bar && percent !== null) bar.style.width = `${percent}%`;
    const steps = $("#step-bar");
    if (steps && stepFraction !== null) steps.style.width = `${stepFraction * 100}%`;
  }

  // The bar and its words from the status and the latest status details, as a reload renders
  // them (a finished job's bar is complete and says where it stopped).
  function showProgress() {
    if (!$("#pct")) return;
    const words = window.hubProgressWords(state.status, state.progress);
    $("#pct").textContent = words.headline;
    $("#pct-detail").textContent = words.detail;
    setBars(words.width, null);
    $("#pct-bar-wrap").setAttribute("aria-valuenow", Math.round(words.width));
  }

  function setSamples(samples) {
    const body = $("#samples");
    if (!body || !samples || !samples.length) return;
    body.replaceChildren(...samples.map((sample) => {
      const row = document.createElement("tr");
      const cells = { prompt: sample.prompt, expected: sample.expected, before: sample.before ?? "…", after: sample.after ?? "… training" };
      for (const [label, text] of Object.entries(cells)) {
        const cell = document.createElement("td");
        cell.dataset.label = label;
        cell.textContent = text;
        row.append(cell);
      }
      return row;
    }));
    $("#samples-card").hidden = false;
  }

  function setProgress(data) {
    if (data.samples) setSamples(data.samples);
    for (const [key, value] of Object.entries(data)) {
      if (key === "samples") continue;
      const cell = root.querySelector(`[data-field="${key}"]`);
      if (!cell) continue;
      if (key === "elapsed_time") cell.textContent = window.hubDuration(value);
      else if (key.endsWith("_loss")) cell.textContent = fmt(value);
      else if (key === "percentage_done") cell.textContent = fmt(value, 1);
      else if (key === "packing_efficiency") cell.textContent = value == null ? "—" : `${Math.round(value * 100)}%`;
      else if (key === "tokens_per_second") cell.textContent = value == null ? "—" : Math.round(value).toLocaleString("en");
      else cell.textContent = value === null || value === "" ? "—" : value;
    }
    if (data.steps_per_epoch) state.stepsPerEpoch = data.steps_per_epoch;
    if (data.epochs) state.epochs = data.epochs;
    if (data.best_epoch !== undefined && data.best_epoch !== state.bestEpoch) { state.bestEpoch = data.best_epoch; scheduleChart(); }
    for (const key of Object.keys(state.progress)) if (data[key] !== undefined) state.progress[key] = data[key];
    if ($("#pct")) {
      const p = state.progress, total = Number(p.total_steps) || null; // a snapshot has no plan: the last one known
      $("#epochs").textContent = `${p.epochs_completed || 0} of ${state.epochs || "—"}`;
      $("#steps").textContent = `${p.steps_completed || 0} of ${total || "—"}`;
      setBars(null, total ? (Number(p.steps_completed) || 0) / total : null);
      showProgress();
    }
    if (data.eta_seconds && !FINISHED.includes(state.status)) {
      $("#eta").textContent = window.hubDuration(data.eta_seconds);
      $("#eta-wrap").hidden = false;
    }
  }

  // Timeline

  function addEntry(data) {
    // The page may already show an entry that its first replay sends again (the page is
    // rendered, then the socket asks for everything after the number the page was rendered at).
    for (const shown of root.querySelectorAll("#timeline li")) {
      const sameTime = Date.parse(shown.dataset.time) === Date.parse(data.updated_at);
      if (sameTime && shown.dataset.status === data.status && shown.querySelector(".message").textContent === data.message) return;
    }
    const li = document.createElement("li");
    li.dataset.status = data.status;
    li.dataset.time = data.updated_at;
    const time = document.createElement("time");
    time.dateTime = data.updated_at;
    time.textContent = new Date(data.updated_at).toISOString().slice(11, 19);
    const message = document.createElement("span");
    message.className = "message";
    message.textContent = data.message;
    li.append(time, " ", window.hubStatusBadge(data.status), " ", message);
    if (data.detail) { const detail = document.createElement("div"); detail.className = "muted"; detail.textContent = data.detail; li.append(detail); }
    $("#timeline").append(li);
    drawDurations();
  }

  function drawDurations() {
    const entries = [...root.querySelectorAll("#timeline li")].map((li) => [li.dataset.status, Date.parse(li.dataset.time)]);
    const spent = new Map();
    for (let i = 0; i < entries.length; i++) {
      const [status, start] = entries[i];
      if (i > 0 && entries[i - 1][0] === status) continue;
      let j = i + 1;
      while (j < entries.length && entries[j][0] === status) j++;
      const end = j < entries.length ? entries[j][1] : (FINISHED.includes(status) ? null : Date.now());
      if (end !== null) spent.set(status, (spent.get(status) || 0) + (end - start) / 1000);
    }
    const list = $("#durations");
    list.replaceChildren(...[...spent].map(([status, seconds]) => {
      const li = document.createElement("li");
      li.append(window.hubStatusBadge(status), ` ${window.hubDuration(seconds)}`);
      return li;
    }));
  }

  // Results

  const FORMATS = { onnx: "ONNX", hf: "Hugging Face model", torch: "PyTorch checkpoint (retired tiny-char-lm)" };

  // Sizes as the server's filesize filter writes them (KiB, MiB, … with one decimal).
  function bytes(size) {
    const units = ["B", "KiB", "MiB", "GiB"];
    let value = size, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
  }

  async function refreshResults() {
    const response = await fetch(`/api/v1/jobs/${id}/`, { credentials: "same-origin" });
    if (!response.ok) return;
    const job = await response.json();
    // Built as elements, never as HTML: names are text, whatever characters they hold.
    const link = (href, text, id) => {
      const a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      if (id) a.id = id;
      return a;
    };
    const items = [];
    if (job.target_model && job.status === "ready") {
      // Only a ready job's target model is downloadable (a failed verification keeps it for
      // the record). The same row a reload renders: download, the model's page by its format, size, sha256.
      const li = document.createElement("li");
      const meta = await fetch(`/api/v1/models/${job.target_model}/`, { credentials: "same-origin" });
      const model = meta.ok ? await meta.json() : { format: "", size: null, sha256: "" };
      const hash = document.createElement("span");
      hash.className = "mono muted";
      hash.textContent = `sha256 ${model.sha256.slice(0, 19)}…`;
      li.append(
        link(`/api/v1/jobs/${id}/target-model/`, "Target model", "download-target"), " (",
        link(`/jobs/models/${job.target_model}/`, FORMATS[model.format] || model.format), ")",
        model.size === null ? "" : ` · ${bytes(model.size)} · `, hash,
      );
      items.push(li);
    }
    for (const artifact of job.artifacts) {
      const li = document.createElement("li");
      li.append(link(`/api/v1/jobs/${id}/artifacts/${encodeURIComponent(artifact.name)}/`, artifact.name), ` · ${bytes(artifact.size)}`);
      items.push(li);
    }
    if (items.length) {
      const li = document.createElement("li");
      li.append(link(`/api/v1/jobs/${id}/results/`, "All results (.zip)", "download-results"));
      items.push(li);
    } else {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "Nothing yet: results appear here when the job produces them.";
      items.push(li);
    }
    $("#artifact-list").replaceChildren(...items);
  }

  // Chart

  const chart = $("#chart");
  const xMode = $("#x-mode"), logScale = $("#log-scale"), smoothing = $("#smoothing");
  let chartPending = false;

  function xOf(point) {
    if (xMode.value === "epoch" && state.stepsPerEpoch) return point.step / state.stepsPerEpoch;
    if (xMode.value === "time") return new Date(point.timestamp);
    return point.step;
  }

  function traces() {
    const train = state.series.train_loss || [], val = state.series.val_loss || [];
    const alpha = Number(smoothing.value);
    const out = [
      { name: "train_loss", x: train.map(xOf), y: train.map((p) => p.value), mode: "lines", line: { color: "#3b5bdb", width: 1.5 }, opacity: alpha > 0 ? 0.35 : 1 },
      { name: "val_loss", x: val.map(xOf), y: val.map((p) => p.value), mode: "lines+markers", line: { color: "#e67700", width: 2 }, marker: { size: 7 } },
    ];
    if (alpha > 0) {
      let last = null;
      const smooth = train.map((p) => (p.value === null ? last : (last = last === null ? p.value : alpha * last + (1 - alpha) * p.value)));
      out.push({ name: `train_loss (smoothed ${alpha})`, x: train.map(xOf), y: smooth, mode: "lines", line: { color: "#1c2f8a", width: 2 } });
    }
    // Whatever else the run records (an external run's learning_rate, grad_norm…): in the
    // legend, on their own axis, shown with a click.
    for (const key of otherKeys()) {
      const points = state.series[key];
      out.push({ name: key, x: points.map(xOf), y: points.map((p) => p.value), mode: "lines", yaxis: "y2", visible: MEASURES.includes(key) ? true : "legendonly", line: { width: key.startsWith("val_") ? 2 : 1, dash: key.startsWith("val_") ? "dot" : "solid" } });
    }
    return out;
  }

  function othersShown() {
    return (chart.data || []).some((trace) => trace.yaxis === "y2" && trace.visible === true);
  }

  function otherKeys() {
    return Object.keys(state.series).filter((key) => key !== "train_loss" && key !== "val_loss").sort();
  }

  function bestShapes() {
    if (!state.bestEpoch || !state.stepsPerEpoch) return [[], []];
    const step = state.bestEpoch * state.stepsPerEpoch;
    const val = (state.series.val_loss || []).find((p) => p.step === step);
    const x = xMode.value === "epoch" ? state.bestEpoch : xMode.value === "time" ? (val ? new Date(val.timestamp) : null) : step;
    if (x === null) return [[], []];
    return [
      [{ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { color: "#2b8a3e", dash: "dash", width: 1.5 } }],
      [{ x, yref: "paper", y: 1, text: `best epoch ${state.bestEpoch}`, showarrow: false, yanchor: "bottom", font: { color: "#2b8a3e" } }],
    ];
  }

  function drawChart() {
    chartPending = false;
    if (!chart || !window.Plotly) return;
    const [shapes, annotations] = bestShapes();
    const layout = {
      uirevision: `${id}-${xMode.value}`, // keeps zoom and hidden series while data changes
      margin: { t: 48, r: 16, b: 84, l: 56 }, // room above the plot for the best epoch's label below the toolbar
      xaxis: { title: { text: xMode.value }, type: xMode.value === "time" ? "date" : "linear" },
      yaxis: { title: { text: "loss" }, type: logScale.checked ? "log" : "linear" },
      // The right axis only while one of the other series is shown (a click on its legend).
      yaxis2: { overlaying: "y", side: "right", showgrid: false, zeroline: false, automargin: true, visible: othersShown() },
      // Below the x axis's title whatever the chart's height (a phone's included).
      legend: { orientation: "h", yref: "container", y: 0, yanchor: "bottom" },
      shapes, annotations,
      font: { family: "system-ui, sans-serif", size: 12 },
    };
    window.Plotly.react(chart, traces(), layout, { responsive: true, displaylogo: false });
    const empty = $("#chart-empty");
    if (empty && Object.values(state.series).some((points) => points.length)) empty.hidden = true;
    const shown = Object.values(state.series).reduce((n, s) => n + s.length, 0);
    const total = Object.values(state.total).reduce((n, t) => n + t, 0);
    $("#points-info").textContent = state.downsampled ? `showing ${shown} of ${total} points` : `${shown} points`;
  }

  function scheduleChart() {
    if (chart && !chartPending) { chartPending = true; requestAnimationFrame(drawChart); }
  }

  function appendPoints(series) {
    for (const [key, points] of Object.entries(series)) {
      const known = state.series[key] || (state.series[key] = []);
      const last = known.length ? known[known.length - 1].step : -1;
      for (const point of points) if (point.step > last) known.push(point);
      state.total[key] = Math.max(state.total[key] || 0, known.length);
    }
    scheduleChart();
  }

  async function loadMetrics(range) {
    if (!chart) return;
    const params = new URLSearchParams({ points: "2000" });
    if (range) { params.set("after_step", Math.max(0, Math.floor(range[0]) - 1)); params.set("until_step", Math.ceil(range[1])); }
    const response = await fetch(`/api/v1/jobs/${id}/metrics/?${params}`, { credentials: "same-origin" }).catch(() => null);
    if (!response || !response.ok) return;
    const data = await response.json();
    state.total = data.total_points;
    state.downsampled = data.downsampled;
    for (const key of data.keys) {
      const window_ = data.metrics[key];
      if (!range) { state.series[key] = window_; continue; }
      const outside = (state.series[key] || []).filter((p) => p.step < range[0] || p.step > range[1]);
      state.series[key] = [...outside, ...window_].sort((a, b) => a.step - b.step);
    }
    scheduleChart();
  }

  if (chart) {
    for (const control of [xMode, logScale, smoothing]) control.addEventListener("input", scheduleChart);
  }

  function watchZoom() {
    if (!chart || !chart.on) return;
    chart.on("plotly_restyle", scheduleChart); // a series shown or hidden: the right axis follows
    chart.on("plotly_relayout", (event) => {
      if (!state.downsampled || xMode.value === "time") return;
      const scale = xMode.value === "epoch" && state.stepsPerEpoch ? state.stepsPerEpoch : 1;
      if (event["xaxis.range[0]"] !== undefined) loadMetrics([event["xaxis.range[0]"] * scale, event["xaxis.range[1]"] * scale]);
      else if (event["xaxis.autorange"]) loadMetrics(null);
    });
  }

  // Events

  // A rename, here or on another page: the title follows, and the rename form unless someone
  // is typing in it.
  function showName(name) {
    const title = document.getElementById("job-name");
    if (title) title.textContent = name;
    const input = document.getElementById("rename-input");
    if (input && input !== document.activeElement) input.value = name;
    document.title = document.title.replace(/^.*?(?= · |$)/, name);
  }

  // The job's log: numbered lines, each shown once; a jump in the numbers (or a snapshot, after
  // a reconnect the server could not replay) fetches what is missing from the API.
  const logBox = $("#log");
  state.logLast = logBox ? Number(logBox.dataset.last) || 0 : 0;
  function appendLines(lines) {
    if (!logBox) return;
    const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 8;
    for (const line of lines) {
      if (line.n <= state.logLast) continue;
      state.logLast = line.n;
      const row = document.createElement("span");
      row.className = `line level-${line.level}`;
      row.dataset.n = line.n;
      row.textContent = `${line.at.slice(11, 19)} ${line.text}\n`;
      logBox.append(row);
    }
    $("#log-empty").hidden = state.logLast > 0;
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  }
  let fetchingLines = null;
  function fetchLines() {
    if (!logBox) return Promise.resolve();
    fetchingLines = fetchingLines || (async () => {
      for (;;) {
        const response = await fetch(`/api/v1/jobs/${id}/logs/?after=${state.logLast}`, { credentials: "same-origin" }).catch(() => null);
        if (!response || !response.ok) break;
        const page = await response.json();
        appendLines(page.lines);
        if (!page.more) break;
      }
    })().finally(() => { fetchingLines = null; });
    return fetchingLines;
  }
  function onLines(lines) {
    if (lines.length && lines[0].n > state.logLast + 1) fetchLines().then(() => appendLines(lines));
    else appendLines(lines);
  }
  if (logBox) logBox.scrollTop = logBox.scrollHeight;

  function onMessage(message, live) {
    if (message.type === "heartbeat") {
      // The job's latest number: one this page has not seen means something was lost on the
      // way; ask for it (the server also repairs on its own, this covers the last hop).
      if (message.seq > state.seq) live.send({ type: "catch_up", after: state.seq });
      return;
    }
    if (message.type !== "snapshot" && message.type !== "event") return; // gap notices, errors
    // The page's other scripts (profile.js) follow the same events, over this one socket.
    root.dispatchEvent(new CustomEvent("hub:message", { detail: message }));
    if (message.type === "snapshot") {
      state.seq = message.seq;
      const job = message.data.job, details = message.data.status_details;
      setProgress({ ...details, ran_on: job.ran_on, samples: job.samples });
      setStatus(job.status, { ...(details.status_logs.slice(-1)[0] || {}), failure_message: job.failure && job.failure.message, failure_type: job.failure && job.failure.type, failure_label: job.failure && job.failure.type_label, failure_by_user: job.failure ? job.failure.by_user : undefined });
      loadMetrics(null);
      fetchLines();
      return;
    }
    state.seq = message.seq;
    const data = message.data;
    if (message.event === "status") { setStatus(data.status, data); addEntry(data); }
    else if (message.event === "log") addEntry(data);
    else if (message.event === "progress") setProgress(data);
    else if (message.event === "metrics") appendPoints(data.series);
    else if (message.event === "lines") onLines(data.lines);
    else if (message.event === "artifact") refreshResults();
    else if (message.event === "job" && data.reset) location.reload();
    else if (message.event === "job" && data.name) showName(data.name);
    // Ready makes the target model downloadable; failed takes the offer back.
    if (message.event === "status" && FINISHED.includes(data.status)) refreshResults();
  }

  drawDurations();
  followQueue();
  // The chart is made before anything can arrive (the socket opens below, the points come
  // later): events then only ever update a chart that exists, and the best epoch's marker,
  // known from the page as rendered, shows at once rather than when the points have loaded.
  drawChart();
  watchZoom();
  loadMetrics(null);
  window.HubLive(() => `/ws/jobs/${id}/?after=${state.seq}`, onMessage);
  // Elapsed time comes from the timeline itself: from the first "running" entry to the first
  // finished one, or to now.
  function tickElapsed() {
    const times = (selector) => [...root.querySelectorAll(selector)].map((li) => Date.parse(li.dataset.time));
    const start = times('#timeline li[data-status="running"]')[0];
    if (start === undefined) return;
    const end = times(FINISHED.map((s) => `#timeline li[data-status="${s}"]`).join(","))[0];
    $("#elapsed").textContent = window.hubDuration(((end || Date.now()) - start) / 1000);
  }
  tickElapsed();
  setInterval(() => {
    tickElapsed();
    if (!FINISHED.includes(state.status)) drawDurations();
  }, 1000);
  window.hubJobState = state; // for the browser tests and the curious
})();
