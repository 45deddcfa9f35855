// pushpbx admin page: plain JS over the JSON API (docs/admin.md).
// The token lives in sessionStorage and goes out as a Bearer header.
"use strict";
const $ = (s) => document.querySelector(s);
let token = sessionStorage.getItem("pushpbx_token") || "";
let timer = null;
let provExt = null;

function esc(v) {
  return String(v == null ? "" : v).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function ago(unix) {
  if (!unix) return "";
  const s = Math.round(Date.now() / 1000 - unix);
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return new Date(unix * 1000).toLocaleString();
}
function when(unix) { return unix ? new Date(unix * 1000).toLocaleTimeString() : ""; }

async function api(method, path, body) {
  const opt = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    opt.headers["Content-Type"] = "application/json";
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  if (r.status === 401) { logout("Token refused."); throw new Error("401"); }
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new Error((data && data.error ? data.error : r.status) +
    (data && data.field ? " (" + data.field + ")" : ""));
  return data;
}

function logout(msg) {
  token = "";
  sessionStorage.removeItem("pushpbx_token");
  clearInterval(timer);
  document.querySelectorAll(".view").forEach((v) => (v.hidden = true));
  $("#tabs").hidden = $("#logout").hidden = $("#backup").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = msg || "";
}

async function login(t) {
  token = t;
  try {
    const st = await api("GET", "/api/status");
    sessionStorage.setItem("pushpbx_token", token);
    $("#version").textContent = "v" + st.version + " \u00b7 " + st.domain;
    $("#login").hidden = true;
    $("#tabs").hidden = $("#logout").hidden = $("#backup").hidden = false;
    show(location.hash.slice(1) || "registrations");
    timer = setInterval(refresh, 2000);
  } catch (e) {
    if (e.message !== "401") $("#login-error").textContent = e.message;
  }
}

function show(tab) {
  if (!document.getElementById("view-" + tab)) tab = "registrations";
  document.querySelectorAll(".view").forEach((v) => (v.hidden = v.id !== "view-" + tab));
  document.querySelectorAll("nav a").forEach((a) =>
    a.classList.toggle("active", a.dataset.tab === tab));
  refresh();
}
function current() {
  const v = [...document.querySelectorAll(".view")].find((x) => !x.hidden);
  return v ? v.id.slice(5) : null;
}

function sipCell(b) {
  if (!b.length) return '<div class="entry"><span class="badge off">not registered</span></div>';
  return b.map((x) => `<div class="entry live"><span class="badge ok">registered</span>
    <code>${esc(x.contact)}</code>
    <div class="meta">${esc(x.transport.toUpperCase())} from ${esc(x.source)}
    &middot; ${esc(x.user_agent || "unknown agent")} &middot; expires in ${esc(x.expires_in)} s${x.node ? ` &middot; node <b>${esc(x.node)}</b>` : ""}</div></div>`).join("");
}
function pushCell(p, available) {
  if (!available) return '<div class="entry"><span class="muted">push: not available yet</span></div>';
  if (!p.length) return '<div class="entry"><span class="badge off">no push device</span></div>';
  return p.map((d) => {
    const live = String(d.state).startsWith("suppressed");
    return `<div class="entry ${live ? "suppressed" : "push"}">
      <span class="badge ${live ? "warn" : "push"}">${esc(d.state)}</span>
      <b>${esc(String(d.provider || "").toUpperCase())}</b> <code>${esc(d.token_prefix)}\u2026</code>
      <div class="meta">${esc(d.param || "")} &middot; created ${esc(ago(d.created_at))}
      &middot; last seen ${esc(ago(d.last_seen_at))}</div></div>`;
  }).join("");
}

// Stored chat messages per extension: how many and since when, never text.
function msgCell(m) {
  if (!m) return '<span class="muted">none</span>';
  return `<div><b>${esc(m.count)}</b> waiting</div>
    <div class="muted">oldest ${esc(ago(m.oldest_received_at))}</div>`;
}

// Registrations come a page at a time (docs/admin.md "Pages"): regAfter is
// the cursor of the page shown ("" = the first), regBack the cursors of the
// pages before it, so Previous goes back and the 5 s refresh reloads the
// same page.
const REG_PAGE = 100;
let regAfter = "", regBack = [], regNext = null;

async function refreshRegistrations() {
  const q = "/api/registrations?limit=" + REG_PAGE +
    (regAfter ? "&after=" + encodeURIComponent(regAfter) : "");
  const r = await api("GET", q);
  const msgs = {};
  const m = await api("GET", "/api/messages");
  for (const x of m.items) msgs[x.ext] = x;
  let regs = 0, devs = 0;
  $("#reg-table tbody").innerHTML = r.items.map((e) => {
    regs += e.bindings.length; devs += e.push.length;
    return `<tr data-ext="${esc(e.number)}"><td><div class="ext">${esc(e.number)}</div>
      <div class="name">${esc(e.name)}</div>
      ${e.enabled ? "" : '<span class="badge off">disabled</span>'}</td>
      <td>${sipCell(e.bindings)}</td><td>${pushCell(e.push, r.push_available)}</td>
      <td>${msgCell(msgs[e.number])}</td></tr>`;
  }).join("");
  regNext = r.next;
  const first = regBack.length * REG_PAGE;
  $("#reg-range").textContent = r.items.length
    ? `${first + 1}\u2013${first + r.items.length} of ${r.total}` : `none of ${r.total}`;
  $("#reg-prev").disabled = regBack.length === 0;
  $("#reg-next").disabled = !regNext;
  $("#stats").innerHTML = `<span><b>${r.total}</b> extensions</span>
    <span>this page: <b>${regs}</b> SIP bindings</span><span><b>${devs}</b> push devices</span>
    <span><b>${m.stats.waiting}</b> stored messages</span>`;
}

async function refreshExtensions() {
  const r = await api("GET", "/api/extensions");
  // Extensions of the configuration file are changed there, not here: the
  // page marks them and offers only the QR (which hands out the file's
  // password); the API would answer 409.
  $("#ext-table tbody").innerHTML = r.items.map((e) => {
    const conf = e.source === "config";
    const where = conf ? `${e.config_file}${e.config_line ? " line " + e.config_line : ""}` : "";
    return `<tr data-ext="${esc(e.number)}">
    <td class="ext">${esc(e.number)}</td><td>${esc(e.name)}
      ${conf ? `<span class="badge push" title="defined in ${esc(where)}: change it there and restart">from config</span>` : ""}</td>
    <td>${e.enabled ? '<span class="badge ok">enabled</span>' : '<span class="badge off">disabled</span>'}</td>
    <td>${esc(e.bindings)}</td>
    <td class="row"><button class="small" data-act="prov">QR</button>
      ${conf ? `<span class="muted">read-only: ${esc(where)}</span>` : `<button class="small ghost" data-act="passwd">Reset password</button>
      <button class="small danger" data-act="del">Delete</button>`}</td></tr>`;
  }).join("");
}

function listTable(sel, naSel, r, row) {
  $(naSel).hidden = r.available;
  $(sel).hidden = !r.available;
  $(sel + " tbody").innerHTML = r.items.map(row).join("");
}

async function refreshPushes() {
  const r = await api("GET", "/api/pushes");
  listTable("#push-table", "#pushes-na", r, (p) => `<tr><td>${esc(when(p.at))}</td>
    <td>${esc(p.ext)}</td><td>${esc(p.provider)}</td><td>${esc(p.type)}</td>
    <td><code>${esc(p.token_prefix)}\u2026</code></td>
    <td><span class="badge ${p.status === "delivered" ? "ok" : "bad"}">${esc(p.status)}</span>
      ${esc(p.http_status || "")} ${esc(p.reason || "")}</td>
    <td>${esc(p.latency_ms != null ? p.latency_ms + " ms" : "")}</td></tr>`);
}

async function refreshCalls() {
  const n = await api("GET", "/api/nodes");
  $("#nodes").hidden = !n.cluster;
  if (n.cluster)
    $("#node-table tbody").innerHTML = n.items.map((x) => `<tr>
      <td>${esc(x.name)}${x.self ? " (this node)" : ""}</td>
      <td><span class="badge ${x.alive ? "ok" : "bad"}">${x.alive ? "up" : "down"}</span></td>
      <td><code>${esc(x.advertise)}</code></td><td>${esc(x.bindings)}</td>
      <td>${esc(x.calls != null ? x.calls : "")}</td><td>${esc(when(x.last_seen))}</td></tr>`).join("");
  const w = await api("GET", "/api/wakeups");
  listTable("#wake-table", "#wakeups-na", w, (x) => `<tr><td>${esc(x.ext)}</td>
    <td><code>${esc(x.call_id)}</code></td><td>${esc(x.from)}</td>
    <td>${esc(ago(x.since))}</td><td>${esc(when(x.expires_at))}</td></tr>`);
  const c = await api("GET", "/api/calls");
  listTable("#call-table", "#calls-na", c, (x) => `<tr data-call="${esc(x.call_id)}">
    <td>${esc(when(x.started_at))}</td><td>${esc(x.from)}</td><td>${esc(x.to)}</td>
    <td><span class="badge ${x.outcome === "answered" ? "ok" : "off"}">${esc(x.result)}</span></td>
    <td>${esc(((x.duration_ms || 0) / 1000).toFixed(1))} s</td>
    <td><code>${esc(x.answered_by || "")}</code></td><td>${media(x.media)}</td></tr>`);
  const m = await api("GET", "/api/media");
  $("#relays").textContent = !m.available || !m.items.length ? "Media relay: off"
    : "Media relay: " + m.items.map((r) => `${r.relay} ${r.state}`).join(", ");
}

// rtpengine's figures of a relayed call: packets from caller / callee
function media(m) {
  if (!m) return "direct";
  if (!m.stats) return "relayed";
  const t = `relayed, ${m.caller_packets}/${m.callee_packets} packets`;
  return m.flag ? `${esc(t)} <span class="badge bad">${esc(m.flag)}</span>` : esc(t);
}

async function refresh() {
  if (!token) return;
  try {
    const tab = current();
    if (tab === "registrations") await refreshRegistrations();
    else if (tab === "extensions") await refreshExtensions();
    else if (tab === "pushes") await refreshPushes();
    else if (tab === "calls") await refreshCalls();
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("#updated").textContent = "error: " + e.message;
  }
}

async function showProv(ext, regenerate) {
  provExt = ext;
  let link;
  try {
    link = regenerate ? null : await api("GET", `/api/extensions/${ext}/prov`);
  } catch (e) { link = null; }
  if (!link) link = await api("POST", `/api/extensions/${ext}/prov`);
  const r = await fetch(`/api/extensions/${ext}/prov/qr.svg`,
    { headers: { Authorization: "Bearer " + token } });
  const img = $("#prov-qr");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(await r.blob());
  $("#prov-ext").textContent = ext;
  $("#prov-url").textContent = link.url;
  $("#prov-life").textContent = link.state === "active"
    ? `Valid until ${new Date(link.expires_at * 1000).toLocaleString()}, ${link.fetches_left} of ${link.max_fetches} fetches left.`
    : `This link is ${link.state}: make a new one.`;
  $("#prov").hidden = false;
}

/* GET /api/backup needs the bearer token, so a plain link cannot fetch it:
 * download it as a blob and hand that to the browser as a file. */
async function downloadBackup() {
  const b = $("#backup");
  b.disabled = true;
  try {
    const r = await fetch("/api/backup", { headers: { Authorization: "Bearer " + token } });
    if (!r.ok) throw new Error("backup failed: HTTP " + r.status);
    const cd = r.headers.get("Content-Disposition") || "";
    const m = cd.match(/filename="([^"]+)"/);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = m ? m[1] : "pushpbx-backup.db";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  } catch (e) { alert(e.message); } finally { b.disabled = false; }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#backup").addEventListener("click", downloadBackup);
  $("#login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    login($("#token").value.trim());
  });
  $("#logout").addEventListener("click", () => logout());
  $("#reg-next").addEventListener("click", () => {
    if (!regNext) return;
    regBack.push(regAfter); regAfter = regNext; refreshRegistrations();
  });
  $("#reg-prev").addEventListener("click", () => {
    if (!regBack.length) return;
    regAfter = regBack.pop(); refreshRegistrations();
  });
  window.addEventListener("hashchange", () => token && show(location.hash.slice(1)));
  $("#add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { number: $("#add-number").value.trim() };
    if ($("#add-name").value) body.name = $("#add-name").value;
    if ($("#add-password").value) body.password = $("#add-password").value;
    try {
      const r = await api("POST", "/api/extensions", body);
      $("#add-result").textContent = "Added " + r.number +
        (r.password ? " \u2014 password " + r.password + " (shown once)" : "");
      $("#add-form").reset();
      refresh();
    } catch (e) { $("#add-result").textContent = "Error: " + e.message; }
  });
  $("#ext-table").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    const ext = b.closest("tr").dataset.ext;
    try {
      if (b.dataset.act === "del" && confirm("Delete extension " + ext + "?")) {
        await api("DELETE", "/api/extensions/" + ext);
        if (provExt === ext) $("#prov").hidden = true;
      } else if (b.dataset.act === "passwd") {
        const r = await api("POST", `/api/extensions/${ext}/password`);
        $("#add-result").textContent = `New password for ${ext}: ${r.password} (shown once)` +
          (r.prov_link_revoked ? " \u2014 its provisioning link was revoked" : "");
        if (r.prov_link_revoked && provExt === ext) $("#prov").hidden = true;
      } else if (b.dataset.act === "prov") {
        await showProv(ext, false);
      }
      refresh();
    } catch (e) { $("#add-result").textContent = "Error: " + e.message; }
  });
  $("#prov-regen").addEventListener("click", () => showProv(provExt, true));
  $("#prov-revoke").addEventListener("click", async () => {
    await api("DELETE", `/api/extensions/${provExt}/prov`);
    $("#prov").hidden = true;
  });
  if (token) login(token);
});
