/* An evaluation job's page: when the job becomes ready, its scores (/jobs/<id>/summary/,
   rendered as a reload renders them) are swapped in, so they show without a reload. */
"use strict";

(function () {
  const root = document.getElementById("job");
  if (!root || root.dataset.kind !== "evaluation") return;
  const id = root.dataset.job;
  let pending = null;

  function refresh() {
    pending = pending || (async () => {
      const response = await fetch(`/jobs/${id}/summary/`, { credentials: "same-origin" }).catch(() => null);
      if (!response || !response.ok) return;
      const parsed = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = parsed.getElementById("evaluation"), here = document.getElementById("evaluation");
      if (fresh && here) here.replaceWith(document.importNode(fresh, true));
    })().finally(() => { pending = null; });
  }

  root.addEventListener("hub:message", (event) => {
    const message = event.detail;
    const status = message.type === "snapshot" ? message.data.job.status
      : message.event === "status" ? message.data.status : null;
    if (status === "ready" && document.getElementById("evaluation-pending")) refresh();
  });
})();
