// FreshPlan cockpit: the four follow-up tiles, live from GET /api/dashboard/followup-stream.
// The bearer token comes from the URL fragment (#token=…), is kept in this tab only
// (sessionStorage) and removed from the address bar. EventSource cannot send an Authorization
// header, so the stream is read with fetch() and parsed here (SSE: event/data/id lines). The
// stream ends with `event: token-expired` when the token expires: the page then says so and stops
// (it has no way to refresh the token) instead of reconnecting with a dead one.
"use strict";
(function () {
  const KEY = "freshplan.token";
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    sessionStorage.setItem(KEY, fragment.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const token = sessionStorage.getItem(KEY);
  const integer = new Intl.NumberFormat("de-DE", { maximumFractionDigits: 0 });
  const percent = new Intl.NumberFormat("de-DE", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const clock = new Intl.DateTimeFormat("de-DE", { dateStyle: "medium", timeStyle: "medium", timeZone: "Europe/Berlin" });
  const $ = (id) => document.getElementById(id);
  const status = (text, error) => { $("status").textContent = text; $("status").classList.toggle("error", !!error); };

  let painted = false;

  function paint(f) {
    $("pendingT3").textContent = integer.format(f.pendingT3);
    $("pendingT7").textContent = integer.format(f.pendingT7);
    $("sentToday").textContent = integer.format(f.sentToday);
    $("conversionRate").textContent = percent.format(f.conversionRate) + " %";
    $("scope").textContent = f.scope;
    const at = new Date(f.generatedAt);
    $("generatedAt").dateTime = f.generatedAt;
    $("generatedAt").textContent = clock.format(at);
    document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
    if (!painted) {
      // Time to the first figures, from navigation start (read by the browser test).
      painted = true;
      performance.mark("figures-painted");
    }
  }

  let delay = 500;

  async function stream() {
    const res = await fetch("/api/dashboard/followup-stream", {
      headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" },
      cache: "no-store",
    });
    if (res.status === 401 || res.status === 403) {
      const p = await res.json().catch(() => ({}));
      status("Nicht angemeldet: " + (p.detail || res.status), true);
      return false;
    }
    if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
    status("live");
    delay = 500;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stream closed");
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (name === "followup-metrics" && data.length) paint(JSON.parse(data.join("\n")));
        if (name === "token-expired") {
          // The server ended the stream at the token's expiry; this page cannot get a new one.
          sessionStorage.removeItem(KEY);
          reader.cancel().catch(() => {});
          status("Sitzung abgelaufen: die Seite mit einem neuen #token=… öffnen", true);
          return false;
        }
      }
    }
  }

  async function run() {
    if (!token) { status("Kein Token: die Seite mit #token=… öffnen", true); return; }
    for (;;) {
      try {
        if ((await stream()) === false) return;
      } catch (e) {
        status("Verbindung unterbrochen, neuer Versuch …", true);
      }
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }
  run();
})();
