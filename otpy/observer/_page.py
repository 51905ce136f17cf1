"""The observer's one page: HTML, CSS and JavaScript in one string, nothing fetched from elsewhere.

It polls the JSON endpoints every ``refresh`` seconds (``/api/system`` says
how often) and draws the supervision tree (left), the process table (right,
sorted by the server: click a header) and the detail of the selected process
(below). The token, if the server wants one, comes from the page's own
address, ``URL#token=...`` (or ``?token=``), and goes out as
``Authorization: Bearer``. Elements carry ids and ``data-pid`` attributes
that the browser test relies on: ``#tree .node``, ``#procs tbody tr``,
``th[data-sort]``, ``#detail``, ``#detail-stack``.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>otpy observer</title>
<link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle cx='8' cy='8' r='6' fill='%234c6ef5'/%3E%3C/svg%3E">
<style>
:root {
  --bg: #f4f5f8; --panel: #ffffff; --ink: #1f2430; --muted: #6b7280; --line: #e4e7ee;
  --head: #1f2433; --head-ink: #e8ebf2; --accent: #4c6ef5; --sel: #e9eeff; --hot: #d9480f;
  --ok: #2f9e44; --run: #1c7ed6; --wait: #adb5bd; --bar: #ffd8a8;
  --mono: ui-monospace, "SF Mono", "Cascadia Mono", "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Helvetica Neue", Arial, sans-serif;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #14161c; --panel: #1c1f27; --ink: #e4e7ee; --muted: #9096a3; --line: #2c303b;
          --head: #0e1015; --sel: #26304d; --bar: #6b3b12; --wait: #5c636e; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font-size: 14px; line-height: 1.4; }
header { display: flex; align-items: center; gap: 20px; padding: 10px 20px; background: var(--head); color: var(--head-ink); }
header h1 { margin: 0; font-size: 16px; font-weight: 650; white-space: nowrap; }
header h1 span { color: var(--accent); }
#stats { display: flex; flex-wrap: wrap; gap: 4px 18px; font-size: 12.5px; color: #aab1c0; }
#stats b { color: #fff; font-weight: 600; }
#status { margin-left: auto; display: flex; align-items: center; gap: 8px; font-size: 12.5px; white-space: nowrap; }
#status .dot { width: 9px; height: 9px; border-radius: 50%; background: var(--wait); }
#status.live .dot { background: #51cf66; box-shadow: 0 0 0 3px rgba(81, 207, 102, .18); }
#status.error .dot { background: #ff6b6b; }
button { font: inherit; font-size: 12.5px; border: 1px solid var(--line); background: var(--panel); color: var(--ink);
         border-radius: 6px; padding: 3px 10px; cursor: pointer; }
header button { background: transparent; color: var(--head-ink); border-color: #3a4052; }
#banner { margin: 12px 20px 0; padding: 8px 12px; border-radius: 6px; background: #fff3bf; color: #5c3c00; }
#banner[hidden] { display: none; }
main { display: grid; grid-template-columns: minmax(320px, 5fr) minmax(420px, 7fr); gap: 14px; padding: 14px 20px 0; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; min-width: 0;
         display: flex; flex-direction: column; }
.panel h2 { margin: 0; padding: 9px 14px; font-size: 11.5px; font-weight: 650; letter-spacing: .07em;
            text-transform: uppercase; color: var(--muted); border-bottom: 1px solid var(--line);
            display: flex; align-items: center; gap: 10px; }
.panel h2 .count { text-transform: none; letter-spacing: 0; font-weight: 500; }
.panel h2 label { margin-left: auto; text-transform: none; letter-spacing: 0; font-weight: 500; }
.scroll { overflow: auto; height: 48vh; min-height: 260px; }
.hint { color: var(--muted); padding: 4px 14px; }
.mono, .pid { font-family: var(--mono); font-size: 12.5px; }
.pid { color: var(--muted); }

ul.tree, ul.tree ul { list-style: none; margin: 0; padding: 0; }
ul.tree { padding: 8px 8px 12px; }
ul.tree ul { margin-left: 13px; padding-left: 10px; border-left: 1px dashed var(--line); }
.node { display: flex; align-items: center; gap: 7px; padding: 3px 6px; border-radius: 5px; cursor: pointer; white-space: nowrap; }
.node:hover { background: var(--bg); }
.node.selected { background: var(--sel); }
.node .caret { width: 14px; text-align: center; color: var(--muted); font-size: 11px; flex: none; }
.node .label { font-weight: 600; }
.node.worker .label { font-weight: 500; }
.node .name { color: var(--accent); }
.node .kind { font-size: 11.5px; color: var(--muted); }
.chip { font-size: 11px; padding: 0 6px; border-radius: 9px; background: var(--bg); border: 1px solid var(--line); color: var(--muted); }
.restarts { font-size: 11.5px; color: var(--muted); font-variant-numeric: tabular-nums; }
.restarts.hot { color: var(--hot); font-weight: 650; }

table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
thead th { position: sticky; top: 0; background: var(--panel); z-index: 1; text-align: left; font-size: 11.5px;
           font-weight: 650; color: var(--muted); padding: 7px 10px; border-bottom: 1px solid var(--line);
           cursor: pointer; user-select: none; white-space: nowrap; }
thead th:hover { color: var(--ink); }
thead th.sorted { color: var(--accent); }
thead th.sorted::after { content: " \25BE"; }
th.num, td.num { text-align: right; }
tbody td { padding: 4px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: var(--bg); }
tbody tr.selected { background: var(--sel); }
td.current { max-width: 0; width: 100%; overflow: hidden; text-overflow: ellipsis; color: var(--muted); }
td.mbox { position: relative; }
td.mbox .bar { position: absolute; right: 0; top: 3px; bottom: 3px; background: var(--bar); border-radius: 3px 0 0 3px; z-index: 0; }
td.mbox span { position: relative; z-index: 1; }
td.hot { color: var(--hot); font-weight: 650; }
.status::before { content: ""; display: inline-block; width: 7px; height: 7px; border-radius: 50%; margin-right: 6px; background: var(--wait); vertical-align: 1px; }
.status.running::before { background: var(--ok); }
.status.runnable::before { background: var(--run); }

#detail-panel { margin: 14px 20px 20px; }
#detail { padding: 12px 14px 14px; }
#detail-title { text-transform: none; letter-spacing: 0; color: var(--ink); font-size: 13px; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 8px 20px; margin: 0 0 12px; }
.facts div { min-width: 0; }
.facts dt { font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); }
.facts dd { margin: 1px 0 0; overflow-wrap: anywhere; }
.peers { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 4px 0 10px; }
.peers .title { font-size: 11px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); width: 100px; }
.peer { font-family: var(--mono); font-size: 12px; padding: 1px 8px; border-radius: 10px; border: 1px solid var(--line); background: var(--bg); cursor: pointer; }
.peer b { font-family: system-ui, sans-serif; font-weight: 600; margin-left: 4px; }
.none { color: var(--muted); font-size: 12.5px; }
#detail-stack { margin: 4px 0 0; padding: 10px 12px; max-height: 300px; overflow: auto; background: var(--bg);
                border: 1px solid var(--line); border-radius: 6px; font-family: var(--mono); font-size: 12px; line-height: 1.45; }
.kill { margin-left: auto; color: #fff; background: #e03131; border-color: #c92a2a; }
@media (max-width: 900px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1><span>otpy</span> observer</h1>
  <div id="stats"></div>
  <div id="status"><span class="dot"></span><span id="status-text">connecting&hellip;</span></div>
  <button id="pause" type="button">Pause</button>
</header>
<div id="banner" hidden></div>
<main>
  <section class="panel" id="tree-panel">
    <h2>Supervision tree <span class="count" id="tree-count"></span></h2>
    <div class="scroll" id="tree"><p class="hint">Loading&hellip;</p></div>
  </section>
  <section class="panel" id="table-panel">
    <h2>Processes <span class="count" id="proc-count"></span>
      <label>show <select id="limit"><option>50</option><option selected>200</option><option>1000</option><option value="">all</option></select></label>
    </h2>
    <div class="scroll">
      <table id="procs">
        <thead><tr>
          <th data-sort="pid">PID</th>
          <th data-sort="name">Name</th>
          <th data-sort="behaviour">Behaviour</th>
          <th data-sort="status">Status</th>
          <th data-sort="message_queue_len" class="num" title="messages waiting in its mailbox">Mailbox</th>
          <th data-sort="reductions" class="num" title="messages handled (reductions)">Handled</th>
          <th data-sort="restarts" class="num" title="how often its supervisor restarted its slot">Restarts</th>
          <th data-sort="current">Current</th>
        </tr></thead>
        <tbody></tbody>
      </table>
    </div>
  </section>
</main>
<section class="panel" id="detail-panel">
  <h2>Process <span id="detail-title"></span></h2>
  <div id="detail"><p class="hint">Click a process in the tree or the table to see its links, monitors, activity and stack.</p></div>
</section>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const TOKEN = new URLSearchParams(location.hash.slice(1)).get("token")
  || new URLSearchParams(location.search).get("token");
const state = {
  sort: "reductions", limit: "200", selected: null, paused: false, refresh: 1.0,
  destructive: false, collapsed: new Set(), tree: [], names: new Map(),
  timer: null, busy: false, again: false, lastDetail: "",
};

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}
const pidLabel = (pid) => pid == null ? "\u2014" : pid === "restarting" ? "restarting" : "<" + pid + ">";
const fmt = (n) => n == null ? "" : Number(n).toLocaleString("en-US");
function fmtUptime(s) {
  s = Math.floor(s || 0);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
  const two = (x) => String(x).padStart(2, "0");
  return d ? d + "d " + h + "h" : h ? h + "h " + two(m) + "m" : m ? m + "m " + two(r) + "s" : r + "s";
}

async function api(path, options) {
  const init = Object.assign({headers: {}}, options || {});
  if (TOKEN) init.headers["Authorization"] = "Bearer " + TOKEN;
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const error = new Error((body && body.error) || response.status + " " + response.statusText);
    error.status = response.status;
    throw error;
  }
  return body;
}

function setStatus(kind, text) {
  $("status").className = kind;
  $("status-text").textContent = text;
}

function schedule() {
  clearTimeout(state.timer);
  if (!state.paused) state.timer = setTimeout(tick, state.refresh * 1000);
}

function refreshNow() {
  if (state.busy) { state.again = true; return; }
  tick();
}

async function tick() {
  clearTimeout(state.timer);
  state.busy = true;
  try {
    let query = "api/processes?sort=" + encodeURIComponent(state.sort);
    if (state.limit) query += "&limit=" + state.limit;
    const [system, tree, rows] = await Promise.all([api("api/system"), api("api/tree"), api(query)]);
    state.refresh = system.refresh || 1.0;
    state.destructive = !!system.allow_destructive;
    state.names = new Map();  // the names of this refresh's processes (the tree adds its own)
    for (const row of rows) if (row.name) state.names.set(row.pid, row.name);
    renderSystem(system);
    state.tree = tree;
    renderTree();
    renderTable(rows, system.processes);
    if (state.selected) await loadDetail();
    setStatus(state.paused ? "" : "live", state.paused ? "paused" : "live, every " + state.refresh + " s");
  } catch (error) {
    setStatus("error", error.status === 401
      ? "this observer wants a token: open it as URL#token=\u2026" : "error: " + error.message);
  } finally {
    state.busy = false;
    if (state.again) { state.again = false; setTimeout(tick, 0); } else schedule();
  }
}

function stat(label, value, title) {
  return el("span", {title: title}, label + " ", el("b", {text: value}));
}

function renderSystem(s) {
  const st = s.statuses || {};
  const items = [
    stat("runtime", String(s.runtime)),
    stat("processes", fmt(s.processes), (st.running || 0) + " running, " + (st.runnable || 0) + " runnable, " + (st.waiting || 0) + " waiting"),
    stat("in mailboxes", fmt(s.message_queue_total)),
  ];
  if (s.pool) items.push(stat("pool", s.pool.threads + "/" + s.max_threads,
      s.pool.idle + " idle, " + s.pool.blocked + " blocked in otpy waits, " + s.pool.queued + " queued"));
  items.push(stat("threads", String(s.threads), "threads of the Python process"));
  items.push(stat("up", fmtUptime(s.uptime), "uptime of the Python process"));
  items.push(stat(s.implementation || "Python", s.python + (s.gil ? "" : " (free-threaded)")));
  items.push(stat("snapshot", (s.snapshot_seconds * 1000).toFixed(1) + " ms", "what the last snapshot cost the runtime"));
  $("stats").replaceChildren(...items);
  const banner = $("banner");
  banner.hidden = !s.closed;
  banner.textContent = s.closed ? "Runtime " + s.runtime + " is shut down: nothing is left to observe." : "";
}

function countNodes(nodes) {
  return nodes.reduce((n, node) => n + 1 + countNodes(node.children || []), 0);
}

function renderTree() {
  const roots = state.tree;
  const box = $("tree");
  const top = box.scrollTop;
  if (!roots.length) {
    box.replaceChildren(el("p", {class: "hint", text: "No supervisors in this runtime."}));
  } else {
    const list = el("ul", {class: "tree"});
    roots.forEach((node, i) => list.append(treeNode(node, "root" + i + ":" + (node.name || ""))));
    box.replaceChildren(list);
  }
  box.scrollTop = top;
  $("tree-count").textContent = roots.length ? countNodes(roots) + " nodes" : "";
}

function treeNode(node, path) {
  const kids = node.children || [];
  const collapsed = state.collapsed.has(path);
  if (node.name && node.pid) state.names.set(node.pid, node.name);
  const live = node.pid && node.pid !== "restarting";
  const row = el("div", {
    class: "node " + (node.type === "supervisor" ? "supervisor" : "worker") + (live && node.pid === state.selected ? " selected" : ""),
    "data-pid": node.pid || "",
    title: live ? "show " + pidLabel(node.pid) : null,
    onclick: live ? () => select(node.pid) : null,
  });
  const caret = el("span", {class: "caret", text: kids.length ? (collapsed ? "\u25B8" : "\u25BE") : "\u00B7"});
  if (kids.length) caret.addEventListener("click", (event) => {
    event.stopPropagation();
    if (collapsed) state.collapsed.delete(path); else state.collapsed.add(path);
    renderTree();
  });
  const label = node.id != null ? String(node.id) : node.name || pidLabel(node.pid);
  row.append(caret, el("span", {class: "label", text: label}));
  if (node.name && node.name !== label) row.append(el("span", {class: "name", text: node.name}));
  row.append(el("span", {class: "kind", text: node.behaviour || node.type}));
  if (node.type === "supervisor" && node.strategy) {
    const intensity = node.max_restarts != null ? " \u00B7 " + node.max_restarts + " in " + node.max_seconds + "s" : "";
    row.append(el("span", {class: "chip", text: node.strategy + intensity, title: "strategy and restart intensity"}));
  }
  row.append(el("span", {class: "restarts" + (node.restarts ? " hot" : ""), text: "\u21BB " + node.restarts,
                         title: "restarted " + node.restarts + " times by its supervisor"}));
  if (label !== pidLabel(node.pid)) row.append(el("span", {class: "pid", text: pidLabel(node.pid)}));
  const item = el("li", {}, row);
  if (kids.length && !collapsed) {
    const list = el("ul");
    kids.forEach((kid, i) => list.append(treeNode(kid, path + "/" + (kid.id != null ? kid.id : "#" + i))));
    item.append(list);
  }
  return item;
}

function renderTable(rows, total) {
  const body = $("procs").tBodies[0];
  const most = rows.reduce((m, r) => Math.max(m, r.message_queue_len), 1);
  const fresh = rows.map((r) => {
    const bar = r.message_queue_len ? el("div", {class: "bar", style: "width:" + Math.max(4, 100 * r.message_queue_len / most) + "%"}) : null;
    return el("tr", {"data-pid": r.pid, class: r.pid === state.selected ? "selected" : null, onclick: () => select(r.pid)},
      el("td", {class: "pid", text: pidLabel(r.pid)}),
      el("td", {class: "name", text: r.name || ""}),
      el("td", {text: r.behaviour}),
      el("td", {}, el("span", {class: "status " + r.status, text: r.status})),
      el("td", {class: "num mbox"}, bar, el("span", {text: fmt(r.message_queue_len)})),
      el("td", {class: "num", text: fmt(r.reductions)}),
      el("td", {class: "num" + (r.restarts ? " hot" : ""), text: fmt(r.restarts)}),
      el("td", {class: "current", text: r.current, title: r.current}));
  });
  body.replaceChildren(...fresh);
  $("proc-count").textContent = rows.length < total ? rows.length + " of " + fmt(total) : fmt(total);
  for (const th of document.querySelectorAll("#procs th[data-sort]")) {
    th.classList.toggle("sorted", th.dataset.sort === state.sort);
  }
}

function select(pid) {
  state.selected = pid;
  state.lastDetail = "";
  for (const node of document.querySelectorAll("[data-pid]")) {
    node.classList.toggle("selected", node.dataset.pid === pid);
  }
  loadDetail().catch((error) => setStatus("error", "error: " + error.message));
}

async function loadDetail() {
  const pid = state.selected;
  let detail;
  try {
    detail = await api("api/processes/" + encodeURIComponent(pid));
  } catch (error) {
    if (error.status !== 404) throw error;
    if (pid === state.selected) renderGone(pid);
    return;
  }
  if (pid !== state.selected) return;
  const seen = JSON.stringify(detail) + state.destructive;
  if (seen === state.lastDetail) return;  // unchanged: keep the reader's scroll and selection
  state.lastDetail = seen;
  renderDetail(detail);
}

function renderGone(pid) {
  state.lastDetail = "";
  $("detail-title").textContent = pidLabel(pid);
  $("detail").replaceChildren(el("p", {class: "hint", text: "Process " + pidLabel(pid) + " is no longer alive."}));
}

function fact(label, value) {
  return el("div", {}, el("dt", {text: label}), el("dd", {}, value));
}

function peers(title, pids, names) {
  const box = el("div", {class: "peers"}, el("span", {class: "title", text: title}));
  if (!pids.length) box.append(el("span", {class: "none", text: "none"}));
  for (const pid of pids) {
    const name = names[pid] || state.names.get(pid);
    box.append(el("span", {class: "peer", "data-peer": pid, onclick: () => select(pid)},
                  pidLabel(pid), name ? el("b", {text: name}) : null));
  }
  return box;
}

function renderDetail(d) {
  $("detail-title").textContent = pidLabel(d.pid) + (d.name ? "  " + d.name : "");
  const mailbox = fmt(d.message_queue_len) + (d.mailbox_limit != null ? " of " + fmt(d.mailbox_limit) : "")
    + (d.dropped ? ", " + fmt(d.dropped) + " dropped" : "");
  const facts = el("dl", {class: "facts"},
    fact("Name", d.name || "\u2014"),
    fact("Behaviour", d.behaviour),
    fact("Status", el("span", {class: "status " + d.status, text: d.status})),
    fact("Current", d.current),
    fact("Thread", d.thread || "none (not on a thread now)"),
    fact("Mailbox", mailbox),
    fact("Messages handled", fmt(d.reductions)),
    fact("Restarts", fmt(d.restarts)),
    fact("Traps exits", d.trap_exits ? "yes" : "no"));
  const names = d.names || {};
  const parts = [facts,
    peers("Parent", d.parent ? [d.parent] : [], names),
    peers("Links", d.links, names),
    peers("Monitors", d.monitors, names),
    peers("Monitored by", d.monitored_by, names)];
  const head = el("div", {class: "peers"}, el("span", {class: "title", text: "Stack"}));
  if (state.destructive) {
    head.append(el("button", {class: "kill", type: "button", text: "Kill " + pidLabel(d.pid), onclick: () => kill(d.pid)}));
  }
  parts.push(head);
  const stack = d.stack
    ? d.stack.join("\n")
    : d.thread ? "(no stack: its thread could not be found)" : "(no stack: it runs on no thread now; it waits for a message)";
  parts.push(el("pre", {id: "detail-stack", text: stack}));
  $("detail").replaceChildren(...parts);
  const pre = $("detail-stack");
  pre.scrollTop = pre.scrollHeight;  // the innermost frame is last
}

async function kill(pid) {
  if (!confirm("Kill " + pidLabel(pid) + "? otpy.exit(pid, \"kill\") cannot be trapped.")) return;
  try {
    await api("api/processes/" + encodeURIComponent(pid) + "/kill", {method: "POST"});
  } catch (error) {
    setStatus("error", "kill failed: " + error.message);
  }
  refreshNow();
}

for (const th of document.querySelectorAll("#procs th[data-sort]")) {
  th.addEventListener("click", () => { state.sort = th.dataset.sort; refreshNow(); });
}
$("limit").addEventListener("change", (event) => { state.limit = event.target.value; refreshNow(); });
$("pause").addEventListener("click", () => {
  state.paused = !state.paused;
  $("pause").textContent = state.paused ? "Resume" : "Pause";
  if (state.paused) { clearTimeout(state.timer); setStatus("", "paused"); } else refreshNow();
});
tick();
</script>
</body>
</html>
"""
