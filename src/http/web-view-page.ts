// The web view (GET /): one self-contained page, embedded in the build as a
// string (no CDN, no bundler, no file read at run time), so the single
// executable and Deno serve it as Node does. It follows GET /events (server-
// sent events: the Watch stream as JSON) and counts expiries down locally.
// Usable on a phone (the table becomes one card per lock) and without colour
// (every state is also a word).

export const WEB_VIEW_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mcp-lockd</title>
<style>
  :root { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #111; background: #fff; }
  body { margin: 0 auto; max-width: 72rem; padding: 1rem; }
  h1 { font-size: 1.3rem; margin: 0 0 .5rem; }
  h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
  #status { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; margin-bottom: .5rem; font-size: .95rem; }
  .badge { font-weight: 600; padding: 0 .35rem; border: 2px solid currentColor; border-radius: .25rem; }
  .ok { color: #05620f; } .bad { color: #a4000f; } .warn { color: #7a4b00; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid #bbb; vertical-align: top; }
  th { border-bottom: 2px solid #333; font-size: .85rem; text-transform: uppercase; letter-spacing: .03em; }
  td.num { text-align: right; }
  tr.expiring td.expires { font-weight: 700; }
  tr.expiring td.expires::after { content: " (soon)"; font-weight: 400; }
  tr.unreadable td.holder::after { content: " (unreadable lease file)"; font-style: italic; }
  #empty { padding: .75rem .5rem; font-style: italic; }
  #feed { list-style: none; margin: 0; padding: 0; font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .85rem; }
  #feed li { padding: .2rem 0; border-bottom: 1px dotted #bbb; overflow-wrap: anywhere; }
  #feed .type { font-weight: 700; }
  #auth { display: none; margin: 1rem 0; padding: .75rem; border: 2px solid #333; }
  #auth input { width: min(30rem, 100%); font: inherit; padding: .3rem; }
  #auth button { font: inherit; padding: .3rem .8rem; margin-top: .5rem; }
  @media (max-width: 40rem) {
    thead { display: none; }
    table, tbody, tr, td { display: block; width: auto; }
    tr { border: 1px solid #888; border-radius: .3rem; margin-bottom: .6rem; padding: .3rem .5rem; }
    td { border: 0; padding: .15rem 0; text-align: left; }
    td.num { text-align: left; }
    td::before { content: attr(data-label) ": "; font-weight: 600; }
  }
  @media (prefers-color-scheme: dark) {
    :root { color: #eee; background: #111; }
    .ok { color: #7ee08a; } .bad { color: #ff8a8a; } .warn { color: #ffd27a; }
    th { border-bottom-color: #ccc; } th, td, #feed li { border-bottom-color: #555; }
  }
</style>
</head>
<body>
<h1>mcp-lockd: locks</h1>
<div id="status" role="status" aria-live="polite">
  <span>Live updates: <span id="conn" class="badge warn">CONNECTING</span></span>
  <span>Store: <span id="store" class="badge warn">UNKNOWN</span> <span id="store-detail"></span></span>
  <span id="count"></span>
</div>
<form id="auth">
  <label for="token">This service needs a token with the <b>read</b> permission:</label><br>
  <input id="token" type="password" autocomplete="off"><br>
  <button type="submit">Use token</button>
</form>
<table id="locks" aria-describedby="count">
  <thead><tr><th>Resource</th><th>Holder</th><th>Held for</th><th>TTL</th><th>Expires in</th><th>Fencing token</th><th>Waiters</th></tr></thead>
  <tbody></tbody>
</table>
<div id="empty">No locks held.</div>
<h2>Recent events</h2>
<ul id="feed"></ul>
<script>
"use strict";
const locks = new Map();
const FEED_LENGTH = 50;
let snapshotting = true;
let clockSkew = 0; // server time minus local time, from event times

const $ = (id) => document.getElementById(id);
function duration(ms) {
  if (!(ms >= 0)) return "-";
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m" + String(s % 60).padStart(2, "0") + "s";
  const h = Math.floor(m / 60);
  return h + "h" + String(m % 60).padStart(2, "0") + "m";
}
function cell(row, label, text, cls) {
  const td = document.createElement("td");
  td.dataset.label = label;
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}
function render() {
  const now = Date.now() + clockSkew;
  const body = document.querySelector("#locks tbody");
  const rows = [];
  for (const lock of [...locks.values()].sort((a, b) => (a.resource < b.resource ? -1 : 1))) {
    const row = document.createElement("tr");
    row.dataset.resource = lock.resource;
    const expiresIn = Date.parse(lock.expires_at) - now;
    if (lock.state === "unreadable") row.classList.add("unreadable");
    if (expiresIn < 5000) row.classList.add("expiring");
    cell(row, "Resource", lock.resource, "resource");
    cell(row, "Holder", lock.holder, "holder");
    cell(row, "Held for", duration(now - Date.parse(lock.acquired_at)), "held num");
    cell(row, "TTL", lock.ttl === null ? "-" : duration(lock.ttl * 1000), "ttl num");
    cell(row, "Expires in", expiresIn > 0 ? duration(expiresIn) : "expired", "expires num");
    cell(row, "Fencing token", lock.fencing_token === null ? "-" : String(lock.fencing_token), "token num");
    cell(row, "Waiters", String(lock.waiters), "waiters num");
    rows.push(row);
  }
  body.replaceChildren(...rows);
  $("empty").style.display = locks.size === 0 ? "" : "none";
  $("count").textContent = locks.size + (locks.size === 1 ? " lock held" : " locks held");
}
function feed(event) {
  if (event.type === "HELD" || event.type === "SNAPSHOT_COMPLETE" || event.type === "RENEWED") return;
  const item = document.createElement("li");
  const type = document.createElement("span");
  type.className = "type";
  type.textContent = event.type;
  const who = event.holder ? " holder " + event.holder : "";
  const from = event.previous_holder ? " (from " + event.previous_holder + ")" : "";
  const token = event.fencing_token === null ? "" : " token " + event.fencing_token;
  item.append(event.time.slice(11, 19) + " ", type, " " + event.resource + who + from + token + " waiters " + event.waiters);
  const list = $("feed");
  list.prepend(item);
  while (list.children.length > FEED_LENGTH) list.lastChild.remove();
}
function apply(event) {
  clockSkew = Date.parse(event.time) - Date.now();
  if (event.type === "SNAPSHOT_COMPLETE") { snapshotting = false; render(); return; }
  if (event.type === "HELD" && !snapshotting) { locks.clear(); snapshotting = true; }
  if (event.state === "free") locks.delete(event.resource);
  else if (event.acquired_at !== null) locks.set(event.resource, event);
  else if (locks.has(event.resource)) locks.get(event.resource).waiters = event.waiters;
  feed(event);
  if (!snapshotting) render();
}
function setBadge(id, text, cls) {
  const badge = $(id);
  badge.textContent = text;
  badge.className = "badge " + cls;
}
// The stream is read with fetch() rather than EventSource, which cannot send
// an Authorization header: a token never goes into a URL (and so into logs).
function onStreamEvent(name, data) {
  if (name === "store") {
    const store = JSON.parse(data);
    setBadge("store", store.up ? "OK" : "DOWN", store.up ? "ok" : "bad");
    $("store-detail").textContent = store.up ? "" : store.detail;
  } else if (name === "message") {
    apply(JSON.parse(data));
  }
}
async function readStream() {
  const token = sessionStorage.getItem("mcp-lockd-token");
  const response = await fetch("events", { headers: token ? { authorization: "Bearer " + token } : {}, cache: "no-store" });
  if (response.status === 401 || response.status === 403) return "needs-token";
  if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
  setBadge("conn", "LIVE", "ok");
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return "ended";
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length > 0) onStreamEvent(name, data.join("\\n"));
    }
  }
}
async function connect() {
  for (;;) {
    let outcome;
    try {
      outcome = await readStream();
    } catch {
      outcome = "failed";
    }
    if (outcome === "needs-token") {
      setBadge("conn", "NEEDS A TOKEN", "bad");
      $("auth").style.display = "block";
      return;
    }
    // Ended (the service restarted, or this page fell behind): a new stream
    // starts with a fresh snapshot.
    setBadge("conn", "RECONNECTING", "warn");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
$("auth").addEventListener("submit", (submit) => {
  submit.preventDefault();
  sessionStorage.setItem("mcp-lockd-token", $("token").value);
  $("auth").style.display = "none";
  connect();
});
setInterval(render, 250);
render();
connect();
</script>
</body>
</html>
`;
