// heatgrid control room: the page the engine serves on its API listener.
//
// No framework and no library: the overview keeps one element per station and only touches
// the ones the live feed changed; trends are plain SVG. Every value is written with
// textContent (never as HTML). The API token lives in this tab's sessionStorage and goes out
// only as a bearer header. Every word on the page comes from the catalogue of the chosen
// language (CATALOGUES, /i18n.js: web/i18n/*.json) through t(); numbers and dates follow the
// language too. The choice is remembered in localStorage.
"use strict";

const TOKEN_KEY = "heatgrid.token";
const LANG_KEY = "heatgrid.lang";
const LANGS = { en: "English", "zh-CN": "简体中文" };
const FEED_SILENT_MS = 5000; // no event for this long: the feed is reported lost
const OLD_MS = 30000; // a reading older than this is drawn as old, whatever its state
const COMPACT_FROM = 600; // more stations than this: small tiles, the error only
const STATES = ["in_control", "deviating", "stale", "comm_lost", "manual"];

// The language: as chosen before in this browser, else the browser's own when it is Chinese.
function pickLang() {
  const saved = localStorage.getItem(LANG_KEY);
  if (saved && CATALOGUES[saved]) return saved;
  return (navigator.language || "").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

const app = {
  lang: pickLang(),
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  tiles: new Map(), // id -> tile from the feed
  els: new Map(), // id -> its element in the overview
  totals: null,
  offset: 0, // server clock - browser clock, ms
  lastEvent: 0,
  feedAbort: null,
  pageTimer: null,
  history: null, // a station's trend from the database: {id, points}
  filter: { text: "", state: "", tag: "", sort: "id" },
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const serverNow = () => Date.now() + app.offset;

/** The chosen language's text of `key`, with each {name} replaced by params[name]. */
function t(key, params) {
  const text = CATALOGUES[app.lang][key] ?? CATALOGUES.en[key] ?? key;
  return params ? text.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m)) : text;
}

/** A catalogue text chosen by a value the engine sends (an alarm kind, a state …), or the
 * value itself when the catalogue has none. */
function tv(prefix, value) {
  const key = prefix + "." + value;
  return CATALOGUES.en[key] === undefined ? String(value) : t(key);
}

const numberFormats = new Map();
function fmt(x, digits = 1, unit = "") {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  const key = app.lang + digits;
  if (!numberFormats.has(key)) {
    numberFormats.set(key, new Intl.NumberFormat(app.lang, { minimumFractionDigits: digits, maximumFractionDigits: digits, useGrouping: false }));
  }
  return numberFormats.get(key).format(Number(x)) + unit;
}

const dateTime = (ms) => new Date(ms).toLocaleString(app.lang);
const timeOfDay = (ms) => new Date(ms).toLocaleTimeString(app.lang);

function age(ms) {
  if (ms === null || ms === undefined) return t("age.never");
  const s = Math.max(0, Math.round((serverNow() - ms) / 1000));
  if (s < 120) return t("age.s", { n: s });
  if (s < 7200) return t("age.min", { n: Math.round(s / 60) });
  return t("age.h", { n: Math.round(s / 3600) });
}

// ---- API ------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { Authorization: "Bearer " + app.token };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    cache: "no-store",
  });
  let body = null;
  try { body = await r.json(); } catch (_) { /* empty or not JSON */ }
  // Signed in, and the token stopped working (removed from the config): back to sign-in.
  if (r.status === 401 && app.me) { signOut(t("signin.expired")); }
  if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
  return body;
}

// ---- Sign-in ----------------------------------------------------------------------------

function showSignIn(message) {
  $("bar").hidden = true;
  app.signInMessage = message || "";
  const input = el("input", { type: "password", id: "token", autocomplete: "off", placeholder: t("signin.token"), "aria-label": t("signin.token") });
  const error = el("p", { class: "error", id: "signin-error" }, message || "");
  const button = el("button", { type: "submit", class: "primary", id: "sign-in" }, t("signin.button"));
  const form = el("form", { class: "signin", id: "signin" },
    el("h2", {}, t("app.title")),
    el("p", { class: "dim" }, t("signin.hint")),
    input, button, error, el("p", {}, langSelect("signin-lang")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    button.disabled = true;
    error.textContent = "";
    app.token = input.value.trim();
    try {
      app.me = await api("/api/v1/whoami");
      sessionStorage.setItem(TOKEN_KEY, app.token);
      start();
    } catch (e) {
      app.token = null;
      error.textContent = t("signin.refused", { why: e.message });
    } finally {
      button.disabled = false;
    }
  });
  $("view").replaceChildren(form);
  input.focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  app.token = null;
  app.me = null;
  if (app.feedAbort) app.feedAbort.abort();
  app.feedAbort = null;
  clearInterval(app.pageTimer);
  app.tiles.clear();
  app.els.clear();
  showSignIn(message);
}

async function start() {
  if (!app.me) {
    try { app.me = await api("/api/v1/whoami"); } catch (e) { return showSignIn(); }
  }
  $("bar").hidden = false;
  drawWho();
  document.body.classList.toggle("operator", app.me.role === "operator");
  connect(0);
  route();
}

function drawWho() {
  $("who").textContent = app.me.name + " (" + tv("role", app.me.role) + ")" + (app.me.instance ? " @ " + app.me.instance : "");
}

// ---- Live feed --------------------------------------------------------------------------

// Server-Sent Events read with fetch (an EventSource cannot send the bearer header).
async function connect(attempt) {
  if (!app.token) return;
  const abort = new AbortController();
  app.feedAbort = abort;
  try {
    const r = await fetch("/api/v1/live", {
      headers: { Authorization: "Bearer " + app.token, Accept: "text/event-stream" },
      signal: abort.signal,
      cache: "no-store",
    });
    if (r.status === 401) return signOut(t("signin.expired"));
    if (!r.ok || !r.body) throw new Error(r.status + " " + r.statusText);
    attempt = 0;
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        onEvent(buf.slice(0, cut));
        buf = buf.slice(cut + 2);
      }
    }
  } catch (e) {
    if (abort.signal.aborted) return;
  }
  if (app.feedAbort !== abort) return; // signed out or replaced
  // Reconnect with backoff (1 s, 2 s, 4 s … 30 s, with jitter).
  const delay = Math.min(30000, 1000 * 2 ** attempt) * (0.75 + Math.random() / 2);
  setTimeout(() => connect(attempt + 1), delay);
}

function onEvent(block) {
  let kind = "message";
  let data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) kind = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trim();
  }
  if (!data) return; // keep-alive comment
  const msg = JSON.parse(data);
  app.lastEvent = Date.now();
  app.offset = msg.now - Date.now();
  let changed = null;
  if (kind === "snapshot") {
    // Every tile, one row each in the order of `fields`; a delta names a tile by its row.
    app.tiles.clear();
    app.fields = msg.fields;
    app.rows = msg.rows.map((row) => {
      const t = {};
      msg.fields.forEach((k, i) => { t[k] = row[i]; });
      app.tiles.set(t.id, t);
      return t;
    });
  } else {
    // [row, field, value, field, value …]: only what changed; `ts` as tenths of a second ago.
    changed = [];
    for (const e of msg.d || []) {
      const t = app.rows && app.rows[e[0]];
      if (!t) continue;
      for (let k = 1; k + 1 < e.length; k += 2) {
        const name = app.fields[e[k]];
        t[name] = name === "ts" && e[k + 1] !== null ? msg.now - e[k + 1] * 100 : e[k + 1];
      }
      changed.push(t);
    }
  }
  if (msg.totals) app.totals = msg.totals;
  drawTotals();
  feedStatus();
  if (currentView === "overview") {
    // The first snapshot brings the tags the filter offers.
    if (kind === "snapshot" && !$("tag-filter").options[1] && app.tiles.size) showOverview();
    else drawTiles(changed);
  }
}

// Is the feed alive? Shown on every event and checked once a second, with the tiles that
// have grown old.
function feedStatus() {
  if (!app.token) return;
  const feed = $("feed");
  const silent = Date.now() - app.lastEvent;
  const lost = !app.lastEvent || silent > FEED_SILENT_MS;
  feed.className = "feed " + (lost ? "lost" : "live");
  feed.textContent = lost
    ? (app.lastEvent ? t("feed.lost", { at: timeOfDay(app.lastEvent) }) : t("feed.connecting"))
    : t("feed.live");
  document.body.classList.toggle("feed-lost", lost);
  if (currentView === "overview") markOld(lost);
}
setInterval(feedStatus, 1000);

function drawTotals() {
  const tt = app.totals;
  if (!tt) return;
  const parts = [
    [t("totals.stations"), t("totals.fresh", { n: tt.stations, fresh: tt.fresh })],
    [t("totals.heat"), fmt(tt.heat_mw, 2, " MW")],
    ["", fmt(tt.w_m2, 1, " W/m²")],
    [t("totals.return"), fmt(tt.return_c, 1, " °C")],
    [t("totals.within"), fmt(tt.in_control_pct, 1, " %")],
    [t("totals.alarms"), tt.alarms],
  ];
  $("totals").replaceChildren(...parts.map(([k, v]) => el("span", {}, k ? k + " " : "", el("b", {}, v), "  ")));
  $("alarm-count").textContent = tt.alarms ? String(tt.alarms) : "";
}

// ---- Overview ---------------------------------------------------------------------------

let currentView = "";

function showOverview() {
  currentView = "overview";
  app.els.clear();
  const f = app.filter;
  const search = el("input", { id: "search", type: "search", placeholder: t("overview.search"), value: f.text });
  search.addEventListener("input", () => { f.text = search.value.trim().toLowerCase(); applyFilter(); });
  const state = el("select", { id: "state-filter" },
    el("option", { value: "" }, t("overview.every_state")),
    STATES.map((k) => el("option", { value: k, selected: f.state === k }, t("state." + k))),
    el("option", { value: "alarm", selected: f.state === "alarm" }, t("overview.with_alarm")));
  state.addEventListener("change", () => { f.state = state.value; applyFilter(); });
  const tags = [...new Set([...app.tiles.values()].flatMap((t) => Object.entries(t.tags || {}).map(([k, v]) => k + "=" + v)))].sort();
  const tag = el("select", { id: "tag-filter" },
    el("option", { value: "" }, t("overview.every_tag")),
    tags.map((kv) => el("option", { value: kv, selected: f.tag === kv }, kv)));
  tag.addEventListener("change", () => { f.tag = tag.value; applyFilter(); });
  const sort = el("select", { id: "sort" },
    ["id", "error", "age", "heat"].map((k) => el("option", { value: k, selected: f.sort === k }, t("sort." + k))));
  sort.addEventListener("change", () => { f.sort = sort.value; order(); });
  const legend = el("span", { class: "legend" },
    STATES.map((k) => el("span", {}, el("i", { class: "s-" + k }), t("state." + k))));
  const grid = el("div", { class: "tiles", id: "tiles" });
  grid.addEventListener("click", (ev) => {
    const t = ev.target.closest(".tile");
    if (t) location.hash = "#/station/" + encodeURIComponent(t.dataset.id);
  });
  $("view").replaceChildren(el("div", { class: "controls" }, search, state, tag, sort, legend), grid);
  drawTiles(null);
}

function tileError(t) {
  return t.sup !== null && t.set !== null && t.sup !== undefined && t.set !== undefined ? t.sup - t.set : null;
}

function drawTiles(changed) {
  const grid = $("tiles");
  if (!grid) return;
  if (changed === null) {
    grid.replaceChildren();
    app.els.clear();
    grid.classList.toggle("compact", app.tiles.size > COMPACT_FROM);
    for (const t of app.tiles.values()) {
      const e = el("div", { class: "tile", "data-id": t.id }, el("span", { class: "n" }), el("span", { class: "e" }));
      app.els.set(t.id, e);
      paint(e, t);
    }
    order();
    applyFilter();
    // The first complete overview, once painted (read by benches/web.rs).
    if (app.tiles.size && !performance.getEntriesByName("overview-complete").length) {
      requestAnimationFrame(() => performance.mark("overview-complete"));
    }
    return;
  }
  for (const t of changed) {
    const e = app.els.get(t.id);
    if (e) { paint(e, t); matches(t) ? e.classList.remove("hidden") : e.classList.add("hidden"); }
  }
}

function paint(e, tile) {
  const err = tileError(tile);
  let cls = "tile s-" + tile.state;
  if (tile.alarm) cls += " al al-" + tile.alarm;
  if (tile.ts && serverNow() - tile.ts > OLD_MS) cls += " old";
  if (e.className !== cls) e.className = cls;
  e.firstChild.textContent = tile.id;
  e.lastChild.textContent = err === null ? "–" : (err > 0 ? "+" : "") + fmt(err, 1);
  e.title = tile.id + ": " + tv("state", tile.state) +
    (tile.alarm ? t("tile.alarms", { n: tile.alarms, worst: tv("sev", tile.alarm) }) : "") + "\n" +
    t("tile.temps", { sup: fmt(tile.sup), set: fmt(tile.set), ret: fmt(tile.ret) }) + "\n" +
    t("tile.flow", { flow: fmt(tile.flow, 2), kw: fmt(tile.kw) }) + "\n" +
    t("tile.reading", { age: age(tile.ts) }) + (tile.owner ? t("tile.led_by", { owner: tile.owner }) : "");
}

function markOld(feedLost) {
  const now = serverNow();
  for (const [id, e] of app.els) {
    const t = app.tiles.get(id);
    const old = feedLost || !t || !t.ts || now - t.ts > OLD_MS;
    if (old !== e.classList.contains("old")) e.classList.toggle("old", old);
  }
}

function matches(t) {
  const f = app.filter;
  if (f.state === "alarm" ? !t.alarm : f.state && t.state !== f.state) return false;
  if (f.tag) {
    const [k, v] = f.tag.split("=");
    if ((t.tags || {})[k] !== v) return false;
  }
  if (!f.text) return true;
  if (t.id.toLowerCase().includes(f.text)) return true;
  return Object.entries(t.tags || {}).some(([k, v]) => (k + "=" + v).toLowerCase().includes(f.text));
}

function applyFilter() {
  for (const [id, e] of app.els) {
    const t = app.tiles.get(id);
    e.classList.toggle("hidden", !t || !matches(t));
  }
}

function order() {
  const grid = $("tiles");
  if (!grid) return;
  const key = {
    id: (t) => t.id,
    error: (t) => -Math.abs(tileError(t) ?? 1e9),
    age: (t) => t.ts ?? -1e18,
    heat: (t) => -(t.kw ?? 0),
  }[app.filter.sort];
  const tiles = [...app.tiles.values()].sort((a, b) => {
    const x = key(a), y = key(b);
    return x < y ? -1 : x > y ? 1 : a.id.localeCompare(b.id);
  });
  grid.append(...tiles.map((t) => app.els.get(t.id)).filter(Boolean));
}

// ---- Station page -----------------------------------------------------------------------

async function showStation(id) {
  currentView = "station";
  const view = $("view");
  view.replaceChildren(el("p", { class: "dim" }, t("station.loading", { id })));
  const draw = async () => {
    try {
      const s = await api("/api/v1/stations/" + encodeURIComponent(id));
      if (currentView === "station" && location.hash === "#/station/" + encodeURIComponent(id)) drawStation(s);
    } catch (e) {
      delete view.dataset.station;
      view.replaceChildren(el("p", { class: "error" }, t("station.error", { id, why: e.message })));
    }
  };
  app.pageTimer = setInterval(draw, 2000);
  app.history = null;
  if (app.me.history) {
    // Read once per visit; used while the engine's own trend is short.
    api("/api/v1/stations/" + encodeURIComponent(id) + "/history?hours=4")
      .then((h) => { app.history = { id, points: h.points }; })
      .catch(() => { app.history = null; });
  }
  await draw();
}

function kv(rows) {
  return el("table", {}, rows.filter(Boolean).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "num" }, v))));
}

function drawStation(s) {
  const r = s.reading || {};
  const c = s.controller || {};
  const lim = s.limits || {};
  const readingTs = r.ts_ms ?? (s.age_s !== null && s.age_s !== undefined ? serverNow() - s.age_s * 1000 : null);
  const fresh = !s.stale && readingTs && serverNow() - readingTs < OLD_MS;
  const head = el("h2", {}, s.id, " ",
    el("span", { class: "pill s-" + (s.stale ? "stale" : s.mode === "auto" ? "in_control" : "manual") }, s.stale ? t("state.stale") : tv("mode", s.mode)),
    " ", el("span", { class: "dim" }, t("tile.reading", { age: age(readingTs) }) + (s.owner ? " · " + t("station.led_by", { owner: s.owner }) : "")));
  const values = el("div", { class: "card" }, el("h3", {}, fresh ? t("station.now") : t("station.last_known")), kv([
    [t("f.supply"), fmt(s.supply_temp_c, 1, " °C")], [t("f.setpoint"), fmt(s.supply_setpoint_c, 1, " °C")],
    [t("f.return"), fmt(s.return_temp_c, 1, " °C")], ["ΔT", fmt(s.delta_t_k, 1, " K")],
    [t("f.flow_setpoint"), fmt(s.flow_m3h, 2) + " / " + fmt(s.flow_setpoint_m3h, 2, " m³/h")],
    [t("f.valve_pump"), fmt(s.valve_pct, 0) + " / " + fmt(s.pump_pct, 0, " %")],
    [t("f.heat"), fmt(s.heat_kw, 1, " kW") + " (" + fmt(s.heat_w_m2, 1, " W/m²") + ")"],
    [t("f.outdoor"), fmt(s.outdoor_temp_c, 1, " °C")],
    s.indoor_temp_c !== null && s.indoor_temp_c !== undefined ? [t("f.indoor"), fmt(s.indoor_temp_c, 1, " °C")] : null,
  ]));
  // The engine's memory, unless it is short (a restart) and the database has more.
  let pts = s.trend || [];
  let source = t("trend.memory", { n: pts.length });
  const db = app.history && app.history.id === s.id ? app.history.points : [];
  if (pts.length < 30 && db.length > pts.length) {
    pts = db;
    source = t("trend.database", { n: db.length, memory: (s.trend || []).length });
  }
  const trend = el("div", { class: "card wide", id: "trend", "data-source": pts === db ? "database" : "engine" },
    el("h3", {}, t("trend.title", { source })),
    trendSvg(pts, [["supply_temp_c", "sup", t("f.supply")], ["supply_setpoint_c", "set", t("f.setpoint")], ["return_temp_c", "ret", t("f.return")]], "°C"),
    trendSvg(pts, [["flow_m3h", "sup", t("f.flow")], ["flow_setpoint_m3h", "set", t("f.flow_sp")]], "m³/h"),
    trendSvg(pts, [["valve_pct", "sup", t("f.valve")], ["pump_pct", "ret", t("f.pump")]], "%"),
    trendSvg(pts, [["outdoor_temp_c", "out", t("f.outdoor")]], "°C"));
  const antiWindup = (loop) => loop.anti_windup ? " (" + t("control.anti_windup") + ")" : "";
  const loops = el("div", { class: "card" }, el("h3", {}, t("control.title")), kv([
    [t("control.offset"), fmt(c.supply_offset_k, 1, " K")],
    [t("control.district_offset"), fmt(c.district_offset_k, 2, " K")],
    c.fixed_supply_c !== null && c.fixed_supply_c !== undefined
      ? [t("control.fixed"), fmt(c.fixed_supply_c, 1, " °C") + (c.fixed_until_ms ? " " + t("control.until", { at: dateTime(c.fixed_until_ms) }) : "")] : null,
    [t("control.return_correction"), fmt(c.return_correction_k, 2, " K")],
    [t("control.valve_loop"), c.valve_loop ? fmt(c.valve_loop.p, 2) + " / " + fmt(c.valve_loop.i, 2) + antiWindup(c.valve_loop) : "–"],
    [t("control.pump_loop"), c.pump_loop ? fmt(c.pump_loop.p, 2) + " / " + fmt(c.pump_loop.i, 2) + antiWindup(c.pump_loop) : "–"],
    [t("control.supply_limits"), fmt(lim.supply_min_c, 0) + " – " + fmt(lim.supply_max_c, 0, " °C")],
    [t("control.valve_limits"), fmt(lim.valve_min_pct, 0) + " – " + fmt(lim.valve_max_pct, 0, " %")],
    [t("control.pump_limits"), fmt(lim.pump_min_pct, 0) + " – " + fmt(lim.pump_max_pct, 0, " %")],
  ]));
  const link = el("div", { class: "card" }, el("h3", {}, t("link.title")), kv([
    [t("link.seq"), String(s.seq ?? "–") + (s.epoch ? " (" + t("link.epoch", { epoch: s.epoch }) + ")" : "")],
    [t("link.acked_seq"), String(s.acked_seq ?? "–")],
    [t("link.ack_error"), s.ack_error || t("none")],
    [t("link.link"), s.link || "–"],
    [t("link.link_error"), s.link_error || t("none")],
  ]));
  const cmds = s.recent_commands || [];
  const commands = el("div", { class: "card" }, el("h3", {}, t("commands.title")),
    cmds.length ? el("table", {},
      el("tr", {}, el("th", {}, t("commands.seq")), el("th", {}, t("commands.sent")), el("th", {}, t("f.setpoint")), el("th", {}, t("f.valve_pump")), el("th", {}, t("commands.ack"))),
      cmds.map((c) => el("tr", {},
        el("td", { class: "num" }, String(c.seq)), el("td", {}, age(c.ts)),
        el("td", { class: "num" }, fmt(c.supply_setpoint_c, 1, " °C")),
        el("td", { class: "num" }, fmt(c.valve_pct, 0) + " / " + fmt(c.pump_pct, 0, " %")),
        el("td", {}, c.acked ? t("commands.acknowledged") : t("commands.not_yet"))))) : el("p", { class: "dim" }, t("commands.none")));
  const k = s.kpis_today || {};
  const kpis = el("div", { class: "card" }, el("h3", {}, t("kpi.title")),
    kv(Object.entries(k).filter(([, v]) => typeof v === "number").map(([name, v]) => [tv("kpi", name).replaceAll("_", " "), fmt(v, 2)])));
  const alarms = el("div", { class: "card" }, el("h3", {}, t("alarms.active")), alarmTable(s.alarms || [], false));
  const suspects = el("div", { class: "card", id: "suspects" }, el("h3", {}, t("station.suspects")),
    findingTable([s], false));
  // The page's frame and the change forms are made once per visit; a refresh replaces only
  // the figures, so it never wipes (or takes the focus from) what an operator is typing.
  if ($("view").dataset.station !== s.id) {
    $("view").dataset.station = s.id;
    $("view").replaceChildren(
      el("p", {}, el("a", { href: "#/" }, t("station.back"))),
      el("div", { id: "station-head" }),
      el("div", { class: "cards", id: "station-data" }));
    if (app.me.role === "operator") $("view").append(el("div", { class: "cards" }, changeForms(s)));
  }
  $("station-head").replaceChildren(head);
  $("station-data").replaceChildren(values, trend, loops, link, commands, alarms, suspects, kpis);
}

// ---- Diagnosis ---------------------------------------------------------------------------

/** The worst finding's confidence of a station row (0 without one). */
function worst(row) {
  return Math.max(0, ...(row.diagnosis || []).map((f) => f.confidence));
}

/** One line per finding of the given station rows (their `diagnosis`), worst station first. */
function findingTable(rows, withStation) {
  const list = rows.filter((r) => (r.diagnosis || []).length).sort((a, b) => worst(b) - worst(a));
  if (!list.length) return el("p", { class: "dim" }, t("diag.none"));
  return el("table", { class: "findings" },
    el("tr", {}, withStation ? el("th", {}, t("col.station")) : null, el("th", {}, t("diag.suspect")), el("th", {}, t("diag.confidence")),
      el("th", {}, t("diag.since")), el("th", {}, t("diag.evidence"))),
    list.flatMap((r) => r.diagnosis.map((f) => el("tr", {},
      withStation ? el("td", {}, el("a", { href: "#/station/" + encodeURIComponent(r.id) }, r.id)) : null,
      el("td", {}, tv("finding", f.kind).replaceAll("_", " ")),
      el("td", { class: "num" }, fmt(f.confidence * 100, 0, " %")),
      el("td", {}, dateTime(f.since_ms)),
      el("td", { class: "msg" }, f.evidence)))));
}

async function drawDiagnosis() {
  try {
    const v = await api("/api/v1/stations");
    if (currentView !== "diagnosis") return;
    const rows = v.stations || [];
    const n = rows.filter((r) => (r.diagnosis || []).length).length;
    const parts = [
      el("h2", {}, t("diag.title")),
      el("p", { class: "dim" }, t("diag.intro", { n, of: rows.length })),
      findingTable(rows, true),
    ];
    if (v.unreachable && v.unreachable.length) parts.push(el("p", { class: "error" }, t("unreachable", { who: v.unreachable.join(", ") })));
    // What cannot be judged: stations grouped by the faults their telemetry leaves unseen.
    const groups = new Map();
    for (const r of rows) {
      const u = r.unjudged || [];
      if (!u.length) continue;
      const key = u.map((x) => t("diag.needs", { kind: tv("finding", x.kind), needs: x.needs.join(", ") })).join("; ");
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(r.id);
    }
    if (groups.size) {
      parts.push(el("h3", { id: "unjudged" }, t("diag.unjudged")),
        el("p", { class: "dim" }, t("diag.unjudged_intro")),
        el("table", {}, [...groups].map(([what, ids]) => el("tr", {},
          el("td", {}, t(ids.length === 1 ? "diag.one_station" : "diag.stations", { n: ids.length })),
          el("td", {}, what), el("td", { class: "dim" }, ids.join(", "))))));
    }
    $("view").replaceChildren(...parts);
  } catch (e) {
    $("view").replaceChildren(el("p", { class: "error" }, t("diag.error", { why: e.message })));
  }
}

function showDiagnosis() {
  currentView = "diagnosis";
  app.pageTimer = setInterval(drawDiagnosis, 5000);
  drawDiagnosis();
}

// ---- Plant and network -------------------------------------------------------------------

/** A key-value table of [name, value] rows. */
function plantRows(rows) {
  return el("table", {}, rows.map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", { class: "num" }, v))));
}

// The network as the engine sees it: the plant, then every station that reports its primary
// side, nearest first (the most differential pressure left across it), each a dot coloured by
// its state with its primary supply under it; the most demanding station and the pressure
// point are marked. The engine knows no pipes, only what the stations report: the order is by
// pressure, which falls with the friction on the way.
function networkSvg(rows, plan, plantSupply) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "network");
  svg.setAttribute("id", "network");
  const on = rows.filter((r) => Number.isFinite(r.primary_diff_pressure_kpa))
    .sort((a, b) => b.primary_diff_pressure_kpa - a.primary_diff_pressure_kpa || a.id.localeCompare(b.id));
  const width = Math.max(600, 80 + on.length * 28);
  svg.setAttribute("viewBox", "0 0 " + width + " 150");
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  if (!on.length) {
    add("text", { x: 10, y: 20 }, t("net.no_primary"));
    return svg;
  }
  const x = (i) => 70 + i * 28;
  add("line", { x1: 30, y1: 60, x2: x(on.length - 1), y2: 60, class: "main" });
  add("rect", { x: 8, y: 45, width: 40, height: 30, rx: 3, class: "plant" });
  add("text", { x: 12, y: 64, class: "lbl" }, t("net.plant"));
  add("text", { x: 8, y: 92, class: "lbl" }, fmt(plantSupply, 1, " °C"));
  const critical = plan && plan.critical ? plan.critical[0] : null;
  const point = plan ? plan.pressure_point : null;
  on.forEach((r, i) => {
    const tile = app.tiles.get(r.id);
    const state = tile ? tile.state : (r.stale ? "stale" : "in_control");
    const dot = add("circle", { cx: x(i), cy: 60, r: 8, class: "st s-" + state, "data-id": r.id });
    dot.addEventListener("click", () => { location.hash = "#/station/" + encodeURIComponent(r.id); });
    const title = document.createElementNS(NS, "title");
    title.textContent = r.id + ": " + t("net.dot", { dp: fmt(r.primary_diff_pressure_kpa, 0, " kPa"), sup: fmt(r.primary_supply_temp_c, 1, " °C"), valve: fmt(r.valve_pct, 0, " %") });
    dot.append(title);
    add("text", { x: x(i), y: 40, class: "id", transform: "rotate(-45 " + x(i) + " 40)" }, r.id);
    add("text", { x: x(i), y: 88, class: "t" }, fmt(r.primary_supply_temp_c, 0));
    add("text", { x: x(i), y: 102, class: "t dim" }, fmt(r.primary_diff_pressure_kpa, 0));
    if (r.id === critical) {
      add("circle", { cx: x(i), cy: 60, r: 12, class: "critical" });
      add("text", { x: x(i), y: 120, class: "mark", id: "critical-mark" }, t("net.critical"));
    }
    if (r.id === point) add("text", { x: x(i), y: 134, class: "mark", id: "point-mark" }, t("net.point"));
  });
  add("text", { x: 8, y: 145, class: "lbl dim" }, t("net.legend"));
  return svg;
}

// The network from its pipes (`[plant] network`, GET /api/v1/network): the plant on the left,
// each pipe drawn from its upstream node over its length (x: metres from the plant) and
// thicker for a wider pipe, each station a dot coloured by its state with its primary supply
// and differential pressure beside it — the supply temperature along the way. The most
// demanding station and the pressure point are marked.
function layoutSvg(layout, rows, plan, plantSupply) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "network tree");
  svg.setAttribute("id", "network");
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  const byId = new Map(rows.map((r) => [r.id, r]));
  const nodes = new Map(layout.nodes.map((n) => [n.id, n]));
  const kids = new Map();
  for (const p of layout.pipes) {
    if (!kids.has(p.from)) kids.set(p.from, []);
    kids.get(p.from).push(p);
  }
  const plant = layout.nodes.find((n) => n.kind === "plant");
  // Depth along the pipes; leaves one row each in depth-first order, a junction beside its
  // first branch.
  const depth = new Map([[plant.id, 0]]);
  const row = new Map();
  let rowsUsed = 0;
  const walk = (id) => {
    const out = (kids.get(id) || []).slice().sort((a, b) => a.to.localeCompare(b.to));
    if (!out.length) { row.set(id, rowsUsed++); return; }
    for (const p of out) { depth.set(p.to, depth.get(id) + p.length_m); walk(p.to); }
    row.set(id, row.get(out[0].to));
  };
  walk(plant.id);
  const deepest = Math.max(1, ...depth.values());
  const W = 900, H = 30 + rowsUsed * 18;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.style.height = Math.min(900, H) + "px";
  const x = (id) => 60 + (depth.get(id) / deepest) * (W - 300);
  const y = (id) => 20 + row.get(id) * 18;
  for (const p of layout.pipes) {
    if (!depth.has(p.to)) continue;
    const w = Math.max(1, Math.min(6, p.inner_diameter_m * 12));
    const d = "M" + x(p.from) + " " + y(p.from) + " V" + y(p.to) + " H" + x(p.to);
    const line = add("path", { d, class: "pipe", "stroke-width": w.toFixed(1), "data-id": p.id });
    const title = document.createElementNS(NS, "title");
    title.textContent = p.id + ": " + fmt(p.length_m, 0, " m") + ", DN " + fmt(p.inner_diameter_m * 1000, 0, " mm");
    line.append(title);
  }
  add("rect", { x: 8, y: y(plant.id) - 12, width: 44, height: 24, rx: 3, class: "plant" });
  add("text", { x: 12, y: y(plant.id) + 4, class: "lbl" }, t("net.plant"));
  add("text", { x: 8, y: y(plant.id) + 26, class: "lbl" }, fmt(plantSupply, 1, " °C"));
  const critical = plan && plan.critical ? plan.critical[0] : null;
  const point = plan ? plan.pressure_point : null;
  for (const [id, n] of nodes) {
    if (!depth.has(id) || n.kind === "plant") continue;
    if (n.kind !== "station") { add("circle", { cx: x(id), cy: y(id), r: 2.5, class: "junction" }); continue; }
    const r = byId.get(n.station);
    const tile = app.tiles.get(n.station);
    const state = !r ? "stale" : tile ? tile.state : (r.stale ? "stale" : "in_control");
    const dot = add("circle", { cx: x(id), cy: y(id), r: 6, class: "st s-" + state, "data-id": n.station });
    dot.addEventListener("click", () => { location.hash = "#/station/" + encodeURIComponent(n.station); });
    const title = document.createElementNS(NS, "title");
    title.textContent = n.station + ": " + (r ? t("net.dot", { dp: fmt(r.primary_diff_pressure_kpa, 0, " kPa"), sup: fmt(r.primary_supply_temp_c, 1, " °C"), valve: fmt(r.valve_pct, 0, " %") }) : t("net.not_configured"));
    dot.append(title);
    let label = n.station + "  " + (r ? fmt(r.primary_supply_temp_c, 1, " °C") + "  " + fmt(r.primary_diff_pressure_kpa, 0, " kPa") : "–");
    if (n.station === critical) label += "  ◀ " + t("net.critical");
    if (n.station === point) label += "  ◀ " + t("net.point");
    add("text", { x: x(id) + 10, y: y(id) + 4, class: "lbl" }, label);
    if (n.station === critical) {
      add("circle", { cx: x(id), cy: y(id), r: 10, class: "critical", id: "critical-mark" });
    }
    if (n.station === point) add("circle", { cx: x(id), cy: y(id), r: 13, class: "point", id: "point-mark" });
  }
  return svg;
}

async function drawPlant() {
  let p;
  try {
    p = await api("/api/v1/plant");
  } catch (e) {
    if (currentView === "plant") $("view").replaceChildren(el("p", { class: "error", id: "plant-error" }, t("plant.error", { why: e.message })));
    return;
  }
  let rows = [];
  try { rows = (await api("/api/v1/stations")).stations || []; } catch (_) { /* the plant alone */ }
  if (currentView !== "plant") return;
  const r = p.reading || {};
  const plan = p.plan || {};
  const head = el("h2", { id: "plant-head" }, t("plant.title", { id: p.id }) + " ",
    el("span", { class: "pill s-" + (p.stale ? "stale" : p.mode === "control" ? "in_control" : "manual") },
      p.stale ? t("plant.no_telemetry") : tv("plant.mode", p.mode)));
  const now = el("div", { class: "card", id: "plant-now" }, el("h3", {}, t("station.now")), plantRows([
    [t("f.supply"), fmt(r.supply_temp_c, 1, " °C")], [t("f.return"), fmt(r.return_temp_c, 1, " °C")],
    [t("f.flow"), fmt(r.flow_m3h, 0, " m³/h")], [t("f.heat"), fmt(r.heat_kw / 1000, 1, " MW")],
    [t("plant.dp_outlet"), fmt(r.diff_pressure_kpa, 0, " kPa")], [t("plant.pumps"), fmt(r.pump_pct, 0, " %")],
    ...Object.entries(r.units || {}).map(([k, v]) => [t("plant.unit", { unit: k }), fmt(v / 1000, 1, " MW")]),
    [t("plant.reading"), age(r.ts_ms)],
  ]));
  const crit = plan.critical || [];
  const asks = el("div", { class: "card", id: "plant-plan" }, el("h3", {}, t("plant.asks", { basis: plan.basis ? tv("plant.basis", plan.basis) : "–" })), plantRows([
    [t("plant.supply_setpoint"), fmt(plan.supply_setpoint_c, 1, " °C")],
    [t("plant.curve_trim"), fmt(plan.curve_c, 1, " °C") + " / " + fmt(plan.trim_k, 1, " K")],
    [t("plant.lead"), fmt(plan.lead_s / 60, 0, " min") + " (" + t(plan.lead_learned ? "plant.lead_learned" : "plant.lead_configured") + ")"],
    [t("plant.dp_setpoint"), t("plant.at", { value: fmt(plan.diff_pressure_setpoint_kpa, 0, " kPa"), where: plan.pressure_point || "–" })],
    [t("plant.most_demanding"), (crit[0] || "–") + " (" + fmt(crit[1], 0, " %") + ")"],
    [t("plant.loss_pumps"), fmt(plan.loss_kw, 0, " kW") + " / " + fmt(plan.pump_kw, 0, " kW")],
    [t("plant.lower"), plan.lower_pays === true ? t("plant.pays") : plan.lower_pays === false ? t("plant.does_not_pay") : t("plant.not_weighed")],
    [t("plant.last_command"), p.last_command
      ? t("plant.seq", { seq: p.last_command.seq }) + (p.acked_seq >= p.last_command.seq ? ", " + t("commands.acknowledged") : "")
      : t("plant.no_command", { mode: tv("plant.mode", p.mode) })],
    [t("plant.lowest_dp"), p.lowest_station_dp ? t("plant.at", { value: fmt(p.lowest_station_dp[1], 0, " kPa"), where: p.lowest_station_dp[0] }) : "–"],
  ]));
  const points = (p.trend || []).map((x) => ({ ...x, t_ms: x.ts_ms }));
  const trend = el("div", { class: "card wide", id: "plant-trend" }, el("h3", {}, t("plant.trend")),
    trendSvg(points, [["supply_c", "sup", t("f.supply")], ["setpoint_c", "set", t("f.setpoint")], ["return_c", "ret", t("f.return")]], "°C"),
    trendSvg(points, [["dp_setpoint_kpa", "set", t("plant.dp_setpoint")], ["lowest_dp_kpa", "out", t("plant.lowest_dp")]], "kPa"));
  const drawing = app.layout ? layoutSvg(app.layout, rows, plan, r.supply_temp_c) : networkSvg(rows, plan, r.supply_temp_c);
  const note = app.layout ? t("plant.note_file") : t("plant.note_pressure");
  const net = el("div", { class: "card wide", id: "plant-network" }, el("h3", {}, t("plant.network")), drawing, el("p", { class: "dim" }, note));
  $("view").replaceChildren(head, el("div", { class: "cards" }, now, asks, trend, net));
}

function showPlant() {
  currentView = "plant";
  // The layout is static: read once (404 without a network file).
  if (app.layout === undefined) {
    app.layout = null;
    api("/api/v1/network").then((l) => { app.layout = l; drawPlant(); }).catch(() => { /* drawn by pressure */ });
  }
  app.pageTimer = setInterval(drawPlant, 5000);
  drawPlant();
}

// One chart of `series` ([key, css class, label]) over the trend's points, auto-scaled, with
// the time span under it.
function trendSvg(points, series, unit) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("class", "trend");
  svg.setAttribute("viewBox", "0 0 600 130");
  svg.setAttribute("preserveAspectRatio", "none");
  const text = (x, y, words, cls) => {
    const e = document.createElementNS(NS, "text");
    e.setAttribute("x", String(x)); e.setAttribute("y", String(y));
    if (cls) e.setAttribute("class", cls);
    e.textContent = words;
    svg.append(e);
  };
  if (points.length < 2) {
    text(10, 20, t("trend.none"));
    return svg;
  }
  const vals = points.flatMap((p) => series.map(([k]) => p[k])).filter(Number.isFinite);
  if (!vals.length) {
    text(10, 20, t("trend.no_data", { what: series.map(([, , label]) => label).join(t("trend.or")) }));
    return svg;
  }
  let lo = Math.min(...vals), hi = Math.max(...vals);
  const pad = Math.max(1, (hi - lo) * 0.1);
  lo = Math.floor(lo - pad); hi = Math.ceil(hi + pad);
  const t0 = points[0].t_ms, t1 = points[points.length - 1].t_ms;
  const x = (p, i) => 34 + ((t1 > t0 ? (p.t_ms - t0) / (t1 - t0) : i / (points.length - 1)) * 560);
  const y = (v) => 110 - ((v - lo) * 100) / (hi - lo);
  for (const v of [lo, (lo + hi) / 2, hi]) {
    const line = document.createElementNS(NS, "line");
    line.setAttribute("x1", "34"); line.setAttribute("x2", "594");
    line.setAttribute("y1", String(y(v))); line.setAttribute("y2", String(y(v)));
    svg.append(line);
    text(2, y(v) + 3, fmt(v, hi - lo < 10 ? 1 : 0));
  }
  series.forEach(([key, cls, label], n) => {
    const path = document.createElementNS(NS, "polyline");
    path.setAttribute("class", cls);
    path.setAttribute("points", points.filter((p) => Number.isFinite(p[key]))
      .map((p, i) => x(p, i).toFixed(1) + "," + y(p[key]).toFixed(1)).join(" "));
    svg.append(path);
    text(40 + n * 150, 126, "— " + label, cls);
  });
  const mins = Math.round((t1 - t0) / 60000);
  text(430, 126, unit + " · " + t("trend.span", { span: mins >= 120 ? fmt(mins / 60, 1, " h") : mins + " min", age: age(t1) }));
  return svg;
}

// ---- Changes (operators only; the API checks the role and the limits again) -------------

function confirmChange(text, send) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-error").textContent = "";
  const yes = $("confirm-yes");
  const no = $("confirm-no");
  yes.disabled = false;
  yes.onclick = async () => {
    yes.disabled = true;
    try {
      await send();
      dialog.close();
    } catch (e) {
      $("confirm-error").textContent = t("change.refused", { why: e.message });
    } finally {
      yes.disabled = false;
    }
  };
  no.onclick = () => dialog.close();
  dialog.showModal();
}

function changeForms(s) {
  const id = s.id;
  const path = (what) => "/api/v1/stations/" + encodeURIComponent(id) + "/" + what;
  const offset = el("input", { type: "number", step: "0.5", id: "offset", value: s.controller ? s.controller.supply_offset_k : 0 });
  const offsetForm = el("form", { class: "change", id: "offset-form" }, t("control.offset"), offset, "K", el("button", { type: "submit" }, t("change.set")));
  offsetForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const k = Number(offset.value);
    confirmChange(t("change.offset_q", { id, k }), () => api(path("supply"), { method: "POST", body: { offset_k: k } }));
  });
  const fixed = el("input", { type: "number", step: "0.5", id: "fixed" });
  const hours = el("input", { type: "number", step: "0.5", min: "0", id: "fixed-hours", value: "2" });
  const fixedForm = el("form", { class: "change", id: "fixed-form" }, t("control.fixed"), fixed, t("change.c_for"), hours, "h",
    el("button", { type: "submit" }, t("change.fix")),
    el("button", { type: "button", id: "clear-fixed", onclick: () => confirmChange(t("change.back_q", { id }),
      () => api(path("supply"), { method: "POST", body: { clear_fixed: true } })) }, t("change.back")));
  fixedForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const c = Number(fixed.value), h = Number(hours.value);
    confirmChange(t("change.fix_q", { id, c, h }),
      () => api(path("supply"), { method: "POST", body: { fixed_c: c, expires_in_s: h * 3600 } }));
  });
  const mode = el("select", { id: "mode" }, ["auto", "manual", "hold"].map((m) => el("option", { value: m, selected: s.mode === m }, t("mode." + m))));
  const valve = el("input", { type: "number", step: "1", id: "valve", placeholder: t("change.valve_pct") });
  const pump = el("input", { type: "number", step: "1", id: "pump", placeholder: t("change.pump_pct") });
  const modeForm = el("form", { class: "change", id: "mode-form" }, t("change.mode"), mode, valve, pump, el("button", { type: "submit" }, t("change.switch")));
  modeForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const body = { mode: mode.value };
    if (mode.value === "manual") { body.valve_pct = Number(valve.value); body.pump_pct = Number(pump.value); }
    confirmChange(mode.value === "manual"
      ? t("change.switch_manual_q", { id, valve: body.valve_pct, pump: body.pump_pct })
      : t("change.switch_q", { id, mode: t("mode." + mode.value) }),
      () => api(path("mode"), { method: "POST", body }));
  });
  const points = ((s.controller && s.controller.curve) || []).map(([o, sup]) => o + ":" + sup).join(", ");
  const curve = el("input", { type: "text", id: "curve", class: "curve", value: points, title: t("change.curve_title") });
  const curveForm = el("form", { class: "change", id: "curve-form" }, t("change.curve"), curve, el("button", { type: "submit" }, t("change.set")));
  curveForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const parsed = curve.value.split(",").map((p) => p.split(":").map(Number));
    confirmChange(t("change.curve_q", { id, curve: curve.value }),
      () => api(path("curve"), { method: "POST", body: { points: parsed } }));
  });
  return el("div", { class: "card", id: "changes" }, el("h3", {}, t("change.title")), offsetForm, fixedForm, modeForm, curveForm);
}

// ---- Alarms -----------------------------------------------------------------------------

function alarmTable(list, withStation) {
  if (!list.length) return el("p", { class: "dim" }, t("none"));
  const operator = app.me.role === "operator";
  return el("table", { class: "alarms" },
    el("tr", {}, withStation ? el("th", {}, t("col.station")) : null, el("th", {}, t("alarm.severity")), el("th", {}, t("alarm.kind")),
      el("th", {}, t("alarm.message")), el("th", {}, t("alarm.raised")), el("th", {}, t("alarm.acknowledged")), operator ? el("th", {}) : null),
    list.map((a) => el("tr", { "data-alarm": (a.instance ? a.instance + ":" : "") + a.id },
      withStation ? el("td", {}, el("a", { href: "#/station/" + encodeURIComponent(a.station) }, a.station)) : null,
      el("td", { class: "sev-" + a.severity }, tv("sev", a.severity)),
      el("td", {}, tv("kind", a.kind)), el("td", { class: "msg" }, a.message),
      el("td", { title: dateTime(a.raised_ms) }, age(a.raised_ms)),
      el("td", {}, a.cleared_ms ? t("alarm.cleared", { age: age(a.cleared_ms) }) : a.acked_by ? a.acked_by + ", " + age(a.acked_ms) : t("alarm.no")),
      operator && !a.acked_by && !a.cleared_ms
        ? el("td", {}, el("button", { type: "button", class: "ack", onclick: () => confirmChange(
          t("alarm.ack_q", { kind: tv("kind", a.kind), station: a.station }),
          async () => {
            await api("/api/v1/alarms/" + a.id + "/ack" + (a.instance ? "?instance=" + encodeURIComponent(a.instance) : ""), { method: "POST", body: {} });
            if (currentView === "alarms") drawAlarms();
          }) }, t("alarm.ack")))
        : operator ? el("td", {}) : null)));
}

async function drawAlarms() {
  try {
    const v = await api("/api/v1/alarms");
    if (currentView !== "alarms") return;
    const parts = [
      el("h2", {}, t("alarms.active")), alarmTable(v.active, true),
      el("h2", {}, t("alarms.recent")), alarmTable(v.recent.slice(0, 100), true),
    ];
    if (v.unreachable && v.unreachable.length) parts.push(el("p", { class: "error" }, t("unreachable", { who: v.unreachable.join(", ") })));
    $("view").replaceChildren(...parts);
  } catch (e) {
    $("view").replaceChildren(el("p", { class: "error" }, t("alarms.error", { why: e.message })));
  }
}

function showAlarms() {
  currentView = "alarms";
  app.pageTimer = setInterval(drawAlarms, 3000);
  drawAlarms();
}

// ---- Reports ----------------------------------------------------------------------------

const DAY_MS = 86400000;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);

function showReports() {
  currentView = "reports";
  const today = Math.floor(serverNow() / DAY_MS) * DAY_MS;
  const from = el("input", { type: "date", id: "report-from", value: isoDay(today - 7 * DAY_MS) });
  const to = el("input", { type: "date", id: "report-to", value: isoDay(today + DAY_MS) });
  const out = el("div", { id: "report-out" });
  const show = () => drawReport(from.value, to.value);
  const fail = (e) => out.prepend(el("p", { class: "error" }, t("report.error", { why: e.message })));
  const form = el("form", { class: "controls", id: "report-form" },
    t("report.from"), from, t("report.to"), to,
    el("button", { type: "submit", class: "primary" }, t("report.show")),
    el("button", { type: "button", id: "report-csv", onclick: () => download(from.value, to.value, "csv").catch(fail) }, t("report.csv")),
    el("button", { type: "button", id: "report-html", onclick: () => download(from.value, to.value, "html").catch(fail) }, t("report.html")));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); show(); });
  $("view").replaceChildren(el("h2", {}, t("report.title")), el("p", { class: "dim" }, t("report.intro")), form, out);
  show();
}

async function drawReport(from, to) {
  const out = $("report-out");
  out.replaceChildren(el("p", { class: "dim" }, t("report.loading")));
  let r;
  try {
    r = await api("/api/v1/report?from=" + encodeURIComponent(from) + "&to=" + encodeURIComponent(to));
  } catch (e) {
    if (currentView === "reports") out.replaceChildren(el("p", { class: "error" }, t("report.error", { why: e.message })));
    return;
  }
  if (currentView !== "reports") return;
  const pct = (x) => (x === null || x === undefined ? "–" : fmt(x * 100, 1, " %"));
  const row = (s, cls) => el("tr", { class: cls || "" },
    el("td", {}, s.station === "district" ? t("report.district") : el("a", { href: "#/station/" + encodeURIComponent(s.station) }, s.station)),
    el("td", { class: "num" }, fmt(s.heat_gj, 1)), el("td", { class: "num" }, fmt(s.gj_per_m2, 4)),
    el("td", { class: "num" }, fmt(s.gj_per_degree_day, 2)),
    el("td", { class: "num" }, fmt(s.supply_mean_c, 1)), el("td", { class: "num" }, fmt(s.return_mean_c, 1)),
    el("td", { class: "num" }, fmt(s.delta_t_mean_k, 1)), el("td", { class: "num" }, pct(s.comfort)),
    el("td", { class: "num" }, String(s.alarms)), el("td", { class: "num" }, pct(s.coverage)),
    el("td", { class: "num" }, s.above_fleet_pct === null || s.above_fleet_pct === undefined ? "–" : (s.above_fleet_pct > 0 ? "+" : "") + fmt(s.above_fleet_pct, 1, " %")));
  const league = r.league.length
    ? el("table", { id: "report-league" },
      el("tr", {}, el("th", {}, "#"), el("th", {}, t("col.station")), el("th", {}, t("report.above")), el("th", {}, t("report.intensity"))),
      r.league.map((a) => el("tr", {}, el("td", { class: "num" }, String(a.rank)),
        el("td", {}, el("a", { href: "#/station/" + encodeURIComponent(a.station) }, a.station)),
        el("td", { class: "num" }, "+" + fmt(a.above_fleet_pct, 1, " %")), el("td", { class: "num" }, fmt(a.mj_per_m2_degree_day, 3)))))
    : el("p", { class: "dim" }, t("report.none_above"));
  out.replaceChildren(
    el("p", {}, t("report.summary", { from: dateTime(r.from_ms), to: dateTime(r.to_ms), dd: fmt(r.degree_days, 1), out: fmt(r.outdoor_mean_c, 1), source: r.source })),
    el("h3", {}, t("report.league", { fleet: fmt(r.fleet_mj_per_m2_degree_day, 3) })), league,
    el("h3", {}, t("report.stations")),
    el("table", { id: "report-stations" },
      el("tr", {}, [t("col.station"), t("report.heat"), t("report.gj_m2"), t("report.gj_dd"), t("f.supply") + " °C", t("f.return") + " °C",
        "ΔT K", t("report.comfort"), t("totals.alarms"), t("report.coverage"), t("report.vs_fleet")].map((h) => el("th", {}, h))),
      r.stations.map((s) => row(s)), row(r.district, "total")),
    el("p", { class: "dim" }, t("report.notes")));
}

/** The report of the period as a file (CSV, or the printable page), fetched with the token. */
async function download(from, to, format) {
  const r = await fetch("/api/v1/report?format=" + format + "&from=" + encodeURIComponent(from) + "&to=" + encodeURIComponent(to), {
    headers: { Authorization: "Bearer " + app.token },
    cache: "no-store",
  });
  if (!r.ok) {
    let why = r.status + " " + r.statusText;
    try { why = (await r.json()).error || why; } catch (_) { /* not JSON */ }
    throw new Error(why);
  }
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: "heatgrid-report-" + from + "-" + to + "." + format });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---- Routing ----------------------------------------------------------------------------

function route() {
  if (!app.token) return;
  clearInterval(app.pageTimer);
  delete $("view").dataset.station;
  const hash = location.hash || "#/";
  $("nav-overview").classList.toggle("here", hash === "#/");
  $("nav-alarms").classList.toggle("here", hash === "#/alarms");
  $("nav-diagnosis").classList.toggle("here", hash === "#/diagnosis");
  $("nav-plant").classList.toggle("here", hash === "#/plant");
  $("nav-reports").classList.toggle("here", hash === "#/reports");
  if (hash.startsWith("#/station/")) showStation(decodeURIComponent(hash.slice(10)));
  else if (hash === "#/alarms") showAlarms();
  else if (hash === "#/diagnosis") showDiagnosis();
  else if (hash === "#/plant") showPlant();
  else if (hash === "#/reports") showReports();
  else showOverview();
}

// ---- Language ---------------------------------------------------------------------------

/** The language picker (`id`), which switches the page at once and remembers the choice. */
function langSelect(id) {
  const s = el("select", { id, class: "lang", "aria-label": t("lang.label") },
    Object.entries(LANGS).map(([code, name]) => el("option", { value: code, selected: app.lang === code }, name)));
  s.addEventListener("change", () => setLang(s.value));
  return s;
}

function setLang(lang) {
  if (!CATALOGUES[lang]) return;
  app.lang = lang;
  localStorage.setItem(LANG_KEY, lang);
  translateStatic();
  if (!app.token || !app.me) return showSignIn(app.signInMessage);
  drawWho();
  drawTotals();
  feedStatus();
  route();
}

/** The words of index.html (`data-i18n` keys), the document's language and title. */
function translateStatic() {
  document.documentElement.lang = app.lang;
  document.title = t("app.title");
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  const picker = $("lang");
  if (picker) picker.replaceWith(langSelect("lang"));
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  translateStatic();
  $("sign-out").addEventListener("click", () => signOut(t("signin.signed_out")));
  if (app.token) start(); else showSignIn();
});
