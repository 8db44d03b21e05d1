// dev dashboard: keeps the server-rendered sections current and follows the
// logs of the chosen pod. No framework, no build step.
"use strict";

(function () {
  const live = document.getElementById("live");
  let index = Number(document.body.dataset.index || 0);
  let chosen = "";     // pod whose logs are shown
  let logsAbort = null;

  function setLive(cls, text) {
    live.className = "live " + cls;
    live.textContent = text;
  }

  function markChosen() {
    document.querySelectorAll(".pod").forEach(function (el) {
      el.classList.toggle("chosen", el.dataset.pod === chosen);
    });
  }

  // watch long-polls /live, which answers once the cluster state passes
  // `index` (a blocking query on the raft index), with the sections
  // rendered anew; only the sections that changed are replaced.
  async function watch() {
    for (;;) {
      try {
        const res = await fetch("/live?index=" + index + "&wait=25s", { cache: "no-store" });
        if (res.status === 401) { setLive("off", "logged out: run dev dashboard"); return; }
        if (!res.ok) throw new Error("HTTP " + res.status);
        const up = await res.json();
        index = up.index;
        document.body.dataset.index = String(index);
        for (const [name, html] of Object.entries(up.sections)) {
          const el = document.getElementById("sec-" + name);
          if (el && el.innerHTML !== html) el.innerHTML = html;
        }
        markChosen();
        setLive("on", "live");
      } catch (err) {
        setLive("off", "reconnecting…");
        await new Promise(function (r) { setTimeout(r, 2000); });
      }
    }
  }

  // follow streams the logs of a pod's container (the API's
  // logs?follow=1; the service's own when container is empty) into the panel.
  async function follow(pod, container) {
    if (logsAbort) logsAbort.abort();
    chosen = pod;
    markChosen();
    const out = document.getElementById("logs");
    document.getElementById("logs-pod").textContent = container ? pod + "/" + container : pod;
    out.textContent = "";
    const ctrl = new AbortController();
    logsAbort = ctrl;
    try {
      const which = container ? "&container=" + encodeURIComponent(container) : "";
      const res = await fetch("/api/v1/pods/" + encodeURIComponent(pod) + "/logs?follow=1&tail=200" + which,
        { signal: ctrl.signal, cache: "no-store" });
      if (!res.ok) {
        out.textContent = "logs of " + pod + ": " + (await res.text());
        return;
      }
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.textContent += dec.decode(value, { stream: true });
        if (out.textContent.length > 200000) out.textContent = out.textContent.slice(-150000);
        if (atBottom) out.scrollTop = out.scrollHeight;
      }
      out.textContent += "\n— end of logs —\n";
    } catch (err) {
      if (err.name !== "AbortError") out.textContent += "\n— logs stopped: " + err.message + " —\n";
    }
  }

  document.addEventListener("click", function (ev) {
    const el = ev.target.closest(".pod");
    const ctr = ev.target.closest(".ctr"); // one container of a pod with sidecars
    if (el && el.dataset.pod) follow(el.dataset.pod, ctr ? ctr.dataset.container : "");
  });

  setLive("", "connecting…");
  watch();
})();
