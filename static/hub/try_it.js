// "Try it": each pane's model answers the prompt, streamed as server-sent events from
// POST /api/v1/models/<model>/generate/ and written into the pane as the pieces come.
(function () {
  "use strict";
  const form = document.getElementById("try-it-form");
  if (!form) return;
  const panes = Array.from(document.querySelectorAll(".try-answer"));
  const button = document.getElementById("try-generate");

  function events(buffer) {
    // Complete events in the buffer, and what is left of it.
    const parts = buffer.split("\n\n");
    const rest = parts.pop();
    const found = parts.map((block) => {
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      return { name, data: data ? JSON.parse(data) : {} };
    });
    return { found, rest };
  }

  function facts(result) {
    const bits = [`${result.tokens} tokens`];
    if (result.first_token_seconds !== null) bits.push(`first after ${result.first_token_seconds.toFixed(2)} s`);
    if (result.seconds !== null) bits.push(`all in ${result.seconds.toFixed(2)} s`);
    bits.push(result.warm ? "model was loaded" : "model loaded for this prompt");
    return bits.join(" · ");
  }

  async function ask(pane, body, csrf) {
    const text = pane.querySelector(".try-text");
    const note = pane.querySelector(".try-facts");
    text.textContent = "";
    note.textContent = "Waiting for the generation worker…";
    pane.dataset.state = "waiting";
    pane.dataset.pieces = "0";
    pane.classList.remove("failed");
    const fail = (message) => {
      pane.dataset.state = "failed";
      pane.classList.add("failed");
      note.textContent = message;
    };
    let response;
    try {
      response = await fetch(`/api/v1/models/${encodeURI(pane.dataset.model)}/generate/`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "text/event-stream", "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body),
      });
    } catch (error) {
      fail(`The hub could not be reached: ${error.message}`);
      return;
    }
    if (!(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
      // Not the hub's events (a proxy's error page, a server error): say what came back.
      fail(`The hub answered ${response.status} ${response.statusText}; try again.`);
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const parsed = events(buffer);
      buffer = parsed.rest;
      for (const event of parsed.found) {
        if (event.name === "queued") {
          note.textContent = "Queued for the generation worker…";
        } else if (event.name === "token") {
          if (event.data.replace) text.textContent = event.data.text;
          else text.textContent += event.data.text;
          pane.dataset.state = "streaming";
          pane.dataset.pieces = String(Number(pane.dataset.pieces) + 1);
          note.textContent = "Writing…";
        } else if (event.name === "done") {
          text.textContent = event.data.text;
          pane.dataset.state = "done";
          note.textContent = facts(event.data);
        } else if (event.name === "error") {
          fail(event.data.detail || "The answer failed.");
        }
      }
    }
    if (pane.dataset.state === "waiting" || pane.dataset.state === "streaming") {
      fail("The answer's stream ended early; try again.");
    }
  }

  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const body = {
      prompt: form.prompt.value,
      max_tokens: Number(form.max_tokens.value),
      temperature: Number(form.temperature.value),
      chat: form.chat.checked,
    };
    const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
    button.disabled = true;
    try {
      await Promise.all(panes.map((pane) => ask(pane, body, csrf)));
    } finally {
      button.disabled = false;
    }
  });
})();
