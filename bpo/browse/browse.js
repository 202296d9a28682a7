// Results browser: decodes the embedded data (gzip + base64 JSON), filters, summarises and
// renders one page of rows at a time. No network: everything is in this file.
"use strict";
(function () {
  const PAGE = 50;
  const FIELDS_TEXT = ["item_id", "question_original", "question_optimized", "answer_original", "answer_optimized",
    "raw_optimized_first", "raw_original_first", "category", "language", "fallback_reason", "history_original",
    "history_optimized"];
  const FILTERS = [["testset", "test sets"], ["optimizer", "optimizers"], ["target", "targets"],
    ["outcome", "outcomes"], ["category", "categories"], ["language", "languages"],
    ["fallback_reason", "fallback reasons"], ["turn", "turns"]];
  const NONE = "(none)";
  const $ = (id) => document.getElementById(id);
  let D, S, F, rows, strLower, filtered = [], page = 0, searchHits = null;

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  const str = (i) => (i < 0 ? null : S[i]);
  const val = (r, f) => str(r[F[f]]);

  async function decode() {
    const b64 = $("bpo-data").textContent.trim();
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  // Word diff: common prefix/suffix, then LCS on the middle (bounded; past the bound the whole
  // middle is marked changed). Returns [[op, text]] with op "=", "-", "+".
  function diff(a, b) {
    const A = a.split(/(\s+)/), B = b.split(/(\s+)/);
    let p = 0;
    while (p < A.length && p < B.length && A[p] === B[p]) p++;
    let s = 0;
    while (s < A.length - p && s < B.length - p && A[A.length - 1 - s] === B[B.length - 1 - s]) s++;
    const a2 = A.slice(p, A.length - s), b2 = B.slice(p, B.length - s);
    const out = [];
    if (p) out.push(["=", A.slice(0, p).join("")]);
    const m = a2.length, n = b2.length;
    if (m * n > 400000) {
      if (m) out.push(["-", a2.join("")]);
      if (n) out.push(["+", b2.join("")]);
    } else {
      const L = Array.from({ length: m + 1 }, () => new Uint32Array(n + 1));
      for (let i = m - 1; i >= 0; i--)
        for (let j = n - 1; j >= 0; j--)
          L[i][j] = a2[i] === b2[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
      let i = 0, j = 0;
      while (i < m || j < n) {
        if (i < m && j < n && a2[i] === b2[j]) { out.push(["=", a2[i]]); i++; j++; }
        else if (j < n && (i === m || L[i][j + 1] >= L[i + 1][j])) { out.push(["+", b2[j]]); j++; }
        else { out.push(["-", a2[i]]); i++; }
      }
    }
    if (s) out.push(["=", A.slice(A.length - s).join("")]);
    return out;
  }

  function diffHtml(a, b) {
    const ops = diff(a, b);
    const side = (keep) => {
      // one marked run per change: spaces between two changed words join them
      const xs = ops.filter(([op]) => op === "=" || op === keep), runs = [];
      xs.forEach(([op, t], k) => {
        if (op === "=" && !t.trim() && k > 0 && k < xs.length - 1 && xs[k - 1][0] === keep && xs[k + 1][0] === keep) op = keep;
        const last = runs[runs.length - 1];
        if (last && last[0] === op) last[1] += t; else runs.push([op, t]);
      });
      return runs.map(([op, t]) => (op === "=" ? esc(t) : `<${op === "-" ? "del" : "ins"}>${esc(t)}</${op === "-" ? "del" : "ins"}>`)).join("");
    };
    return [side("-"), side("+")];
  }

  function selected(f) {
    const el = $("f-" + f);
    return el.value === "" ? null : el.value;
  }

  function applyFilters() {
    const want = FILTERS.map(([f]) => [F[f], selected(f)]).filter(([, v]) => v !== null);
    filtered = [];
    for (let k = 0; k < rows.length; k++) {
      const r = rows[k];
      let ok = true;
      for (const [ix, v] of want) {
        const x = r[ix] < 0 ? NONE : S[r[ix]];
        if (x !== v) { ok = false; break; }
      }
      if (ok && searchHits) {
        ok = false;
        for (const f of FIELDS_TEXT) if (r[F[f]] >= 0 && searchHits[r[F[f]]]) { ok = true; break; }
      }
      if (ok) filtered.push(r);
    }
    page = 0;
    summarise();
    render();
  }

  function search(q) {
    q = q.trim().toLowerCase();
    if (!q) { searchHits = null; return; }
    if (!strLower) strLower = S.map((s) => s.toLowerCase());
    searchHits = new Uint8Array(S.length);
    for (let i = 0; i < S.length; i++) if (strLower[i].includes(q)) searchHits[i] = 1;
  }

  const pct = (x) => (isFinite(x) ? x.toFixed(1) : "n/a");
  const signed = (x) => (isFinite(x) ? (x > 0 ? "+" : "") + x.toFixed(1) : "n/a");

  function summarise() {
    const c = { win: 0, tie: 0, lose: 0, invalid: 0 };
    let standin = 0;
    for (const r of filtered) {
      c[S[r[F.outcome]]]++;
      if (S[r[F.answer_backend]] === "standin" || S[r[F.judge_backend]] === "standin") standin++;
    }
    const n = filtered.length, valid = n - c.invalid;
    const p = (k) => (valid ? (100 * c[k]) / valid : NaN);
    const el = $("summary");
    el.dataset.n = n; el.dataset.invalid = c.invalid;
    el.dataset.win = p("win"); el.dataset.tie = p("tie"); el.dataset.lose = p("lose");
    el.dataset.deltaWr = p("win") - p("lose");
    let html = `<span class="stat"><b>${n}</b> rows</span>` +
      `<span class="stat win">win <b>${pct(p("win"))}%</b> (${c.win})</span>` +
      `<span class="stat tie">tie <b>${pct(p("tie"))}%</b> (${c.tie})</span>` +
      `<span class="stat lose">lose <b>${pct(p("lose"))}%</b> (${c.lose})</span>` +
      `<span class="stat">ΔWR <b>${signed(p("win") - p("lose"))}</b></span>` +
      `<span class="stat invalid">invalid ${c.invalid}</span>`;
    const w = officialRow();
    if (w) {
      html += `<span class="stat official" title="from winrates.parquet">report: ΔWR ${signed(w.delta_wr)} ` +
        `[${signed(w.delta_wr_low)}, ${signed(w.delta_wr_high)}]` +
        (w.lc_delta_wr != null ? `, LC ΔWR ${signed(w.lc_delta_wr)} [${signed(w.lc_delta_wr_low)}, ${signed(w.lc_delta_wr_high)}]` : "") +
        `</span>`;
    }
    if (standin) html += `<span class="stat standin">${standin} rows from the offline stand-in, not a model</span>`;
    el.innerHTML = html;
  }

  // The report's row for the current filter, when it selects exactly one of them.
  function officialRow() {
    const ts = selected("testset"), op = selected("optimizer"), tg = selected("target"), cat = selected("category");
    const tn = selected("turn") === NONE ? null : selected("turn");
    const lang = selected("language");
    if (!ts || !op || !tg || selected("outcome") || selected("fallback_reason") || searchHits || (cat && lang)) return null;
    // a multi-turn test set's report rows are per turn: one is official only when a turn is selected
    return D.winrates.find((w) => w.testset === ts && w.optimizer === op && w.target === tg &&
      (cat ? w.category === cat : w.category == null) && (lang ? w.language === lang : w.language == null) &&
      (w.turn == null ? tn === null : String(w.turn) === tn)) || null;
  }

  // The sides' names: a prompt comparison pits the answers to two prompts (one target); a model
  // comparison (the sft_data students) pits two models' answers to one prompt: B = optimizer column.
  function sides(r) {
    if (val(r, "comparison") !== "model") return { a: "original", b: "optimized", model: false };
    return { a: val(r, "target"), b: val(r, "optimizer"), model: true };
  }

  function verdictText(v, optimizedIs, s) {
    if (v == null) return "unparsed / not judged";
    if (v === "C") return "C (tie)";
    return v + (v === optimizedIs ? ` (${s.b} better)` : ` (${s.a} better)`);
  }

  function rowHtml(r) {
    const g = (f) => val(r, f);
    const [qo, qn] = diffHtml(g("question_original"), g("question_optimized"));
    const outcome = g("outcome"), fb = g("fallback_reason");
    const standinAns = g("answer_backend") === "standin", standinJudge = g("judge_backend") === "standin";
    const len = (f) => (r[F[f]] < 0 ? "—" : r[F[f]] + " words");
    const ans = (f) => (g(f) == null ? `<em class="missing">no answer (${esc(g(f.replace("answer", "status")))})</em>` : esc(g(f)));
    const badges = [`<span class="badge o-${outcome}">${outcome}</span>`];
    if (g("category")) badges.push(`<span class="badge cat">${esc(g("category"))}</span>`);
    badges.push(`<span class="badge lang">${esc(g("language"))}</span>`);
    if (fb) badges.push(`<span class="badge fallback">fallback: ${esc(fb)}</span>`);
    if (standinAns) badges.push(`<span class="badge standin">stand-in answered</span>`);
    if (standinJudge) badges.push(`<span class="badge standin">stand-in judged</span>`);
    const raw = (f) => (g(f) == null ? "<em>no judge reply</em>" : esc(g(f)));
    const s = sides(r);
    const key = s.model ? `${esc(s.b)} vs ${esc(s.a)} (same prompt)` : `${esc(g("optimizer"))} · ${esc(g("target"))}`;
    const questions = s.model
      ? `<div class="pair"><div><h4>question (both models)</h4><p class="q">${esc(g("question_original"))}</p></div></div>`
      : `<div class="pair"><div><h4>original question</h4><p class="q">${qo}</p></div>` +
        `<div><h4>optimized question</h4><p class="q">${qn}</p></div></div>`;
    const head = (side) => (s.model ? `answer of ${esc(s[side])} (${side.toUpperCase()})` : `answer to ${s[side]}`);
    return `<article class="row" data-outcome="${outcome}" data-item="${esc(g("item_id"))}" data-comparison="${esc(g("comparison"))}">` +
      `<header><span class="key">${esc(g("testset"))} · ${key} · ` +
      `<code>${esc(g("item_id"))}</code>${g("turn") ? " · turn " + esc(g("turn")) : ""}</span>${badges.join("")}</header>` +
      (g("history_original") != null || g("history_optimized") != null ?
        `<div class="pair history"><div><h4>original conversation so far</h4><pre class="conv">${esc(g("history_original") || "")}</pre></div>` +
        `<div><h4>optimized conversation so far</h4><pre class="conv">${esc(g("history_optimized") || "")}</pre></div></div>` : "") +
      questions +
      `<div class="pair"><div><h4>${head("a")} · ${len("len_original")}</h4><p class="a">${ans("answer_original")}</p></div>` +
      `<div><h4>${head("b")} · ${len("len_optimized")}</h4><p class="a">${ans("answer_optimized")}</p></div></div>` +
      `<div class="pair verdicts">` +
      `<details><summary>${esc(s.b)} first: ${verdictText(g("verdict_optimized_first"), "A", s)}</summary><pre>${raw("raw_optimized_first")}</pre></details>` +
      `<details><summary>${esc(s.a)} first: ${verdictText(g("verdict_original_first"), "B", s)}</summary><pre>${raw("raw_original_first")}</pre></details>` +
      `</div><footer>judge ${esc(g("judge_model"))}${g("protocol") ? " · " + esc(g("protocol")) : ""}</footer></article>`;
  }

  function render() {
    const pages = Math.max(1, Math.ceil(filtered.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    const slice = filtered.slice(page * PAGE, (page + 1) * PAGE);
    $("rows").innerHTML = slice.length ? slice.map(rowHtml).join("") : `<p class="empty">No rows match.</p>`;
    $("pageinfo").textContent = `page ${page + 1} of ${pages} (${filtered.length} rows)`;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }

  function fillFilters() {
    for (const [f, label] of FILTERS) {
      const values = new Set();
      for (const r of rows) values.add(r[F[f]] < 0 ? NONE : S[r[F[f]]]);
      const opts = [...values].sort();
      $("f-" + f).innerHTML = `<option value="">all ${label}</option>` +
        opts.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
    }
  }

  async function main() {
    performance.mark("bpo-start");
    try {
      D = await decode();
    } catch (e) {
      $("rows").innerHTML = `<p class="empty">Could not read the embedded data (${esc(e)}). A browser with DecompressionStream is needed.</p>`;
      return;
    }
    S = D.strings; rows = D.rows; F = {};
    D.fields.forEach((f, i) => (F[f] = i));
    performance.mark("bpo-decoded");
    fillFilters();
    for (const [f] of FILTERS) $("f-" + f).addEventListener("change", applyFilters);
    let t = null;
    $("search").addEventListener("input", (e) => {
      clearTimeout(t);
      t = setTimeout(() => { search(e.target.value); applyFilters(); }, 150);
    });
    $("prev").addEventListener("click", () => { page--; render(); window.scrollTo(0, 0); });
    $("next").addEventListener("click", () => { page++; render(); window.scrollTo(0, 0); });
    $("reset").addEventListener("click", () => {
      for (const [f] of FILTERS) $("f-" + f).value = "";
      $("search").value = ""; searchHits = null; applyFilters();
    });
    applyFilters();
    performance.mark("bpo-rendered");
    // for scripts driving the page (benchmark): search without the typing debounce
    window.bpoBrowse = { search: (q) => { $("search").value = q; search(q); applyFilters(); return filtered.length; } };
    document.body.dataset.state = "ready";
  }
  main();
})();
