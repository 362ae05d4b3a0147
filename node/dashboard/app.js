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
    throw new Error(msg);
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

function state(s) {
  return h("span", { class: "state s-" + String(s || "unknown") }, s || "unknown");
}

function table(caption, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty || "None.");
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", { class: "skip" }, caption),
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
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
      const [st, id, peers] = await Promise.all([api("/v1/status"), api("/v1/id"), api("/v1/peers")]);
      body.replaceChildren(
        h("div", { class: "cards" },
          card("peers", st.peers, "node-peers"), card("DHT peers", st.dht_peers),
          card("uptime", duration(st.uptime_s)), card("network", st.network)),
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
      const inv = await api("/v1/gpus");
      const count = (s) => inv.gpus.filter((g) => g.health === s).length;
      body.replaceChildren(
        h("div", { class: "cards" },
          card("GPUs", inv.gpus.length), card("healthy", count("healthy"), "gpus-healthy"),
          card("degraded", count("degraded")), card("unhealthy", count("unhealthy"), "gpus-unhealthy")),
        kv([["Source", inv.source], ["Driver", inv.driver_version || "–"], ["CUDA", inv.cuda_version || "–"],
            ["Host", `${inv.host.cpu_cores} cores, ${Math.round(inv.host.memory_mib / 1024)} GiB, ${inv.host.cpu_model}`]]),
        inv.reason ? h("p", { class: "muted" }, inv.reason) : "",
        h("h2", {}, "Inventory"),
        table("GPUs", ["#", "Name", "Class", "Memory", "Health", "Reason", "UUID"],
          inv.gpus.map((g) => [String(g.index), g.name, g.class, Math.round(g.memory_mib / 1024) + " GiB",
            state(g.health), g.reason || "", h("span", { class: "mono" }, g.uuid)]),
          "No GPUs: this node offers CPU only."));
    });
  },

  async market() {
    const body = h("div");
    page("Market", body);
    every(3000, async () => {
      const [prov, deals] = await Promise.all([api("/v1/market/providers"), api("/v1/market/deals")]);
      body.replaceChildren(
        h("h2", {}, "Providers found"),
        table("Providers", ["Provider", "GPUs free / total", "Price per GPU-hour", "Health", "Jobs done / failed"],
          prov.providers.map((p) => [h("span", { class: "mono" }, short(p.peer_id, 20)),
            p.gpus.map((g) => `${g.class} ${g.free}/${g.total}`).join(", ") || "CPU",
            p.price.map((x) => `${x.per_gpu_hour_units} ${x.symbol}`).join(", "),
            p.health, `${p.reputation.completed || 0} / ${p.reputation.failed || 0}`]),
          "No providers found yet."),
        h("h2", {}, "Deals this node provides"),
        table("Deals", ["Deal", "Requester", "GPUs", "Price (base units)", "Max duration"],
          (deals || []).map((d) => [h("span", { class: "mono" }, short(d.deal_id)), h("span", { class: "mono" }, short(d.requester, 20)),
            `${d.gpus.length} × ${d.gpu_class}`, d.price, d.max_duration_s + " s"]), "No deals."));
    });
  },

  async jobs() {
    const body = h("div");
    page("Jobs", h("p", {}, h("a", { href: "#/submit" }, "Submit a job")), body);
    every(1500, async () => {
      const list = await api("/v1/jobs");
      list.sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
      body.replaceChildren(table("Jobs", ["Job", "Name", "Image", "State", "Provider", "Created"],
        list.map((j) => [h("a", { href: "#/jobs/" + encodeURIComponent(j.id), class: "mono" }, j.id),
          j.spec.name || "", h("span", { class: "mono" }, j.spec.image), state(j.state),
          j.provider ? h("span", { class: "mono" }, short(j.provider, 16)) : "local",
          new Date(j.created_at).toLocaleString()]), "No jobs yet."));
    });
  },

  async job(id) {
    const info = h("div");
    const ranks = h("div");
    const logs = h("pre", { class: "logs", id: "job-logs", "aria-label": "Logs", tabindex: "0" });
    page("Job " + id, info, h("h2", {}, "Logs"), ranks, logs);
    const byRank = new Map();
    let gateway = "";
    api("/v1/id").then((x) => { gateway = x.gateway || ""; }).catch(() => {});
    const onState = (data) => {
      const j = JSON.parse(data);
      const pairs = [["State", h("span", { id: "job-state" }, state(j.state))], ["Reason", j.reason || "–"],
        ["Image", h("span", { class: "mono" }, j.spec.image)], ["Provider", j.provider || "this node"]];
      if (j.spec.distributed) pairs.push(["Distributed", `${j.spec.distributed.nodes} nodes × ${j.spec.distributed.procs_per_node || 1}`]);
      if (j.progress) pairs.push(["Progress", j.progress]);
      if (j.exit_code !== undefined) pairs.push(["Exit code", String(j.exit_code)]);
      if (j.result_cid) {
        const link = gateway ? h("a", { href: `${gateway}/ipfs/${j.result_cid}?format=car`, download: j.result_cid + ".car" }, "download (CAR, through the gateway)") : "";
        pairs.push(["Result", h("span", {}, h("span", { class: "mono", id: "job-result" }, j.result_cid), " ", link)]);
      }
      info.replaceChildren(kv(pairs));
    };
    const onLog = (data) => {
      const m = /^\[rank (\d+)\] /.exec(data);
      if (m) {
        if (!byRank.has(m[1])) {
          byRank.set(m[1], 0);
          ranks.replaceChildren(h("p", {}, "Ranks: ", [...byRank.keys()].sort().map((r) =>
            h("button", { type: "button", onclick: () => filter(r) }, "rank " + r)), " ",
            h("button", { type: "button", onclick: () => filter(null) }, "all")));
        }
      }
      const line = h("div", { "data-rank": m ? m[1] : "" }, data);
      logs.append(line);
      logs.scrollTop = logs.scrollHeight;
    };
    events("/v1/jobs/" + encodeURIComponent(id) + "/events", { state: onState, log: onLog,
      error: (e) => showError(info, e) });
    const filter = (r) => {
      for (const el of logs.children) el.hidden = r !== null && el.dataset.rank !== r;
    };
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
      const [w, chs, earn] = await Promise.all([api("/v1/wallet"), api("/v1/wallet/channels"), api("/v1/wallet/earnings")]);
      body.replaceChildren(
        h("div", { class: "cards" },
          card(w.token_symbol + " balance", w.token_balance_units, "wallet-token-balance"),
          card("native balance", w.native_balance_units)),
        kv([["Address", h("span", { class: "mono", id: "wallet-address" }, w.address)], ["Chain", `${w.chain_id} (${w.rpc})`],
            ["Escrow", h("span", { class: "mono" }, w.escrow)]]),
        h("h2", {}, "Channels"),
        table("Channels", ["Channel", "Role", "Counterparty", "Deposited", "Vouched", "Redeemed", "Withdrawable"],
          chs.channels.map((c) => {
            const u = (x) => h("span", { "data-base": x }, units(x, c.decimals) + " " + c.symbol);
            return [h("span", { class: "mono", "data-channel": c.channel }, short(c.channel, 14)), c.role,
              h("span", { class: "mono" }, short(c.role === "payer" ? c.payee : c.payer, 14)),
              u(c.deposited), u(c.vouched), u(c.redeemed), u(c.withdrawable)];
          }), "No channels yet."),
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

// chart draws cumulative earnings per token as an SVG line.
function chart(earnings) {
  if (!earnings.length) return h("p", { class: "muted", id: "earnings-empty" }, "Nothing earned yet.");
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 600 200");
  svg.setAttribute("role", "img");
  const byToken = new Map();
  for (const e of earnings) {
    const k = e.symbol || e.token;
    if (!byToken.has(k)) byToken.set(k, []);
    byToken.get(k).push(e);
  }
  const t0 = new Date(earnings[0].time).getTime(), t1 = new Date(earnings[earnings.length - 1].time).getTime();
  const colors = ["#0b57d0", "#0a6b2b", "#b3261e", "#8a5a00"];
  let i = 0, label = [];
  for (const [sym, es] of byToken) {
    let sum = 0n;
    const pts = es.map((e) => { sum += BigInt(e.amount); return [new Date(e.time).getTime(), sum, e.decimals]; });
    const max = Number(sum) || 1;
    const d = [[t0, 0n], ...pts].map(([t, v]) => {
      const x = 20 + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * 560;
      const y = 180 - (Number(v) / max) * 160;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", d.join(" "));
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", colors[i++ % colors.length]);
    pl.setAttribute("stroke-width", "3");
    svg.append(pl);
    label.push(`${units(sum.toString(), pts[0][2])} ${sym}`);
  }
  const total = "Total earned: " + label.join(", ");
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
