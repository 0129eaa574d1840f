/* A websocket that reconnects on its own and says so in the page's indicator (#live). The
   caller decides the URL on each connect, so it can ask for what it missed (?after=seq). A job
   socket hears a heartbeat every second: once one came, a socket silent for five seconds is
   taken for lost (a half-open connection, a stalled server) and opened again. */
"use strict";

window.HubLive = function HubLive(urlFor, onMessage) {
  const indicator = document.getElementById("live");
  let delay = 500;
  let socket = null;
  let quiet = null;
  const live = {
    close: () => socket && socket.close(),
    send: (content) => {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(content));
    },
  };
  function expectBeats() {
    clearTimeout(quiet);
    quiet = setTimeout(() => socket && socket.close(), 5000);
  }
  function show(state, text) {
    if (!indicator) return;
    indicator.dataset.state = state;
    indicator.textContent = text;
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(`${scheme}//${location.host}${urlFor()}`);
    socket.onopen = () => { delay = 500; show("live", "● live"); };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "heartbeat" || quiet !== null) expectBeats();
      onMessage(message, live);
    };
    socket.onclose = (event) => {
      clearTimeout(quiet);
      quiet = null;
      if (event.code === 4404) { show("closed", "not available"); return; }
      show("reconnecting", "reconnecting…");
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
  return live;
};

window.hubDuration = function hubDuration(seconds) {
  if (seconds === null || seconds === undefined || isNaN(seconds)) return "—";
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const whole = Math.floor(seconds), h = Math.floor(whole / 3600), m = Math.floor((whole % 3600) / 60), s = whole % 60;
  return h ? `${h}h ${String(m).padStart(2, "0")}m` : `${m}m ${String(s).padStart(2, "0")}s`;
};

window.hubStatusBadge = function hubStatusBadge(status) {
  const span = document.createElement("span");
  span.className = `status status-${status}`;
  span.innerHTML = '<span class="dot" aria-hidden="true"></span>';
  span.append(status);
  return span;
};

// How a job's progress reads, as the pages render it (jobs_format.progress_words): percentage_done
// keeps its meaning, but a finished job's bar is complete and says where it stopped.
window.hubProgressWords = function hubProgressWords(status, p) {
  const percent = Number(p.percentage_done) || 0;
  const tenths = (Math.floor(percent * 10 + 0.5) / 10).toFixed(1); // halves up, as the server does
  const words = { width: percent, headline: `${tenths}%`, detail: "done (percentage_done)", short: `${Math.round(percent)}%` };
  if (!["completed", "ready", "failed", "cancelled"].includes(status)) return words;
  words.width = 100;
  const verb = status === "ready" || status === "completed" ? "stopped early" : "stopped";
  const epochs = Number(p.epochs) || 0, steps = Number(p.total_steps) || 0;
  let where = null;
  if (epochs && (Number(p.epochs_completed) || 0) < epochs) where = `${verb} at epoch ${Number(p.epochs_completed) || 0} of ${epochs}`;
  else if (!epochs && steps && (Number(p.steps_completed) || 0) < steps) where = `${verb} at step ${Number(p.steps_completed) || 0} of ${steps}`;
  if (where === null) return words;
  return { width: 100, headline: where, detail: `(percentage_done ${tenths})`, short: where };
};
