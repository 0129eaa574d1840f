/* Compile, profile and inference jobs on their page, and profiles compared side by side.

   On a job page (#device-job): the results section is fetched again when the job finishes
   (/jobs/<id>/summary/, rendered as a reload renders it), so it shows without a reload. A
   profile's latency histogram fills live: each timed run arrives as a point of the metric
   series "latency_ms" over the job's socket, which job.js holds and relays as "hub:message"
   events; the runs done move the bar. The slowest layers are a horizontal bar chart.

   On the compare page (#compare-profiles): latency and time per op type as grouped bars, one
   colour per profile, the same colours as the table's swatches. */
"use strict";

(function () {
  const COLOURS = ["#3b5bdb", "#e67700", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599"];
  const FINISHED = ["completed", "ready", "failed", "cancelled"];
  const FONT = { family: "system-ui, sans-serif", size: 12 };
  const CONFIG = { responsive: true, displaylogo: false };

  function readJSON(id) {
    const script = document.getElementById(id);
    return script ? JSON.parse(script.textContent) : null;
  }

  // Plotly reads a label as a little HTML (<br>, <b>, entities): names people and models
  // give are made plain text first.
  function plain(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  // A long layer name ("/model/layers.3/attention/MatMul_1") cut from the left for an axis
  // label; the whole name is in the bar's hover text and in the table.
  function shortName(name, room) {
    return name.length <= room ? name : `…${name.slice(name.length - room + 1)}`;
  }

  // "model · device", each part cut at its end to fit: on a phone both stay recognisable.
  function profileLabel(p, room) {
    const cut = (text, n) => (text.length <= n ? text : `${text.slice(0, n - 1)}…`);
    return plain(`${cut(p.model, Math.ceil(room * 0.55))} · ${cut(p.device, Math.floor(room * 0.45))}`);
  }

  // A name cut in its middle, keeping how it starts and ends.
  function middleCut(name, room) {
    if (name.length <= room) return name;
    const head = Math.ceil((room - 1) / 2);
    return `${name.slice(0, head)}…${name.slice(name.length - (room - 1 - head))}`;
  }

  function narrow(element) {
    return (element.clientWidth || window.innerWidth) < 560;
  }

  // Job page

  const root = document.getElementById("job");
  if (root && document.getElementById("device-job")) {
    const id = root.dataset.job;
    const state = { points: [], pending: false, refreshing: null };
    window.hubProfile = state; // for the browser tests and the curious

    const section = () => document.getElementById("device-job");

    // Bins of one width over the bulk of the runs (up to the 95th percentile): a few slow
    // outliers (a scheduler's hiccup) would otherwise squeeze every other run into one bar.
    // They stay counted in the last bins, off the right edge until a double-click zooms out.
    function binning(values) {
      if (values.length < 5) return { xbins: undefined, range: undefined, beyond: [] };
      const sorted = [...values].sort((a, b) => a - b);
      const low = sorted[0], high = sorted[Math.floor(0.95 * (sorted.length - 1))];
      const spread = high - low || high * 0.1 || 0.001;
      const size = spread / 24;
      const edge = high + spread * 0.25;
      const beyond = sorted.filter((v) => v > edge);
      return {
        xbins: { start: low - size / 2, end: sorted[sorted.length - 1] + size, size },
        range: beyond.length ? [low - size, edge] : undefined,
        beyond,
      };
    }

    function drawHistogram() {
      state.pending = false;
      const chart = document.getElementById("latency-chart");
      if (!chart || !window.Plotly) return;
      const values = state.points.map((p) => p.value).filter((v) => v !== null);
      const empty = document.getElementById("latency-empty");
      if (empty) empty.hidden = values.length > 0;
      const data = readJSON("profile-data");
      const stats = (data && data.latency_us) || {};
      const shapes = [], annotations = [];
      for (const [stat, colour, side] of [["median", "#2b8a3e", "right"], ["p90", "#e67700", "left"]]) {
        if (stats[stat] === undefined) continue;
        const x = stats[stat] / 1000;
        shapes.push({ type: "line", xref: "x", yref: "paper", x0: x, x1: x, y0: 0, y1: 1, line: { color: colour, dash: "dash", width: 1.5 } });
        annotations.push({ x, yref: "paper", y: 1, text: stat, showarrow: false, xanchor: side, yanchor: "bottom", font: { color: colour } });
      }
      const bins = binning(values);
      const beyond = document.getElementById("latency-beyond");
      if (beyond) {
        const n = bins.beyond.length;
        beyond.hidden = n === 0;
        if (n) beyond.textContent = `${n} slower run${n === 1 ? "" : "s"} (up to ${bins.beyond[n - 1].toFixed(3)} ms) lie beyond the right edge; double-click the chart to see all.`;
      }
      const layout = {
        margin: { t: 28, r: 16, b: 48, l: 48 },
        xaxis: { title: { text: "latency (ms)" }, range: bins.range, autorange: bins.range ? false : true },
        yaxis: { title: { text: "runs" } },
        bargap: 0.05,
        shapes, annotations,
        font: FONT,
        uirevision: `${id}-latency`,
      };
      const trace = {
        type: "histogram", x: values, name: "runs", xbins: bins.xbins, autobinx: !bins.xbins,
        marker: { color: "#3b5bdb" }, hovertemplate: "%{x} ms: %{y} runs<extra></extra>",
      };
      window.Plotly.react(chart, [trace], layout, CONFIG);
    }

    function scheduleHistogram() {
      if (!state.pending) { state.pending = true; requestAnimationFrame(drawHistogram); }
    }

    // On a desktop each layer's name is its bar's label, cut from the left to fit beside it; on
    // a phone there is no room beside the bars (the names' ends are alike: ".../MatMulAddFusion"),
    // so each name is written above its bar, across the chart's width.
    function drawLayers() {
      const chart = document.getElementById("layers-chart");
      const data = readJSON("profile-data");
      if (!chart || !window.Plotly || !data || !data.layers.length) return;
      const layers = [...data.layers].reverse(); // the slowest at the top
      const small = narrow(chart);
      const mono = { family: "ui-monospace, SFMono-Regular, Menlo, monospace", size: 11 };
      const across = Math.max(20, Math.floor((chart.clientWidth || 320) / 7));
      const trace = {
        type: "bar", orientation: "h",
        x: layers.map((l) => l.execution_time / 1000),
        y: layers.map((l, i) => i), // by position: two layers may share a name's shortened form
        width: small ? 0.5 : undefined,
        text: layers.map((l) => plain(l.type)),
        textposition: "auto",
        customdata: layers.map((l) => [plain(l.name), plain(l.type), plain(l.compute_unit)]),
        hovertemplate: "%{customdata[0]}<br>%{customdata[1]} on %{customdata[2]}: %{x:.3f} ms<extra></extra>",
        marker: { color: "#3b5bdb" },
      };
      const perBar = small ? 46 : 34;
      const layout = {
        margin: { t: small ? 20 : 8, r: 16, b: 48, l: 8 },
        xaxis: { title: { text: "time per run (ms)", standoff: 10 }, automargin: true },
        yaxis: small
          ? { showticklabels: false, range: [-0.5, layers.length - 0.3] }
          : { automargin: true, tickvals: layers.map((l, i) => i), ticktext: layers.map((l) => plain(shortName(l.name || l.type, 36))), tickfont: mono },
        annotations: small
          ? layers.map((l, i) => ({
            x: 0, xref: "x", y: i + 0.25, yref: "y", xanchor: "left", yanchor: "bottom", showarrow: false,
            text: plain(middleCut(l.name || l.type, across)), font: mono,
          }))
          : [],
        height: Math.max(240, perBar * layers.length + 70),
        font: FONT,
      };
      chart.style.height = `${layout.height}px`;
      window.Plotly.react(chart, [trace], layout, CONFIG);
    }

    function showRuns(done, planned) {
      const wrap = document.getElementById("runs-bar-wrap");
      const summary = document.getElementById("profile-summary");
      if (!wrap || !summary) return;
      const total = Number(planned) || Number(summary.dataset.plannedRuns) || 0;
      const runs = Number(done) || 0;
      const width = total ? Math.min(100, (100 * runs) / total) : 0;
      document.getElementById("runs-bar").style.width = `${width}%`;
      wrap.setAttribute("aria-valuenow", String(runs));
    }

    async function loadPoints() {
      // A profile job's, or an inference job's that also profiles: the page has the histogram.
      if (!document.getElementById("latency-chart")) return;
      const url = `/api/v1/jobs/${id}/metrics/?keys=latency_ms&limit=100000`;
      const response = await fetch(url, { credentials: "same-origin" }).catch(() => null);
      if (!response || !response.ok) return;
      const body = await response.json();
      state.points = body.metrics.latency_ms || [];
      scheduleHistogram();
    }

    function appendPoints(points) {
      const last = state.points.length ? state.points[state.points.length - 1].step : -1;
      for (const point of points) if (point.step > last) state.points.push(point);
      scheduleHistogram();
    }

    // The results as the page renders them, once the job has finished: swapped in whole.
    function refreshSummary() {
      state.refreshing = state.refreshing || (async () => {
        const response = await fetch(`/jobs/${id}/summary/`, { credentials: "same-origin" }).catch(() => null);
        if (!response || !response.ok) return;
        const parsed = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = parsed.getElementById("device-job");
        if (!fresh) return;
        section().replaceWith(document.importNode(fresh, true));
        drawLayers();
        scheduleHistogram();
      })().finally(() => { state.refreshing = null; });
      return state.refreshing;
    }

    root.addEventListener("hub:message", (event) => {
      const message = event.detail;
      if (message.type === "snapshot") {
        const job = message.data.job, details = message.data.status_details;
        showRuns(details.steps_completed, details.total_steps);
        loadPoints();
        if (FINISHED.includes(job.status) && section().dataset.status !== job.status) refreshSummary();
        return;
      }
      const data = message.data;
      if (message.event === "metrics" && data.series && data.series.latency_ms) appendPoints(data.series.latency_ms);
      else if (message.event === "progress") showRuns(data.steps_completed, data.total_steps);
      else if (message.event === "status" && FINISHED.includes(data.status)) refreshSummary();
    });

    drawHistogram();
    drawLayers();
    loadPoints();
    let resized = null; // the layers' names are cut to the chart's width, as on the compare page
    window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(drawLayers, 150); });
  }

  // Compare profiles

  const compare = document.getElementById("compare-profiles");
  if (compare) {
    const data = readJSON("compare-data");
    const colourOf = {};
    document.querySelectorAll("#profiles thead th[data-job]").forEach((th, index) => {
      colourOf[th.dataset.job] = COLOURS[index % COLOURS.length];
      const swatch = th.querySelector(".swatch");
      if (swatch) swatch.style.background = colourOf[th.dataset.job];
    });
    window.hubCompareProfiles = data;

    function draw() {
      if (!window.Plotly || !data) return;
      const latency = document.getElementById("latency-compare");
      const ops = document.getElementById("ops-compare");
      // Not the max: one slow outlier would flatten the bars that matter (it is in the table).
      const stats = ["min", "median", "p90"];
      const legend = { orientation: "h", yref: "container", y: 0, yanchor: "bottom" };
      const room = narrow(latency) ? 36 : 90;
      const rows = Math.ceil(data.profiles.length / (narrow(latency) ? 1 : 2));
      const legendRoom = 22 * rows;
      window.Plotly.react(latency, data.profiles.map((p) => ({
        type: "bar", name: profileLabel(p, room), x: stats, y: stats.map((s) => p.latency_ms[s] ?? null),
        marker: { color: colourOf[p.id] }, customdata: stats.map(() => plain(`${p.model} · ${p.device}`)),
        hovertemplate: "%{customdata}<br>%{x}: %{y:.3f} ms<extra></extra>",
      })), {
        barmode: "group", margin: { t: 8, r: 16, b: 48 + legendRoom, l: 56 },
        yaxis: { title: { text: "ms" } }, legend, font: FONT,
        height: 300 + legendRoom,
      }, CONFIG);
      latency.style.height = `${300 + legendRoom}px`;
      // Op types down the side (they read on a phone), a bar per profile in each.
      // A horizontal group stacks its first bar at the bottom: the traces go in reverse, and
      // the legend is read in reverse, so that each group and the legend read top to bottom
      // in the table's order.
      const types = [...data.op_types].reverse();
      const height = Math.max(260, types.length * (14 * data.profiles.length + 12) + 80 + legendRoom);
      window.Plotly.react(ops, [...data.profiles].reverse().map((p) => ({
        type: "bar", orientation: "h", name: profileLabel(p, room), y: types.map(plain), x: types.map((t) => p.op_ms[t] ?? 0),
        marker: { color: colourOf[p.id] }, customdata: types.map(() => plain(`${p.model} · ${p.device}`)),
        hovertemplate: "%{customdata}<br>%{y}: %{x:.3f} ms<extra></extra>",
      })), {
        barmode: "group", margin: { t: 8, r: 16, b: 48 + legendRoom, l: 8 },
        xaxis: { title: { text: "ms per run", standoff: 10 }, automargin: true }, yaxis: { automargin: true },
        legend: { ...legend, traceorder: "reversed" }, font: FONT, height,
      }, CONFIG);
      ops.style.height = `${height}px`;
    }

    draw();
    // Labels are cut to the chart's width: drawn again when the width changes (a phone turned,
    // a window resized), once it has settled.
    let resized = null;
    window.addEventListener("resize", () => { clearTimeout(resized); resized = setTimeout(draw, 150); });
  }
})();
