// Playground: the proxy's own API, called like any client (the key stays in this page's memory).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);

  async function call(path, body) {
    const headers = { "content-type": "application/json" };
    const key = $("key").value.trim();
    if (key) headers.authorization = "Bearer " + key;
    const resp = await fetch(path, { method: "POST", headers, body: JSON.stringify(body), credentials: "omit" });
    let data = null;
    try { data = await resp.json(); } catch (e) { /* not JSON: reported below */ }
    if (!resp.ok) {
      const msg = data && data.error ? data.error.message : resp.statusText;
      throw new Error(`${path}: HTTP ${resp.status}: ${msg}`);
    }
    return data;
  }

  function show(id, text, cls) {
    const el = $(id);
    el.textContent = text;
    el.className = cls || "";
  }

  function answerText(data) {
    const c = data && data.choices && data.choices[0];
    return c && c.message ? String(c.message.content) : JSON.stringify(data);
  }

  async function go(ev) {
    ev.preventDefault();
    const prompt = $("prompt").value;
    $("go").disabled = true;
    show("error", "");
    for (const id of ["rewrite", "status", "answer-original", "answer-rewrite"]) show(id, "");
    try {
      const r = await call("/v1/rewrite", { prompt });
      show("rewrite", r.prompt);
      show("status", r.rewrite + (r.fallback_reason ? ` (fallback: ${r.fallback_reason})` : "") + (r.cached ? ", cached" : ""));
      if ($("answers").checked) {
        $("answers-box").hidden = false;
        show("answer-original", "…"); show("answer-rewrite", "…");
        const model = $("model").value.trim();
        const messages = [{ role: "user", content: prompt }];
        // The original goes out as typed (rewrite opt-out); the second call lets the proxy rewrite.
        const [orig, rewritten] = await Promise.allSettled([
          call("/v1/chat/completions", { model, messages, bpo: { rewrite: false } }),
          call("/v1/chat/completions", { model, messages }),
        ]);
        show("answer-original", orig.status === "fulfilled" ? answerText(orig.value) : String(orig.reason.message),
             orig.status === "fulfilled" ? "" : "error");
        show("answer-rewrite", rewritten.status === "fulfilled" ? answerText(rewritten.value) : String(rewritten.reason.message),
             rewritten.status === "fulfilled" ? "" : "error");
      } else {
        $("answers-box").hidden = true;
      }
    } catch (e) {
      show("error", String(e.message || e), "error");
    } finally {
      $("go").disabled = false;
      document.body.dataset.state = "done";
    }
  }

  $("form").addEventListener("submit", go);
  document.body.dataset.state = "ready";
})();
