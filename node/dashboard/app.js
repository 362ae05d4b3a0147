// The AIxBlock dashboard: plain JavaScript over the node's own API. Every
// value from the network is put in the page as text, never as HTML.
"use strict";

const main = document.getElementById("main");
let stop = []; // what the current page must stop (timers, event sources)

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

// The session's key, which the sign-in page left in this origin's storage:
// every API request carries it beside the session cookie (see the node
// package's dashSessions for why).
function authHeaders() {
  return { "X-Aixblock-Request": localStorage.getItem("aixblock_key") || "" };
}

function signedOut(msg) {
  for (const f of stop) f();
  stop = [];
  main.replaceChildren(h("h1", {}, "Signed out"), h("p", { class: "error", role: "alert" }, msg),
    h("p", {}, "Run ", h("code", {}, "aixblock dashboard --open"), " on this machine to sign in again."));
}

async function api(path, opts = {}) {
  const init = { credentials: "same-origin", headers: authHeaders(), ...opts };
  if (opts.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  const r = await fetch(path, init);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const msg = (data && data.error) || `${r.status} ${r.statusText}`;
    if (r.status === 401) signedOut(msg);
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return data;
}

// units formats a base-unit decimal string with decimals, as the CLI does.
function units(base, decimals) {
  if (base === undefined || base === null) return "";
  let v = BigInt(base);
  const neg = v < 0n;
  if (neg) v = -v;
  const d = BigInt(decimals || 0);
  const scale = 10n ** d;
  let whole = (v / scale).toString();
  let frac = (v % scale).toString().padStart(Number(d), "0").replace(/0+$/, "");
  return (neg ? "-" : "") + whole + (frac ? "." + frac : "");
}

// fmtUnits makes a token-units decimal string readable: thousands
// grouped, at most maxFrac decimals (cut, marked with …). The exact value
// stays in the element's title (see amount).
function fmtUnits(s, maxFrac = 6) {
  s = String(s === undefined || s === null || s === "" ? "0" : s);
  const neg = s.startsWith("-");
  if (neg) s = s.slice(1);
  const [w, f = ""] = s.split(".");
  if (w.length >= 4) maxFrac = Math.min(maxFrac, 2); // big numbers: cents are enough
  const whole = w.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const more = f.length > maxFrac && /[1-9]/.test(f.slice(maxFrac));
  // A cut value keeps its zeros ("1,000,000.00…"): they are digits shown.
  const cut = more ? f.slice(0, maxFrac) : f.slice(0, maxFrac).replace(/0+$/, "");
  if (more && whole === "0" && !cut) return (neg ? "-" : "") + "< 0." + "0".repeat(maxFrac - 1) + "1";
  return (neg ? "-" : "") + whole + (cut ? "." + cut : "") + (more ? "…" : "");
}

// amount is a formatted token amount, its exact value in the title and its
// base units (when given) in data-base.
function amount(unitsStr, symbol, base, id) {
  const exact = String(unitsStr || "0") + (symbol ? " " + symbol : "");
  return h("span", { class: "amount", title: exact, "data-base": base, id },
    h("span", { class: "num" }, fmtUnits(unitsStr)), symbol ? " " + symbol : "");
}

function terminal(s) {
  return ["completed", "failed", "canceled", "timed_out"].includes(s);
}

function isService(j) {
  return !!(j && j.spec && j.spec.kind === "service");
}

// portsText names a service's ports: "8080 (http), 9090".
function portsText(ports) {
  return (ports || []).map((p) => String(p.port) + (p.name ? ` (${p.name})` : "")).join(", ");
}

// serviceTag marks a service in a list, with its ports.
function serviceTag(j) {
  const ports = (j.spec.ports || []).map((p) => p.port).join(", ");
  return h("span", { class: "tag", "data-service": j.id, title: ports ? "a service with ports " + portsText(j.spec.ports) : "a service" },
    "service" + (ports ? " · " + ports : ""));
}

function state(s) {
  return h("span", { class: "state s-" + String(s || "unknown") }, s || "unknown");
}

// table: a header is a label or [label, class]; a column's class is on
// its cells too ("opt": left out on narrow screens).
function table(caption, headers, rows, empty, id) {
  if (!rows.length) return h("p", { class: "muted", id }, empty || "None.");
  const cls = headers.map((x) => (Array.isArray(x) ? x[1] : undefined));
  return h("div", { class: "table-wrap", id },
    h("table", {},
      h("caption", { class: "skip" }, caption),
      h("thead", {}, h("tr", {}, headers.map((x, i) => h("th", { scope: "col", class: cls[i] }, Array.isArray(x) ? x[0] : x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { class: cls[i] }, c)))))));
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function card(k, v, id) {
  return h("div", { class: "card" }, h("div", { class: "v", id }, v), h("div", { class: "k" }, k));
}

function page(title, ...body) {
  main.replaceChildren(h("h1", {}, title), ...body);
  document.title = title + " · AIxBlock";
}

function showError(where, err) {
  where.replaceChildren(h("p", { class: "error", role: "alert" }, String(err.message || err)));
}

// events reads a server-sent event stream with fetch (EventSource cannot
// send the session's key) and calls on[event](data) for each event, until
// the stream ends or the page changes.
function events(path, on) {
  const ctl = new AbortController();
  stop.push(() => ctl.abort());
  (async () => {
    const r = await fetch(path, { credentials: "same-origin", headers: authHeaders(), signal: ctl.signal });
    if (!r.ok) {
      let msg = `${r.status} ${r.statusText}`;
      try { msg = (await r.json()).error || msg; } catch {}
      if (r.status === 401) signedOut(msg);
      throw new Error(msg);
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let ev = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) ev = line.slice(7);
          else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
        }
        if (on[ev]) on[ev](data.join("\n"));
      }
    }
  })().catch((e) => { if (e.name !== "AbortError" && on.error) on.error(e); });
}

// every runs fn now and then every ms until the page changes.
function every(ms, fn) {
  let live = true;
  const tick = async () => {
    if (!live) return;
    try { await fn(); } catch (e) { console.warn(e); }
    if (live) t = setTimeout(tick, ms);
  };
  let t = setTimeout(tick, 0);
  stop.push(() => { live = false; clearTimeout(t); });
}

function short(id, n = 12) {
  id = String(id || "");
  return id.length > n + 3 ? id.slice(0, n) + "…" : id;
}

function duration(s) {
  s = Math.round(s);
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + "d " : "") + (d || hh ? hh + "h " : "") + m + "m " + (s % 60) + "s";
}

// --- pages ---

const pages = {
  async node() {
    const body = h("div");
    page("Node", body);
    every(2000, async () => {
      const [st, id, peers, list] = await Promise.all([api("/v1/status"), api("/v1/id"), api("/v1/peers"), api("/v1/jobs")]);
      const gpus = Object.values(st.gpus || {}).reduce((a, b) => a + b, 0);
      const byState = {};
      for (const j of list) if (!j.group_of) byState[j.state] = (byState[j.state] || 0) + 1;
      const busy = new Set(list.filter((j) => !terminal(j.state) && !j.provider).flatMap((j) => j.gpus || []));
      const jobStates = Object.entries(byState).sort((a, b) => b[1] - a[1]);
      body.replaceChildren(
        h("div", { class: "cards" },
          card("peers", st.peers, "node-peers"), card("DHT peers", st.dht_peers),
          card("uptime", duration(st.uptime_s)), card("network", st.network)),
        h("h2", {}, "GPUs"),
        h("div", { class: "cards" },
          card("GPUs", gpus ? `${st.gpus.healthy || 0} healthy of ${gpus}` : "none (CPU only)", "node-gpus"),
          card("in use by jobs", gpus ? `${busy.size} of ${gpus}` : "–", "node-gpus-busy"),
          card("unhealthy", String(st.gpus.unhealthy || 0)), card("source", st.gpu_source || "none")),
        h("h2", {}, "Jobs"),
        h("div", { class: "cards", id: "node-jobs" },
          jobStates.length ? jobStates.map(([s, k]) => card(s, String(k), "node-jobs-" + s)) : card("jobs", "none yet")),
        h("h2", {}, "Identity"),
        kv([["Peer ID", h("span", { class: "mono", id: "node-peer-id" }, id.peer_id)],
            ["Version", id.version], ["Wallet", h("span", { class: "mono" }, id.wallet)],
            ["Gateway", id.gateway || "off"],
            ["Addresses", h("ul", {}, id.addrs.map((a) => h("li", { class: "mono" }, a)))]]),
        h("h2", {}, "Connected peers"),
        table("Connected peers", ["Peer", "Address", "Direction", "Latency"],
          peers.map((p) => [h("span", { class: "mono" }, short(p.peer_id, 20)), h("span", { class: "mono" }, p.addr),
            p.direction, p.latency_ms ? p.latency_ms + " ms" : ""]), "No peers connected."));
    });
  },

  async gpus() {
    const body = h("div");
    page("GPUs", body);
    every(1000, async () => {
      const [inv, list] = await Promise.all([api("/v1/gpus"), api("/v1/jobs").catch(() => [])]);
      // The jobs this node runs (its own and the market's) name their GPUs.
      const usedBy = new Map();
      for (const j of list) {
        if (terminal(j.state) || j.provider) continue;
        for (const u of j.gpus || []) usedBy.set(u, j);
      }
      const count = (s) => inv.gpus.filter((g) => g.health === s).length;
      body.replaceChildren(
        h("div", { class: "cards" },
          card("GPUs", inv.gpus.length), card("healthy", count("healthy"), "gpus-healthy"),
          card("degraded", count("degraded")), card("unhealthy", count("unhealthy"), "gpus-unhealthy"),
          card("in use", inv.gpus.filter((g) => usedBy.has(g.uuid)).length, "gpus-in-use")),
        kv([["Source", inv.source], ["Driver", inv.driver_version || "–"], ["CUDA", inv.cuda_version || "–"],
            ["Host", `${inv.host.cpu_cores} cores, ${Math.round(inv.host.memory_mib / 1024)} GiB, ${inv.host.cpu_model}`]]),
        inv.reason ? h("p", { class: "muted" }, inv.reason) : "",
        h("h2", {}, "Inventory"),
        table("GPUs", ["#", "Name", "Class", "Memory", "Health", "In use", "Reason", "UUID"],
          inv.gpus.map((g) => {
            const j = usedBy.get(g.uuid);
            return [String(g.index), g.name, g.class, Math.round(g.memory_mib / 1024) + " GiB", state(g.health),
              j ? h("span", { "data-gpu-job": j.id }, "in use by job ", h("a", { href: "#/jobs/" + encodeURIComponent(j.id), class: "mono" }, short(j.id, 16)))
                : h("span", { class: "muted" }, "free"),
              g.reason || "", h("span", { class: "mono" }, g.uuid)];
          }),
          "No GPUs: this node offers CPU only.", "gpus-table"));
    });
  },

  async market() {
    const body = h("div");
    page("Market", body);
    const w = await api("/v1/wallet").catch(() => null);
    // A deal's price is in base units of its token: shown in units when the
    // token is the wallet's (the node's own), else in base units, named so.
    const price = (base, token) => w && token && token.toLowerCase() === String(w.token).toLowerCase()
      ? amount(units(base, w.token_decimals), w.token_symbol, base)
      : h("span", { "data-base": base }, `${base} base units of ${short(token, 10)}`);
    // A provider's view from receipts: outcomes counted, distinct payers,
    // the evidence by trust, and what the escrow paid (as the CLI shows it).
    const receiptsText = (r) => {
      if (!r) return "-";
      const e = r.evidence || {};
      const untrusted = (e.beyond || 0) + (e.stranger || 0) + (e.provider_only || 0);
      let s = `${r.completed || 0} completed (${r.verified || 0} verified), ${r.failed || 0} failed, ${r.outvoted || 0} outvoted; ` +
        `${r.distinct_payers || 0} payers; evidence ${e.own || 0} own, ${e.dealt || 0} dealt, ${untrusted} untrusted`;
      if (r.on_chain) s += r.on_chain.error ? "; on chain: unknown" : `; on chain ${r.on_chain.distinct_payers || 0} payers`;
      return s;
    };
    every(3000, async () => {
      const [prov, deals] = await Promise.all([api("/v1/market/providers"), api("/v1/market/deals")]);
      body.replaceChildren(
        h("h2", {}, "Providers found"),
        table("Providers", ["Provider", "GPUs free / total", "Price per GPU-hour", "Health", "Jobs done / failed", "Proof of GPU", "Receipts"],
          prov.providers.map((p) => [h("span", { class: "mono" }, short(p.peer_id, 20)),
            p.gpus.map((g) => `${g.class} ${g.free}/${g.total}`).join(", ") || "CPU",
            p.price.map((x) => `${fmtUnits(x.per_gpu_hour_units)} ${x.symbol}`).join(", "),
            p.health, `${p.reputation.completed || 0} / ${p.reputation.failed || 0}`,
            (p.proof && p.proof.text) || "unverified", receiptsText(p.receipts)]),
          "No providers found yet."),
        h("h2", {}, "Deals this node provides"),
        table("Deals", ["Deal", "Requester", "GPUs", "Price per GPU-hour", "Max duration"],
          (deals || []).map((d) => [h("span", { class: "mono" }, short(d.deal_id)), h("span", { class: "mono" }, short(d.requester, 20)),
            `${d.gpus.length} × ${d.gpu_class}`, price(d.price, d.token), duration(d.max_duration_s)]), "No deals."));
    });
  },

  async jobs() {
    const body = h("div");
    page("Jobs", h("p", {}, h("a", { href: "#/submit" }, "Submit a job")), body);
    every(1500, async () => {
      const list = await api("/v1/jobs");
      // Newest first, but a rank stays right under its job (the API's order).
      if (!list.some((j) => j.group_of)) list.sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
      body.replaceChildren(table("Jobs", ["Job", "State", ["Name", "opt"], ["Image", "opt"], ["Provider", "opt"], ["Created", "opt"]],
        list.map((j) => [
          h("span", {}, j.group_of ? h("span", { class: "muted" }, "↳ rank " + j.rank + " ") : "",
            h("a", { href: "#/jobs/" + encodeURIComponent(j.group_of || j.id), class: "mono" }, j.id),
            isService(j) ? [" ", serviceTag(j)] : ""),
          state(j.state),
          j.spec.name || "", h("span", { class: "mono" }, j.spec.image),
          j.provider ? h("span", { class: "mono" }, short(j.provider, 16)) : "this node",
          new Date(j.created_at).toLocaleString()]), "No jobs yet.", "jobs-table"));
    });
  },

  async job(id) {
    const info = h("div");
    const money = h("div", { id: "job-money" });
    const service = h("section", { id: "job-service", "aria-labelledby": "job-service-title", hidden: true });
    const actions = h("div", { class: "actions" });
    const ranks = h("div", { id: "job-ranks" });
    const logs = h("pre", { class: "logs", id: "job-logs", "aria-label": "Logs", tabindex: "0" });
    page("Job " + id, actions, info, service, money, h("h2", {}, "Logs"), ranks, logs);
    let gateway = "";
    api("/v1/id").then((x) => { gateway = x.gateway || ""; }).catch(() => {});
    let job = null;
    let selected = null; // the rank whose logs show; null: all
    const seenRanks = new Set();

    // Elapsed time ticks between state events.
    const elapsed = h("span", { id: "job-elapsed" });
    const tickElapsed = () => {
      if (!job) return;
      const start = job.started_at ? new Date(job.started_at) : null;
      const end = job.finished_at ? new Date(job.finished_at) : new Date();
      elapsed.textContent = start ? duration(Math.max(0, (end - start) / 1000)) + (job.finished_at ? "" : " (running)")
        : "not started (waiting " + duration(Math.max(0, (Date.now() - new Date(job.created_at)) / 1000)) + ")";
    };
    const tick = setInterval(tickElapsed, 1000);
    stop.push(() => clearInterval(tick));

    let armed = null;
    const cancel = h("button", { type: "button", id: "job-cancel", class: "danger" }, "Cancel job");
    const cancelMsg = h("span", { id: "job-cancel-result", role: "status" });
    cancel.addEventListener("click", async () => {
      // Two clicks: a job that pays by the second should not end by a slip.
      if (!armed) {
        cancel.textContent = "Click again to cancel";
        armed = setTimeout(() => { armed = null; cancel.textContent = "Cancel job"; }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      cancel.disabled = true;
      cancelMsg.textContent = "Canceling…";
      try {
        await api("/v1/jobs/" + encodeURIComponent(id) + "/cancel", { method: "POST", body: {} });
        cancelMsg.textContent = "Canceled: the container is stopped; you pay only for the time it ran.";
      } catch (e) {
        cancelMsg.textContent = "";
        showError(cancelMsg, e);
        cancel.disabled = false;
      }
      cancel.textContent = "Cancel job";
    });
    actions.replaceChildren(cancel, " ", cancelMsg);

    const drawRanks = () => {
      if (seenRanks.size < 2) { ranks.replaceChildren(); return; }
      const btn = (r, label) => h("button", { type: "button", class: "toggle", "aria-pressed": String(selected === r),
        "data-rank": r === null ? "all" : r, onclick: () => { selected = r; filter(); drawRanks(); } }, label);
      ranks.replaceChildren(h("div", { class: "toggles", role: "group", "aria-label": "Show the logs of" },
        btn(null, "all ranks"), [...seenRanks].sort((a, b) => a - b).map((r) => btn(String(r), "rank " + r))));
    };
    const filter = () => {
      for (const el of logs.children) el.hidden = selected !== null && el.dataset.rank !== selected;
    };

    const onState = (data) => {
      job = JSON.parse(data);
      const j = job;
      cancel.hidden = terminal(j.state);
      const pairs = [["State", h("span", { id: "job-state" }, state(j.state))], ["Reason", j.reason || "–"],
        ["Image", h("span", { class: "mono" }, j.spec.image)], ["Provider", j.provider ? h("span", { class: "mono" }, j.provider) : "this node"],
        ["Created", new Date(j.created_at).toLocaleString()], ["Elapsed", elapsed]];
      if (j.spec.distributed) pairs.push(["Distributed", `${j.spec.distributed.nodes} nodes × ${j.spec.distributed.procs_per_node || 1}`]);
      if (j.progress) pairs.push(["Progress", j.progress]);
      if (j.exit_code !== undefined) pairs.push(["Exit code", String(j.exit_code)]);
      if (j.result_cid) {
        const link = gateway ? h("a", { href: `${gateway}/ipfs/${j.result_cid}?format=car`, download: j.result_cid + ".car" }, "download (CAR, through the gateway)") : "";
        pairs.push(["Result", h("span", {}, h("span", { class: "mono", id: "job-result" }, j.result_cid), " ", link)]);
      }
      info.replaceChildren(kv(pairs));
      tickElapsed();
      drawService();
      if (isService(j)) readForwards(); // with the job: a state change may open or close them
    };
    const onLog = (data) => {
      const m = /^\[rank (\d+)\] /.exec(data);
      if (m && !seenRanks.has(Number(m[1]))) {
        seenRanks.add(Number(m[1]));
        drawRanks();
      }
      const line = h("div", { "data-rank": m ? m[1] : "" }, data);
      if (selected !== null && line.dataset.rank !== selected) line.hidden = true;
      logs.append(line);
      logs.scrollTop = logs.scrollHeight;
    };
    // A service: its ports, readiness and restarts (from the job), and the
    // forwards of its ports to this machine (read on every tick while it
    // runs: their connection counts change without the job changing).
    let forwards = null; // null: not read yet
    let forwardsErr = "";
    let drawn = "";
    const readyCheck = (j) => {
      const r = j.spec.ready;
      if (!r) return "none: ready once started";
      const port = r.port || ((j.spec.ports || [])[0] || {}).port;
      return (r.http ? `HTTP GET ${r.http}` : "TCP connect") + ` on port ${port}` + (r.interval ? `, every ${r.interval}` : "");
    };
    const maxRestarts = (s) => !s.restart ? 3 : s.restart.policy === "never" ? 0 : (s.restart.max || 3);
    const drawService = () => {
      const j = job;
      if (!isService(j)) { service.hidden = true; return; }
      const sig = JSON.stringify([j.state, j.ready, j.reason, j.progress, j.restarts, forwards, forwardsErr]);
      if (sig === drawn) return; // unchanged: keep focus and the screen reader's place
      drawn = sig;
      service.hidden = false;
      const why = j.reason || j.progress || "";
      let ready;
      if (terminal(j.state)) ready = h("span", { class: "muted", id: "job-ready", "data-ready": "false" }, "not serving: the job has ended");
      else if (j.state === "running" && j.ready) ready = h("span", { class: "ready", id: "job-ready", "data-ready": "true" }, "✓ ready");
      else ready = h("span", { class: "not-ready", id: "job-ready", "data-ready": "false" }, "not ready" + (why ? ": " + why : ""));
      const max = maxRestarts(j.spec);
      const fw = forwards || [];
      let fwView;
      if (forwardsErr) fwView = h("p", { class: "error", role: "alert", id: "job-forwards" }, forwardsErr);
      else if (forwards === null) fwView = h("p", { class: "muted", id: "job-forwards" }, "Reading the forwards…");
      else if (!fw.length) {
        fwView = h("p", { class: "muted", id: "job-forwards" }, terminal(j.state)
          ? "None: a forward closes when its job ends."
          : ["None on this machine. Publish a port here with ", h("code", {}, `aixblock job forward ${j.id} [HOST:]LOCAL:PORT`),
            " (or ", h("code", {}, "job run -p"), ")."]);
      } else {
        fwView = table("Forwards of this service's ports to this machine",
          ["Local address", "Port", "Connections accepted", "Open now", ["Failed", "opt"], "Last error", ["Since", "opt"]],
          fw.map((f) => {
            // An address on every interface is reached here on loopback.
            const host = f.local.replace(/^0\.0\.0\.0:/, "127.0.0.1:").replace(/^\[::\]:/, "[::1]:");
            return [
              h("a", { href: "http://" + host + "/", target: "_blank", rel: "noopener noreferrer", class: "mono", "data-local": f.local, "data-port": f.port },
                f.local, h("span", { class: "skip" }, " (opens in a new tab)")),
              String(f.port), String(f.accepted || 0), String(f.open || 0), String(f.failed || 0),
              f.last_error ? h("span", { class: "error-text" }, f.last_error) : h("span", { class: "muted" }, "none"),
              f.since ? new Date(f.since).toLocaleString() : ""];
          }), "", "job-forwards");
      }
      service.replaceChildren(h("h2", { id: "job-service-title" }, "Service"),
        kv([["Ports", h("span", { id: "job-ports" }, (j.spec.ports || []).length
              ? (j.spec.ports || []).flatMap((p, i) => [i ? ", " : "", h("span", { class: "port", "data-port": p.port }, String(p.port)),
                  p.name ? ` (${p.name})` : ""])
              : "none declared")],
            ["Readiness", ready],
            ["Readiness check", readyCheck(j)],
            ["Restarts", h("span", { id: "job-restarts" }, `${j.restarts || 0} of at most ${max}` + (max ? "" : " (restart: never)"))]]),
        h("h3", {}, "Forwards"), fwView);
    };
    let forwardsDone = false, reading = false;
    const readForwards = async () => {
      if (!isService(job) || forwardsDone || reading) return;
      reading = true;
      const end = terminal(job.state); // one last read after the end: they are closed
      try {
        forwards = await api("/v1/jobs/" + encodeURIComponent(id) + "/forwards") || [];
        forwardsErr = "";
        if (end) forwardsDone = true;
      } catch (e) {
        if (e.status === 401) return;
        forwardsErr = "Forwards: " + (e.message || e);
      } finally {
        reading = false;
      }
      drawService();
    };
    every(2000, readForwards);

    events("/v1/jobs/" + encodeURIComponent(id) + "/events", { state: onState, log: onLog,
      error: (e) => showError(info, e) });

    // What the job costs: only a job through the market has a price.
    let local = false;
    every(2000, async () => {
      if (local) return;
      let c;
      try {
        c = await api("/v1/jobs/" + encodeURIComponent(id) + "/cost");
      } catch (e) {
        if (e.status !== 404) throw e; // try again on the next tick
        local = true;
        money.replaceChildren(h("p", { class: "muted", id: "job-cost-none" }, "No price: this job runs on this node, not through the market."));
        return;
      }
      if (c.ranks.every((r) => !r.provider)) {
        money.replaceChildren(h("h2", {}, "Cost"), h("p", { class: "muted", id: "job-cost-queued" }, "No deal yet: the job waits for a provider, and costs nothing until one runs it."));
        return;
      }
      for (const r of c.ranks) if (c.ranks.length > 1) seenRanks.add(r.rank);
      drawRanks();
      const a = (u, base, id) => amount(u, c.symbol, base, id);
      const gpus = c.ranks.reduce((s, r) => s + r.gpus, 0);
      const prices = [...new Set(c.ranks.map((r) => r.price_units))];
      money.replaceChildren(h("h2", {}, "Cost"),
        kv([["Price", h("span", { id: "job-price" }, prices.map((p) => fmtUnits(p)).join(" / ") + " " + c.symbol + " per GPU-hour" +
              (gpus ? ` × ${gpus} GPU${gpus === 1 ? "" : "s"}` : " (CPU only: billed as one GPU)"))],
            ["Cost so far", a(c.cost_units, c.cost, "job-cost")],
            ["Paid (vouched)", a(c.paid_units, c.paid, "job-paid")],
            ["At most", a(c.max_cost_units, c.max_cost, "job-max-cost")]]),
        c.ranks.length > 1 ? h("h2", {}, "Ranks") : "",
        c.ranks.length > 1 ? table("Ranks", ["Rank", "Provider", "State", "Job", "Cost so far"],
          c.ranks.map((r) => [String(r.rank), h("span", { class: "mono", "data-rank-provider": r.rank }, r.provider),
            state(r.state), h("span", { class: "mono" }, r.job_id), a(r.cost_units, r.cost)]), "", "job-ranks-table") : "");
    });
  },

  async submit() {
    const out = h("div", { id: "submit-result", role: "status" });
    const field = (id, label, attrs, hint) => [
      h("label", { for: id }, label), h("input", { id, name: id, ...attrs }),
      hint ? h("p", { class: "hint", id: id + "-hint" }, hint) : null];
    const form = h("form", { class: "grid", novalidate: true },
      field("image", "Image", { required: true, placeholder: "registry/name:tag or ipfs://CID", "aria-describedby": "image-hint" }, "The container image the job runs."),
      field("command", "Command", { placeholder: "echo hello" }, "Arguments to the image's entrypoint, separated by spaces (as after IMAGE in docker run)."),
      field("gpus", "GPUs", { type: "number", min: "0", value: "1", inputmode: "numeric" }),
      field("gpu_class", "GPU class", { placeholder: "any, or e.g. nvidia-h100-80gb" }),
      field("inputs", "Inputs", { placeholder: "CID:/inputs/data, CID2:/inputs/more" }, "Content by CID, each mounted read-only at a path under /inputs."),
      field("max_price", "Max price", { placeholder: "2.5", inputmode: "decimal" }, "Per GPU-hour, in whole units of the node's token."),
      h("span"), h("button", { type: "submit" }, "Submit"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const v = (k) => form.elements[k].value.trim();
      const spec = { name: "dashboard", image: v("image"), resources: {} };
      if (v("command")) spec.args = v("command").split(/\s+/);
      if (v("gpus") !== "") spec.resources.gpus = Number(v("gpus"));
      if (v("gpu_class")) spec.resources.gpu_class = v("gpu_class");
      if (v("max_price")) spec.max_price = v("max_price");
      if (v("inputs")) {
        spec.inputs = v("inputs").split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
          const i = s.indexOf(":");
          return i < 0 ? { cid: s, path: "" } : { cid: s.slice(0, i), path: s.slice(i + 1) };
        });
      }
      out.replaceChildren(h("p", {}, "Submitting…"));
      try {
        const j = await api("/v1/jobs", { method: "POST", body: { spec, local: false } });
        out.replaceChildren(h("p", {}, "Submitted ", h("a", { href: "#/jobs/" + j.id, id: "submitted-job" }, j.id)));
        location.hash = "#/jobs/" + j.id;
      } catch (err) {
        showError(out, err);
      }
    });
    page("Submit a job", form, out);
  },

  async wallet() {
    const body = h("div");
    page("Wallet", body);
    every(3000, async () => {
      const [w, chs, earn, spend] = await Promise.all([api("/v1/wallet"), api("/v1/wallet/channels"),
        api("/v1/wallet/earnings"), api("/v1/wallet/spending").catch(() => ({ jobs: [] }))]);
      // Per token: what payer channels vouched (spent), what payee channels
      // hold vouched but not yet redeemed.
      const sums = (role, f) => {
        const m = new Map();
        for (const c of chs.channels.filter((c) => c.role === role)) {
          const k = c.symbol;
          const v = f(c);
          const cur = m.get(k) || { v: 0n, d: c.decimals };
          cur.v += v;
          m.set(k, cur);
        }
        return [...m].map(([sym, { v, d }]) => fmtUnits(units(v.toString(), d)) + " " + sym).join(", ") || "0";
      };
      const unredeemed = (c) => {
        const v = BigInt(c.vouched || 0) - BigInt(c.redeemed || 0);
        return v > 0n ? v : 0n;
      };
      body.replaceChildren(
        h("div", { class: "cards" },
          card(w.token_symbol + " balance", amount(w.token_balance_units, w.token_symbol, w.token_balance), "wallet-token-balance"),
          card("native balance", amount(w.native_balance_units, "", w.native_balance)),
          card("spent (vouched to providers)", sums("payer", (c) => BigInt(c.vouched || 0)), "wallet-spent"),
          card("earned, not yet redeemed", sums("payee", unredeemed), "wallet-unredeemed")),
        kv([["Address", h("span", { class: "mono", id: "wallet-address" }, w.address)], ["Chain", `${w.chain_id} (${w.rpc})`],
            ["Escrow", h("span", { class: "mono" }, w.escrow)]]),
        h("h2", {}, "Channels"),
        table("Channels", ["Channel", "Role", "Counterparty", "Deposited", "Vouched", "Redeemed", "Unredeemed", "Withdrawable"],
          chs.channels.map((c) => {
            const u = (x) => amount(units(x, c.decimals), c.symbol, x);
            const un = unredeemed(c).toString();
            return [h("span", { class: "mono", "data-channel": c.channel }, short(c.channel, 14)), c.role,
              h("span", { class: "mono" }, short(c.role === "payer" ? c.payee : c.payer, 14)),
              u(c.deposited), u(c.vouched), u(c.redeemed),
              h("span", { "data-unredeemed": un }, fmtUnits(units(un, c.decimals)) + " " + c.symbol), u(c.withdrawable)];
          }), "No channels yet.", "channels"),
        h("h2", {}, "Spending: jobs through the market"),
        table("Spending", ["Job", "Name", "State", "Providers", "Cost", "Paid"],
          spend.jobs.map((j) => [h("a", { href: "#/jobs/" + encodeURIComponent(j.job_id), class: "mono" }, j.job_id), j.name || "",
            state(j.state), String(j.providers), amount(j.cost_units, j.symbol), amount(j.paid_units, j.symbol)]),
          "This node has sent no jobs to the market.", "spending"),
        h("h2", {}, "Earnings over time"),
        chart(earn.earnings));
    });
  },

  async testnet() {
    const body = h("div");
    page("Testnet", body);
    every(3000, async () => {
      const t = await api("/v1/testnet");
      body.replaceChildren(kv([["Directory", h("span", { class: "mono" }, t.dir)]]),
        table("Testnet nodes", ["Node", "Peer", "GPUs", "Up", "Dashboard"],
          t.nodes.map((n) => [n.name + (n.self ? " (this node)" : ""), h("span", { class: "mono" }, short(n.peer_id, 20)),
            n.gpus, n.up ? "yes" : "no",
            n.can_login ? h("button", { type: "button", class: "link", onclick: () => openNode(n.name) }, "open") : "–"])));
    });
  },
};

// openNode signs this browser in to another node of the testnet: this
// node asks that one for a one-time login link (with its token, from its
// repo) and the browser follows it.
async function openNode(name) {
  try {
    const l = await api("/v1/testnet/login", { method: "POST", body: { name } });
    location.assign(l.url);
  } catch (e) {
    showError(main, e);
  }
}

// chart draws cumulative earnings per token over time as an SVG line chart
// with a time axis and an amount axis.
function chart(earnings) {
  if (!earnings.length) return h("p", { class: "muted", id: "earnings-empty" }, "Nothing earned yet.");
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const W = 640, H = 240, L = 78, R = 16, T = 14, B = 44;
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img", id: "earnings-chart" });
  const byToken = new Map();
  for (const e of earnings) {
    const k = e.symbol || e.token;
    if (!byToken.has(k)) byToken.set(k, []);
    byToken.get(k).push(e);
  }
  const times = earnings.map((e) => new Date(e.time).getTime());
  let t0 = Math.min(...times), t1 = Math.max(...times);
  if (t1 - t0 < 60000) { t0 -= 30000; t1 += 30000; } // one payment: a minute around it
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const colors = ["#0b57d0", "#0a6b2b", "#b3261e", "#8a5a00"];
  const labels = [];
  // The amount axis is the first token's (one token is the common case).
  let i = 0;
  for (const [sym, es] of byToken) {
    let sum = 0n;
    const pts = es.map((e) => { sum += BigInt(e.amount); return [new Date(e.time).getTime(), sum]; });
    const dec = es[0].decimals;
    const max = Number(sum) || 1;
    const y = (v) => T + (1 - Number(v) / max) * (H - T - B);
    if (i === 0) {
      for (const f of [0, 0.5, 1]) {
        const yy = y(max * f);
        svg.append(el("line", { x1: L, x2: W - R, y1: yy, y2: yy, class: "grid" }),
          el("text", { x: L - 6, y: yy + 4, "text-anchor": "end", class: "tick" },
            fmtUnits(units(BigInt(Math.round(max * f)).toString(), dec))));
      }
      svg.append(el("text", { x: 12, y: T + (H - T - B) / 2, transform: `rotate(-90 12 ${T + (H - T - B) / 2})`, "text-anchor": "middle", class: "axis-title" }, "earned, " + sym));
    }
    const d = [[t0, 0n], ...pts.flatMap(([t, v], k) => [[t, k ? pts[k - 1][1] : 0n], [t, v]]), [t1, sum]]
      .map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`);
    svg.append(el("polyline", { points: d.join(" "), fill: "none", stroke: colors[i++ % colors.length], "stroke-width": "2.5" }));
    labels.push(`${fmtUnits(units(sum.toString(), dec))} ${sym}`);
  }
  // The time axis: start, middle and end, as dates when it spans days.
  const span = t1 - t0;
  const fmt = (t) => span > 36 * 3600e3 ? new Date(t).toLocaleDateString() : new Date(t).toLocaleTimeString();
  svg.append(el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }),
    el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  for (const [f, anchor] of [[0, "start"], [0.5, "middle"], [1, "end"]]) {
    const t = t0 + f * span;
    svg.append(el("line", { x1: x(t), x2: x(t), y1: H - B, y2: H - B + 5, class: "axis" }),
      el("text", { x: x(t), y: H - B + 18, "text-anchor": anchor, class: "tick" }, fmt(t)));
  }
  svg.append(el("text", { x: L + (W - L - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis-title" },
    "time (" + duration(span / 1000) + " shown)"));
  const total = "Total earned: " + labels.join(", ");
  svg.setAttribute("aria-label", total + ", cumulative over time");
  return h("figure", {}, svg, h("figcaption", { id: "earnings-total" }, total));
}

function route() {
  for (const f of stop) f();
  stop = [];
  const parts = (location.hash || "#/node").slice(2).split("/");
  const name = parts[0] || "node";
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === "#/" + name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (name === "jobs" && parts[1]) pages.job(decodeURIComponent(parts[1]));
    else (pages[name] || pages.node)();
  } catch (e) {
    showError(main, e);
  }
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);
document.getElementById("sign-out").addEventListener("click", async () => {
  try { await api("/v1/dashboard/logout", { method: "POST", body: {} }); } catch {}
  localStorage.removeItem("aixblock_key");
  signedOut("You signed out.");
});
api("/v1/id").then((id) => { document.getElementById("brand-peer").textContent = short(id.peer_id, 16); }).catch(() => {});
api("/v1/testnet").then(() => { document.getElementById("nav-testnet").hidden = false; }).catch(() => {});
route();
