// camwire web: the browser side of `camwire web`. One page with hash routes (#/live, #/camera/NAME,
// #/events, #/recordings, #/system) over the JSON API, and ONE WebSocket (/api/live) shared by every
// view: the page tells the server which cameras it shows, at what width and rate, and the server sends
// binary frames `4-byte big-endian N` + `N bytes of JSON meta` + `JPEG`.
//
// No framework, no build step, nothing from the internet. The token is only ever typed into the login
// form and POSTed to /api/login; the session lives in an HttpOnly cookie the page never sees.
//
// Hooks for tests (stable): .tile[data-camera][data-state][data-covered][data-live]; .live-image
// (a canvas, data-seq / data-ts of the last frame drawn); .state[data-state]; .reason; .no-live;
// .motion[data-motion]; .waiting; .fps; .cam-info dd[data-key] (.past-error: an error the camera came back from);
// .event[data-id][data-stationary] .ev-at / .ev-for / .ev-stationary;
// .event-detail .snapshot / video.clip / .event-json;
// .timeline[data-camera] .range / .tick[data-id] / .selection; video.range-video; a.download;
// .rec-message.nothing; table.sys-*; .sys-sink[data-state]; button.reload; .reload-result[data-ok];
// ul.reload-answers li[data-outcome] (each daemon on another host); table.sys-daemons [data-reachable];
// form.login .token / .login-error; #banner .banner-msg; .ws-state[data-state];
// .config-banner[data-ok] .config-error (camwire.toml refused: on every page until a good one loads);
// a camera's switches: switches.js (.switches .switch[data-switch][data-on]); a tile's .switch-off-badge.
// The recordings page's own (zoom, previews, gaps): timeline.js.

import { mountRecordings } from "./timeline.js";

import { mountReview } from "./review.js";  // #/review: it imports this module back (functions only)
import { SwitchPanel, offBadges } from "./switches.js";  // a camera's switches: it imports this module back

const GRID_FPS = 5;
const FULL_FPS = 15;
const GRID_MAX_WIDTH = 960;    // device pixels: beyond this a grid tile gains nothing visible
const FULL_MAX_WIDTH = 1920;
// Widths asked of the server snap to these, so viewers of a camera share the one JPEG it encodes per width.
const WIDTH_STEPS = [160, 240, 320, 480, 640, 800, 960, 1280, 1600, 1920];
const CAMERA_POLL_MS = 2000;
const SYSTEM_POLL_MS = 2000;
const CONFIG_POLL_MS = 2000;
const EVENTS_POLL_MS = 5000;
const STALE_FRAME_MS = 5000;   // a watched tile with no frame for this long is marked stale
const EVENT_TYPES = ["object", "motion_start", "motion_end", "camera_online", "camera_offline",
  "camera_covered", "camera_uncovered", "camera_failed", "scene", "suggested_mask", "camera_switch"];

// ---------------------------------------------------------------- small helpers

export const $ = (sel, root = document) => root.querySelector(sel);

/** An element: h("div", {class: "x", onclick: fn, dataset: {a: 1}}, child, "text", [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k === "dataset") for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
    else if (k === "style") el.style.cssText = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "value" || k === "checked" || k === "muted") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export const pad = (n) => String(n).padStart(2, "0");

/** Local date and time with seconds, "2026-11-21 15:37:18": unambiguous and sortable. */
export function fmtTime(ts) {
  if (ts == null) return "—";
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtClock(ts) {
  const d = new Date(ts * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** An epoch time as a time field's text: "YYYY-MM-DD HH:MM:SS", 24-hour local time. (A
 * datetime-local input shows 12-hour times in an en-US browser, beside 24-hour times everywhere else.) */
export function toLocalInput(ts) {
  return ts == null ? "" : fmtTime(Math.floor(ts));
}

const LOCAL_TIME = /^(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2})(\.\d+)?)?$/;

/** A time field's text ("YYYY-MM-DD HH:MM[:SS]", 24-hour local time) to seconds since the epoch;
 * null when empty, NaN when it is no such time (a 13th month, 24:00, 31 April). */
export function fromLocalInput(value) {
  const text = String(value ?? "").trim();
  if (!text) return null;
  const m = LOCAL_TIME.exec(text);
  if (!m) return NaN;
  const [y, mo, d, hh, mm, ss = "0"] = m.slice(1, 7).map(Number);
  const date = new Date(y, mo - 1, d, hh, mm, ss);
  if (date.getFullYear() !== y || date.getMonth() !== mo - 1 || date.getDate() !== d ||
      date.getHours() !== hh || date.getMinutes() !== mm) return NaN;
  return date.getTime() / 1000 + (m[7] ? Number(m[7]) : 0);
}

/** A time field read: its seconds since the epoch, null when empty; a bad value is said on the field
 * (one clear line, as the browser shows a field's own errors) and reads as undefined. */
export function readTimeInput(input) {
  const ts = fromLocalInput(input.value);
  if (Number.isNaN(ts)) {
    input.setCustomValidity(`not a time: ${JSON.stringify(input.value.slice(0, 40))}; write YYYY-MM-DD HH:MM:SS (24-hour, local time)`);
    input.reportValidity();
    return undefined;
  }
  input.setCustomValidity("");
  return ts;
}

/** A text field for a time, 24-hour local "YYYY-MM-DD HH:MM:SS" (see toLocalInput). */
export function timeInput(attrs = {}) {
  return h("input", { type: "text", size: 19, spellcheck: "false", autocomplete: "off",
    placeholder: "YYYY-MM-DD HH:MM:SS", title: "24-hour local time: YYYY-MM-DD HH:MM:SS", ...attrs });
}

export function fmtDuration(s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

/** How long something stayed, in words a list reads: "under 1 s", "12 s", "3 min 5 s", "2 h 4 min". */
export function fmtStay(s) {
  s = Math.max(0, Math.round(s));
  if (s < 1) return "under 1 s";
  if (s < 60) return `${s} s`;
  const [h, m, sec] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  if (h) return m ? `${h} h ${m} min` : `${h} h`;
  return sec ? `${m} min ${sec} s` : `${m} min`;
}

export function fmtAge(ts, now = Date.now() / 1000) {
  return ts == null ? "never" : `${fmtDuration(now - ts)} ago`;
}

/** Bytes in decimal units (1 kB = 1000 B), as disks are sold: "512 B", "3.4 MB", "1.9 TB". */
export function fmtBytes(n) {
  if (n == null) return "—";
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  let i = 0;
  while (Math.abs(n) >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export const fmtNum = (v, digits = 1) => (v == null ? "—" : Number(v).toFixed(digits));

export function fmtScore(ev) {
  let s = ev.top_score ?? ev.score;
  if (s == null && Array.isArray(ev.detections) && ev.detections.length) {
    s = Math.max(...ev.detections.map((d) => d.confidence ?? 0));
  }
  return s == null ? "" : `${Math.round(s * 100)}%`;
}

export function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q < 0 ? "" : raw.slice(q + 1));
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), params };
}

/** Replace the hash's query without a hashchange (the view already shows it). */
export function setHashQuery(route, params) {
  const qs = new URLSearchParams([...params].filter(([, v]) => v !== "" && v != null)).toString();
  history.replaceState(null, "", `#/${route}${qs ? "?" + qs : ""}`);
}

// ---------------------------------------------------------------- the error banner

/** Errors shown plainly at the top; each under a key, so a poll that fails again replaces its own
 * line instead of piling up, and clears it once it succeeds. */
export const banner = {
  msgs: new Map(),
  set(key, text) {
    if (this.msgs.get(key) === text) return;
    this.msgs.set(key, text);
    this.render();
  },
  clear(key) {
    if (this.msgs.delete(key)) this.render();
  },
  render() {
    const root = $("#banner");
    root.replaceChildren(...[...this.msgs].map(([key, text]) =>
      h("div", { class: "banner-msg", dataset: { key } },
        h("span", { class: "banner-text", text }),
        h("button", { class: "banner-close", title: "dismiss", onclick: () => this.clear(key) }, "×"))));
  },
};

/** camwire.toml as the console last loaded it (GET /api/config). A file the daemons refused (a typo
 * saved) is shown above every page with its FILE:LINE: reason, until a good one is loaded: the daemons
 * run on their last good file meanwhile. No dismiss button: it goes when the file is fixed. */
export const configBanner = {
  el: null,
  poller: null,
  start() {
    this.el = h("div", { class: "config-banner", role: "alert", hidden: true, dataset: { ok: "true" } });
    $("#banner").before(this.el);
    this.poller = poll("config", async () => this.show(await api("/api/config")), CONFIG_POLL_MS);
  },
  show(c) {
    this.el.dataset.ok = String(!!c.ok);
    this.el.hidden = !!c.ok;
    if (c.ok) { this.el.replaceChildren(); return; }
    this.el.replaceChildren(
      h("span", { class: "config-title" }, "config refused; the daemons run on their last good one:"),
      h("span", { class: "config-error", text: c.error }),
      h("span", { class: "config-since" }, c.since ? `since ${fmtTime(c.since)}` : ""));
  },
  now() { this.poller?.now(); },
};

window.addEventListener("error", (e) => banner.set("js", `page error: ${e.message}`));
window.addEventListener("unhandledrejection", (e) => banner.set("js", `page error: ${e.reason?.message ?? e.reason}`));

// ---------------------------------------------------------------- the API

export class ApiError extends Error {
  constructor(status, message, body = null) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** fetch + JSON, same-origin credentials; a 401 brings the login form back. Throws ApiError. */
export async function api(path, { method = "GET", body } = {}) {
  const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch (e) {
    throw new ApiError(0, `${method} ${path}: cannot reach the server (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON: reported below with its text */ }
  if (res.status === 401 && path !== "/api/login") {
    auth.require();
    throw new ApiError(401, `${method} ${path}: login required`, data);
  }
  if (!res.ok) {
    const why = data?.error ?? (text.trim().slice(0, 300) || res.statusText);
    throw new ApiError(res.status, `${method} ${path}: ${res.status} ${why}`, data);
  }
  if (data === null) throw new ApiError(res.status, `${method} ${path}: the answer is not JSON`);
  return data;
}

/** Run fn now and every `ms` until the returned stop() is called. Its failures go to the banner under
 * `key` (401s do not: the login form says it); skipped while logged out or while the tab is hidden. */
export function poll(key, fn, ms) {
  let stopped = false;
  let timer = null;
  let running = false;
  let again = false;  // now() came while a run was under way: run once more right after it
  const tick = async () => {
    clearTimeout(timer);
    timer = null;
    if (stopped) return;
    if (running) { again = true; return; }
    running = true;
    if (auth.ok && !document.hidden) {
      try {
        await fn();
        banner.clear(key);
      } catch (e) {
        if (e.status !== 401) banner.set(key, e.message);
        if (!(e instanceof ApiError)) console.error(e);
      }
    }
    running = false;
    if (stopped) return;
    if (again) { again = false; tick(); return; }
    timer = setTimeout(tick, ms);
  };
  tick();
  const poller = () => {
    stopped = true;
    clearTimeout(timer);
    banner.clear(key);
  };
  poller.now = tick;
  return poller;
}

// ---------------------------------------------------------------- login

export const auth = {
  ok: false,        // may call the API (logged in, or no token required)
  checked: false,

  async check() {
    const w = await api("/api/whoami");
    this.checked = true;
    if (w.auth_required && !w.logged_in) this.require();
    else this.grant();
  },

  /** After the live socket failed to open: is it because the session ended? */
  async recheck() {
    try {
      const w = await api("/api/whoami");
      banner.clear("whoami");
      if (w.auth_required && !w.logged_in) this.require();
    } catch (e) {
      if (e.status !== 401) banner.set("whoami", e.message);
    }
  },

  require() {
    this.ok = false;
    live.stop();
    const overlay = $("#login");
    if (overlay.hidden) {
      overlay.hidden = false;
      $(".login-error").hidden = true;
      $("#login .token").focus();
    }
  },

  grant() {
    const was = this.ok;
    this.ok = true;
    $("#login").hidden = true;
    live.start();
    if (!was) router.render();  // fresh data at once, not at the next tick
    if (!was) configBanner.now();
  },

  async login(token) {
    const err = $(".login-error");
    err.hidden = true;
    try {
      await api("/api/login", { method: "POST", body: { token } });
      this.grant();
    } catch (e) {
      err.textContent = e.status === 401 ? "wrong token" : e.message;
      err.hidden = false;
    }
  },
};

// ---------------------------------------------------------------- the live socket

/** The one WebSocket of the page. Views say what they want with want(key, camera, width, fps) and
 * unwant(key); what is sent is, per camera, the largest width and fps any view wants (nothing while
 * the tab is hidden). Frames are decoded one at a time per camera: while one decodes, only the newest
 * that arrived meanwhile is kept, so a slow page skips frames instead of queueing them. */
class LiveClient {
  constructor() {
    this.ws = null;
    this.running = false;
    this.wants = new Map();     // key -> {camera, width, fps}
    this.sinks = new Map();     // camera -> Set(fn(bitmap, meta))
    this.sent = null;           // the watch JSON last sent on this socket
    this.backoff = 500;
    this.failures = 0;
    this.openedAt = 0;
    this.retryTimer = null;
    this.syncTimer = null;
    this.decoding = new Set();
    this.pending = new Map();   // camera -> [meta, jpeg] newest frame waiting for the decoder
    this.decoder = new TextDecoder();
    document.addEventListener("visibilitychange", () => this.sync());
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.connect();
  }

  stop() {
    this.running = false;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
      this.ws = null;
    }
    this.state("stopped", "live: stopped");
  }

  state(name, text) {
    const el = $(".ws-state");
    el.dataset.state = name;
    el.textContent = text;
  }

  connect() {
    const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/api/live`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.sent = null;
    this.state("connecting", "live: connecting");
    ws.onopen = () => {
      this.openedAt = Date.now();
      this.failures = 0;
      banner.clear("ws");
      banner.clear("whoami");  // a check made while the server was away
      this.state("open", "live: connected");
      this.sync(true);
    };
    ws.onmessage = (ev) => this.message(ev.data);
    ws.onclose = (ev) => this.closed(ev);
  }

  closed(ev) {
    this.ws = null;
    if (!this.running) return;
    const opened = this.openedAt > 0;
    // reset the backoff only after a connection that lived a while, so a server that accepts and
    // drops at once is not hammered
    if (opened && Date.now() - this.openedAt > 10000) this.backoff = 500;
    this.openedAt = 0;
    this.failures += 1;
    const wait = Math.round(this.backoff * (0.75 + Math.random() * 0.5));
    this.backoff = Math.min(this.backoff * 2, 15000);
    this.state("retry", `live: reconnecting in ${Math.ceil(wait / 1000)}s`);
    if (this.failures >= 2) {
      banner.set("ws", `live video: connection lost (code ${ev.code}${ev.reason ? ": " + ev.reason : ""}); ` +
        `retrying in ${Math.ceil(wait / 1000)}s`);
    }
    this.retryTimer = setTimeout(() => { if (this.running) this.connect(); }, wait);
    if (!opened) auth.recheck();  // a refused handshake: maybe the session ended
  }

  want(key, camera, width, fps) {
    const old = this.wants.get(key);
    if (old && old.camera === camera && old.width === width && old.fps === fps) return;
    this.wants.set(key, { camera, width, fps });
    this.sync();
  }

  unwant(key) {
    if (this.wants.delete(key)) this.sync();
  }

  subscribe(camera, fn) {
    if (!this.sinks.has(camera)) this.sinks.set(camera, new Set());
    this.sinks.get(camera).add(fn);
    return () => {
      const set = this.sinks.get(camera);
      set?.delete(fn);
      if (set && !set.size) this.sinks.delete(camera);
    };
  }

  watchMessage() {
    const watch = {};
    if (!document.hidden && auth.ok) {
      for (const { camera, width, fps } of this.wants.values()) {
        const w = watch[camera];
        watch[camera] = w ? { width: Math.max(w.width, width), fps: Math.max(w.fps, fps) } : { width, fps };
      }
    }
    const sorted = Object.fromEntries(Object.keys(watch).sort().map((k) => [k, watch[k]]));
    return JSON.stringify({ watch: sorted });
  }

  /** Send the watch set if it changed; grouped over a few ms so a grid of tiles sends once. */
  sync(now = false) {
    clearTimeout(this.syncTimer);
    const send = () => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      const msg = this.watchMessage();
      if (msg === this.sent) return;
      this.ws.send(msg);
      this.sent = msg;
    };
    if (now) send();
    else this.syncTimer = setTimeout(send, 30);
  }

  message(data) {
    if (typeof data === "string") {  // not in the contract, but never dropped silently
      let obj = null;
      try { obj = JSON.parse(data); } catch { /* shown raw below */ }
      banner.set("ws-msg", `live video: ${obj?.error ?? data}`);
      return;
    }
    let meta;
    let jpeg;
    try {
      const n = new DataView(data).getUint32(0, false);
      meta = JSON.parse(this.decoder.decode(new Uint8Array(data, 4, n)));
      jpeg = new Uint8Array(data, 4 + n);
    } catch (e) {
      banner.set("ws-frame", `live video: a frame that cannot be read (${e.message})`);
      return;
    }
    const cam = meta.camera;
    if (this.decoding.has(cam)) this.pending.set(cam, [meta, jpeg]);
    else this.decode(cam, meta, jpeg);
  }

  async decode(cam, meta, jpeg) {
    this.decoding.add(cam);
    try {
      const bitmap = await createImageBitmap(new Blob([jpeg], { type: "image/jpeg" }));
      for (const fn of this.sinks.get(cam) ?? []) fn(bitmap, meta);
      bitmap.close();
      banner.clear(`decode:${cam}`);
    } catch (e) {
      banner.set(`decode:${cam}`, `live video ${cam}: cannot decode a frame (${e.message})`);
    } finally {
      this.decoding.delete(cam);
      const next = this.pending.get(cam);
      if (next) {
        this.pending.delete(cam);
        this.decode(cam, ...next);
      }
    }
  }
}

export const live = new LiveClient();

/** The width to ask for: the element's width in device pixels, up a step, capped. */
export function liveWidth(el, cap, sourceWidth) {
  const px = Math.round(el.clientWidth * (window.devicePixelRatio || 1));
  let w = WIDTH_STEPS.find((s) => s >= px) ?? WIDTH_STEPS[WIDTH_STEPS.length - 1];
  w = Math.min(w, cap);
  if (sourceWidth) w = Math.min(w, sourceWidth);  // the server would not make it sharper anyway
  return Math.max(w, WIDTH_STEPS[0]);
}

// ---------------------------------------------------------------- a camera tile

let tileKeys = 0;

/** One camera's live image with its name, state, rates and motion: the grid's tiles and, with
 * full=true, the camera page's large view. */
class Tile {
  constructor(name, { full = false, onopen = null } = {}) {
    this.name = name;
    this.full = full;
    this.key = `tile${++tileKeys}`;
    this.cam = null;
    this.visible = false;
    this.lastFrameAt = 0;

    this.canvas = h("canvas", { class: "live-image", width: 16, height: 9 });
    this.ctx = this.canvas.getContext("2d", { alpha: false });
    this.waiting = h("div", { class: "overlay waiting", text: "waiting for video…" });
    this.noLive = h("div", { class: "overlay no-live", hidden: true, text: "no live video (not published)" });
    this.frameTime = h("span", { class: "frame-time" });
    this.motion = h("span", { class: "motion", dataset: { motion: "false" }, title: "motion" }, "motion");
    this.media = h("div", { class: "media" }, this.canvas, this.waiting, this.noLive, this.frameTime, this.motion);
    this.badge = h("span", { class: "state", dataset: { state: "unknown" } }, "unknown");
    this.covered = h("span", { class: "covered-badge", hidden: true }, "covered");
    this.offs = h("span", { class: "switch-offs" });  // "detect off": switches.js
    this.fps = h("span", { class: "fps" });
    this.reason = h("div", { class: "reason", hidden: true });
    this.el = h("div", { class: full ? "tile full" : "tile", dataset: { camera: name, state: "unknown" } },
      this.media,
      h("div", { class: "bar" }, h("span", { class: "name", title: name }, name), this.badge, this.covered,
        this.offs, h("span", { class: "spacer" }), this.fps),
      this.reason);
    if (onopen) {
      this.el.tabIndex = 0;
      this.el.setAttribute("role", "link");
      this.el.addEventListener("click", onopen);
      this.el.addEventListener("keydown", (e) => { if (e.key === "Enter") onopen(); });
    }
    this.unsubscribe = live.subscribe(name, (bitmap, meta) => this.draw(bitmap, meta));
  }

  draw(bitmap, meta) {
    if (this.canvas.width !== bitmap.width || this.canvas.height !== bitmap.height) {
      this.canvas.width = bitmap.width;
      this.canvas.height = bitmap.height;
    }
    this.ctx.drawImage(bitmap, 0, 0);
    this.canvas.dataset.seq = meta.seq;
    this.canvas.dataset.ts = meta.ts;
    this.lastFrameAt = Date.now();
    this.waiting.hidden = true;
    this.el.classList.remove("stale");
    this.frameTime.textContent = meta.ts != null ? fmtClock(meta.ts) : "";
  }

  update(cam) {
    this.cam = cam;
    const state = cam.state || "unknown";
    this.el.dataset.state = state;
    this.el.dataset.covered = String(!!cam.covered);
    this.el.dataset.live = String(cam.live !== false);
    this.badge.dataset.state = state;
    this.badge.textContent = state;
    this.covered.hidden = !cam.covered;
    this.offs.replaceChildren(...offBadges(cam));
    this.reason.textContent = cam.reason || "";
    this.reason.hidden = !cam.reason;
    this.motion.dataset.motion = String(!!cam.motion);
    this.motion.textContent = cam.motion ? "motion" : "no motion";
    const ended = state === "ended";  // a file read to its end: no video will come, and no rate is current
    this.fps.textContent = ended ? "" : `${fmtNum(cam.fps_in)} in · ${fmtNum(cam.fps_used)} used fps`;
    this.fps.title = ended ? "" : `frames a second: ${fmtNum(cam.fps_in, 2)} from the camera, ${fmtNum(cam.fps_used, 2)} used` +
      (cam.last_frame_ts ? `; last frame ${fmtAge(cam.last_frame_ts)}` : "");
    const publishes = cam.live !== false;
    this.noLive.hidden = publishes || ended;
    this.waiting.textContent = ended ? "ended" : "waiting for video…";
    this.waiting.hidden = !ended && (!publishes || this.lastFrameAt > 0);
    if (this.full && cam.width && cam.height) this.media.style.aspectRatio = `${cam.width} / ${cam.height}`;
    this.el.classList.toggle("stale", publishes && this.lastFrameAt > 0 && Date.now() - this.lastFrameAt > STALE_FRAME_MS);
    this.want();
  }

  /** Ask the socket for this camera while the tile is on screen and the camera publishes. */
  want() {
    if (!this.visible || !this.cam || this.cam.live === false) {
      live.unwant(this.key);
      return;
    }
    const width = liveWidth(this.media, this.full ? FULL_MAX_WIDTH : GRID_MAX_WIDTH, this.cam.width);
    live.want(this.key, this.name, width, this.full ? FULL_FPS : GRID_FPS);
  }

  destroy() {
    this.unsubscribe();
    live.unwant(this.key);
    this.el.remove();
  }
}

/** Observers that keep tiles' `visible` and requested widths current. */
function tileObservers(tilesByEl) {
  const io = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const t = tilesByEl.get(e.target);
      if (!t) continue;
      t.visible = e.isIntersecting;
      t.want();
    }
  }, { rootMargin: "50px" });
  const ro = new ResizeObserver((entries) => {
    for (const e of entries) tilesByEl.get(e.target)?.want();
  });
  return {
    add(t) { tilesByEl.set(t.el, t); io.observe(t.el); ro.observe(t.el); },
    remove(t) { io.unobserve(t.el); ro.unobserve(t.el); tilesByEl.delete(t.el); },
    disconnect() { io.disconnect(); ro.disconnect(); },
  };
}

// ---------------------------------------------------------------- Live: the grid

const GRID_SIZES = { S: 240, M: 360, L: 520 };
let gridSize = "M";

function mountLive(root) {
  const summary = h("span", { class: "summary" });
  const grid = h("div", { class: "grid" });
  const sizeButtons = Object.keys(GRID_SIZES).map((s) =>
    h("button", { class: "size", dataset: { size: s }, title: `tile size ${s}`, onclick: () => setSize(s) }, s));
  const setSize = (s) => {
    gridSize = s;
    grid.style.setProperty("--tile-min", `${GRID_SIZES[s]}px`);
    for (const b of sizeButtons) b.classList.toggle("active", b.dataset.size === s);
  };
  setSize(gridSize);
  const empty = h("p", { class: "empty", hidden: true }, "no cameras");
  root.append(h("div", { class: "toolbar" }, h("h2", {}, "Live"), summary, h("span", { class: "spacer" }),
    h("span", { class: "muted" }, "tile size"), sizeButtons), empty, grid);

  const tiles = new Map();  // name -> Tile
  const obs = tileObservers(new Map());
  const stop = poll("cameras", async () => {
    const { cameras } = await api("/api/cameras");
    const seen = new Set();
    let prev = null;
    for (const cam of cameras) {
      seen.add(cam.camera);
      let t = tiles.get(cam.camera);
      if (!t) {
        t = new Tile(cam.camera, { onopen: () => { location.hash = `#/camera/${encodeURIComponent(cam.camera)}`; } });
        tiles.set(cam.camera, t);
        obs.add(t);
      }
      // keep the server's order without moving tiles that are already in place
      const want = prev ? prev.el.nextSibling : grid.firstChild;
      if (want !== t.el) grid.insertBefore(t.el, want);
      t.update(cam);
      prev = t;
    }
    for (const [name, t] of tiles) {
      if (!seen.has(name)) { obs.remove(t); t.destroy(); tiles.delete(name); }
    }
    empty.hidden = cameras.length > 0;
    const counts = {};
    for (const c of cameras) counts[c.state] = (counts[c.state] || 0) + 1;
    summary.textContent = `${cameras.length} camera${cameras.length === 1 ? "" : "s"}` +
      (cameras.length ? ": " + Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ") : "");
  }, CAMERA_POLL_MS);

  return () => {
    stop();
    obs.disconnect();
    for (const t of tiles.values()) t.destroy();
  };
}

// ---------------------------------------------------------------- Camera: one camera full size

function mountCamera(root, [name]) {
  if (!name) { location.replace("#/live"); return null; }
  const tile = new Tile(name, { full: true });
  const switches = new SwitchPanel(name);
  const info = h("dl", { class: "cam-info" });
  const evList = h("div", { class: "events" });
  const evEmpty = h("p", { class: "empty", hidden: true }, "no events");
  const missing = h("p", { class: "empty", hidden: true }, `no camera named ${name}`);
  const q = encodeURIComponent(name);
  root.append(
    h("div", { class: "toolbar" }, h("a", { href: "#/live", class: "back" }, "← Live"), h("h2", {}, name),
      h("span", { class: "spacer" }),
      h("a", { href: `#/recordings?camera=${q}` }, "recordings"),
      h("a", { href: `#/events?camera=${q}` }, "all events")),
    missing,
    h("div", { class: "camera-page" },
      h("div", { class: "camera-main" }, tile.el, switches.el, info),
      h("section", { class: "camera-events" }, h("h3", {}, "Recent events"), evEmpty, evList)));

  const obs = tileObservers(new Map());
  obs.add(tile);
  const stopCam = poll("cameras", async () => {
    // the sink's whole row (who served it, its errors and when) is in the system view's status
    const [{ cameras, switches: settable }, system] = await Promise.all([api("/api/cameras"), api("/api/system")]);
    const cam = cameras.find((c) => c.camera === name);
    missing.hidden = !!cam;
    if (!cam) return;
    const row = (system.cameras || []).find((c) => c.camera === name) ?? {};
    tile.update(cam);
    switches.update(cam, settable);
    const zones = Object.keys(cam.zones || {});
    const rows = [
      ["state", cam.state + (cam.reason ? `: ${cam.reason}` : "") + (cam.covered ? " (covered)" : "")],
      ["last error", camError(row)],
      ["frame size", cam.width && cam.height ? `${cam.width}×${cam.height}` : "not known yet"],
      ["fps in / used", cam.state === "ended" ? "— (ended)" : `${fmtNum(cam.fps_in, 2)} / ${fmtNum(cam.fps_used, 2)}`],
      ["last frame", cam.last_frame_ts ? `${fmtTime(cam.last_frame_ts)} (${fmtAge(cam.last_frame_ts)})` : "never"],
      ["motion", cam.motion ? "yes" : "no"],
      ["detectors", camDetectors(cam, row)],
      ["zones", zones.join(", ") || "none"],
      ["live video", cam.live === false ? "not published" : "published"],
    ];
    info.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { key: k } }, v)]));
  }, CAMERA_POLL_MS);
  const rows = new EventRows(evList);
  const stopEv = poll("camera-events", async () => {
    const { events } = await api(`/api/events?camera=${q}&limit=30`);
    rows.replace(events);
    evEmpty.hidden = events.length > 0;
  }, EVENTS_POLL_MS);

  return () => {
    stopCam();
    stopEv();
    obs.disconnect();
    tile.destroy();
  };
}

/** A camera's error (status.db's row): the current one in red with when it was last said; once
 * the camera is back, the one it came back from, muted and in the past; else "none". */
export function camError(row) {
  if (row.last_error) {
    return h("span", { class: "error-text" }, row.last_error + (row.last_error_ts ? ` (${fmtClock(row.last_error_ts)})` : ""));
  }
  if (row.past_error) {
    return h("span", { class: "muted past-error", title: row.past_error_ts ? fmtTime(row.past_error_ts) : "" },
      `last error${row.past_error_ts ? ` ${fmtClock(row.past_error_ts)}` : ""}: ${row.past_error}`);
  }
  return "none";
}

/** The detectors that served the camera's recent results, and by which workers (status.db's
 * row); before any result, the ones its config asks for. */
export function camDetectors(cam, row) {
  if (row.detectors) return row.detectors + (row.workers ? ` (${row.workers})` : "");
  const wanted = (cam.detector || []).join(", ");
  return wanted ? `${wanted} (no results yet)` : "no results yet";
}

// ---------------------------------------------------------------- event rows and the detail pane

export function eventThumb(ev) {
  const src = ev.thumb_url || ev.snapshot_url;
  return src
    ? h("img", { class: "thumb", src, alt: "", loading: "lazy", decoding: "async" })
    : h("div", { class: "thumb none" }, "no image");
}

export const isObject = (ev) => ev.type === "object" && !!ev.object_id;

/** What a list holds one row of, as the server keys it (web.events_index): a tracked object by its
 * object_id (its newest phase replaces the one shown), any other event by its id. */
export const rowKey = (ev) => (isObject(ev) ? ev.object_id : ev.id);

/** When a row happened: a tracked object when it appeared, not when its newest phase was sent. */
export const rowTime = (ev) => (isObject(ev) ? ev.first_seen ?? ev.ts : ev.ts);

/** How long an object stayed, "for 12 s", or "for 12 s so far" while it has not ended; "" for
 * anything else. The server's ``duration`` (last_seen - first_seen), else worked out the same way. */
export function stayText(ev) {
  if (!isObject(ev)) return "";
  const d = ev.duration ?? (ev.first_seen != null && ev.last_seen != null ? ev.last_seen - ev.first_seen : null);
  if (d == null) return "";
  return `for ${fmtStay(d)}${ev.phase === "end" ? "" : " so far"}`;
}

/** A row's time cell: when it happened, and for an object how long it stayed beneath. */
export function eventTime(ev) {
  const at = rowTime(ev);
  const stay = stayText(ev);
  const title = isObject(ev) ? `appeared ${fmtTime(at)}, last seen ${fmtTime(ev.last_seen)}` : null;
  return h("span", { class: "ev-time", title },
    h("span", { class: "ev-at" }, fmtTime(at)),
    stay ? h("span", { class: "ev-for", dataset: { live: ev.phase !== "end" } }, stay) : null);
}

export function eventRow(ev) {
  const type = ev.phase ? `${ev.type} · ${ev.phase}` : ev.type;
  const zones = (ev.zones || []).join(", ");
  const stationary = isObject(ev) && ev.stationary === true;
  const row = h("div", { class: "event", dataset: { id: ev.id, type: ev.type ?? "", stationary }, tabIndex: 0,
    role: "button" },
    eventThumb(ev),
    h("span", { class: "ev-type", dataset: { type: ev.type ?? "" } }, type,
      stationary ? h("span", { class: "ev-stationary", title: "has not moved for a while" }, "stationary") : null),
    ev.label ? h("span", { class: "ev-label" }, ev.label)
      : h("span", { class: "ev-label ev-reason", title: ev.reason ?? "" }, ev.reason ?? ""),
    h("span", { class: "ev-score" }, fmtScore(ev)),
    h("span", { class: "ev-camera" }, ev.camera ?? ""),
    eventTime(ev),
    h("span", { class: "ev-zones", title: zones }, zones),
    ev.clip_url ? h("span", { class: "ev-clip", title: "a clip was kept" }, "▶") : h("span"));
  row.tabIndex = 0;
  row.addEventListener("click", () => detail.open(ev));
  row.addEventListener("keydown", (e) => { if (e.key === "Enter") detail.open(ev); });
  return row;
}

/** A list of events kept newest first (an object by when it appeared, as the server orders them),
 * keyed by rowKey: a refreshed page updates rows in place (an object's row changes phase, and id)
 * and adds new ones, without rebuilding the rest. */
class EventRows {
  constructor(container) {
    this.container = container;
    this.events = new Map();  // rowKey -> event
    this.rows = new Map();    // rowKey -> [json, element]
  }

  /** Show exactly these events. */
  replace(events) {
    this.events = new Map(events.map((e) => [rowKey(e), e]));
    this.render();
  }

  /** Add or update these events, keeping the others; an object's older phase (a page read before
   * a newer one) never replaces the newer one shown. */
  merge(events) {
    for (const e of events) {
      const held = this.events.get(rowKey(e));
      if (!held || (e.ts ?? 0) >= (held.ts ?? 0)) this.events.set(rowKey(e), e);
    }
    this.render();
  }

  has(ev) {
    return this.events.has(rowKey(ev));
  }

  render() {
    // newest first, ties by key, as the server pages them (ORDER BY ts DESC, key DESC)
    const sorted = [...this.events.entries()].sort(([ka, a], [kb, b]) =>
      (rowTime(b) ?? 0) - (rowTime(a) ?? 0) || (kb > ka) - (kb < ka));
    let prev = null;
    const keep = new Set();
    for (const [key, ev] of sorted) {
      keep.add(key);
      const json = JSON.stringify(ev);
      let entry = this.rows.get(key);
      if (!entry || entry[0] !== json) {
        const el = eventRow(ev);
        if (entry) entry[1].replaceWith(el);
        entry = [json, el];
        this.rows.set(key, entry);
      }
      const want = prev ? prev.nextSibling : this.container.firstChild;
      if (want !== entry[1]) this.container.insertBefore(entry[1], want);
      prev = entry[1];
    }
    for (const [key, [, el]] of this.rows) {
      if (!keep.has(key)) { el.remove(); this.rows.delete(key); }
    }
  }
}

export const detail = {
  current: null,

  async open(ev) {
    this.current = ev.id;
    this.show(ev);
    try {
      const fresh = await api(`/api/events/${encodeURIComponent(ev.id)}`);
      // a clip may have been kept since the list was read; redraw only if something changed, so a
      // playing video is not restarted
      if (this.current === ev.id && JSON.stringify(fresh) !== JSON.stringify(ev)) this.show(fresh);
      banner.clear("event-detail");
    } catch (e) {
      if (e.status !== 401) banner.set("event-detail", e.message);
    }
  },

  show(ev) {
    const pane = $("#detail");
    const title = [ev.type, ev.phase, ev.label].filter(Boolean).join(" · ");
    const at = rowTime(ev);
    const t = at ?? 0;  // an object's recording from when it appeared
    const rec = `#/recordings?camera=${encodeURIComponent(ev.camera ?? "")}&at=${t}`;
    const stay = stayText(ev);
    let video = null;
    if (ev.clip_url) {
      video = h("video", { class: "clip", controls: true, autoplay: true, muted: true, playsinline: true, src: ev.clip_url });
      video.muted = true;  // the attribute alone does not mute an element made by script
      video.addEventListener("error", () => clipError(video, pane.querySelector(".clip-message")));
    }
    pane.replaceChildren(...[
      h("div", { class: "detail-head" },
        h("h3", {}, title || "event"),
        h("span", { class: "spacer" }),
        h("a", { href: rec, title: "the recording around this event" }, "recording"),
        h("button", { class: "close", title: "close (Esc)", onclick: () => this.close() }, "×")),
      h("p", { class: "detail-sub" }, `${ev.camera ?? ""} · ${isObject(ev) ? "appeared " : ""}${fmtTime(at)}` +
        (stay ? ` · ${stay}` : "") + (ev.stationary === true ? " · stationary" : "") +
        (ev.zones?.length ? ` · zones ${ev.zones.join(", ")}` : "") + (fmtScore(ev) ? ` · ${fmtScore(ev)}` : "")),
      video,
      h("p", { class: "clip-message", hidden: true }),
      ev.snapshot_url
        ? h("a", { href: ev.snapshot_url, target: "_blank", rel: "noopener" },
          h("img", { class: "snapshot", src: ev.snapshot_url, alt: `snapshot of ${title}` }))
        : h("p", { class: "muted" }, "no snapshot"),
      h("pre", { class: "event-json" }, JSON.stringify(ev, null, 1)),
    ].filter(Boolean));
    pane.dataset.id = ev.id;
    pane.hidden = false;
    document.body.classList.add("detail-open");
  },

  close() {
    this.current = null;
    const pane = $("#detail");
    for (const v of pane.querySelectorAll("video")) { v.pause(); v.removeAttribute("src"); v.load(); }
    pane.replaceChildren();
    pane.hidden = true;
    pane.classList.remove("review-detail");  // review.js's layout, not an event's
    delete pane.dataset.id;
    document.body.classList.remove("detail-open");
  },
};

document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("#detail").hidden) detail.close(); });

/** A <video> could not load: ask the server why (a 404 means nothing recorded) and say it. */
export async function clipError(video, msgEl, nothingText = "nothing recorded for this clip") {
  const url = video.getAttribute("src");
  if (!url) return;
  const say = (text, nothing = false) => {
    msgEl.textContent = text;
    msgEl.classList.toggle("nothing", nothing);
    msgEl.hidden = false;
  };
  const ctl = new AbortController();
  try {
    const res = await fetch(url, { credentials: "same-origin", signal: ctl.signal });
    if (res.ok) {
      ctl.abort();  // the server has it; the browser cannot play it
      say(`the browser cannot play this video (${video.error?.message || "media error " + video.error?.code})`);
      return;
    }
    let why = "";
    try { const body = await res.json(); why = body.error ?? ""; } catch { /* no JSON body */ }
    if (res.status === 401) auth.require();
    else if (res.status === 404) {
      say(nothingText + (why ? ` (${why})` : ""), true);
      video.removeAttribute("src");  // an empty player, not a spinner that never ends
      video.load();
    }
    else say(`GET ${url}: ${res.status} ${why || res.statusText}`);
  } catch (e) {
    if (e.name !== "AbortError") say(`GET ${url}: ${e.message}`);
  }
}

// ---------------------------------------------------------------- Events

function mountEvents(root, _parts, params) {
  const field = (name, attrs = {}) => h("input", { name, class: `f-${name}`, value: params.get(name) ?? "", ...attrs });
  const camSel = h("select", { name: "camera", class: "f-camera" }, h("option", { value: "" }, "all cameras"));
  const wanted = params.get("camera") ?? "";
  if (wanted) camSel.append(h("option", { value: wanted }, wanted));
  camSel.value = wanted;
  const labels = h("datalist", { id: "dl-labels" });
  const zones = h("datalist", { id: "dl-zones" });
  const types = h("datalist", { id: "dl-types" }, EVENT_TYPES.map((t) => h("option", { value: t })));
  const tsParam = (k) => { const v = params.get(k); return v ? toLocalInput(Number(v)) : ""; };
  const form = h("form", { class: "filters" },
    h("label", {}, "camera", camSel),
    h("label", {}, "label", field("label", { list: "dl-labels", placeholder: "any", size: 10 })),
    h("label", {}, "zone", field("zone", { list: "dl-zones", placeholder: "any", size: 10 })),
    h("label", {}, "type", field("type", { list: "dl-types", placeholder: "any", size: 14 })),
    h("label", {}, "since", timeInput({ name: "since", class: "f-since time-field", value: tsParam("since") })),
    h("label", {}, "until", timeInput({ name: "until", class: "f-until time-field", value: tsParam("until") })),
    h("button", { type: "submit" }, "Apply"),
    h("button", { type: "button", class: "clear", onclick: () => { form.reset(); for (const el of form.elements) if (el.name) el.value = ""; apply(); } }, "Clear"),
    h("label", { class: "inline", title: "fetch the newest events every 5 s" },
      h("input", { type: "checkbox", class: "f-follow", checked: true }), "follow new"),
    labels, zones, types);
  const list = h("div", { class: "events" });
  const empty = h("p", { class: "empty", hidden: true }, "no events match");
  const more = h("button", { class: "more", hidden: true }, "more");
  const count = h("span", { class: "summary" });
  root.append(h("div", { class: "toolbar" }, h("h2", {}, "Events"), count), form,
    h("div", { class: "events-head" }, h("span"), h("span", {}, "type"), h("span", {}, "label"), h("span", {}, "score"),
      h("span", {}, "camera"), h("span", {}, "time"), h("span", {}, "zones"), h("span")),
    list, empty, h("div", { class: "more-wrap" }, more));

  const rows = new EventRows(list);
  let next = null;
  let gen = 0;  // a newer filter makes older answers moot
  const seenLabels = new Set();

  const query = () => {
    const q = new URLSearchParams();
    const fd = new FormData(form);
    for (const k of ["camera", "label", "zone", "type"]) {
      const v = String(fd.get(k) ?? "").trim();
      if (v) q.set(k, v);
    }
    for (const k of ["since", "until"]) {
      const ts = fromLocalInput(String(fd.get(k) ?? ""));
      if (ts != null && !Number.isNaN(ts)) q.set(k, String(ts));  // a bad one is said on its field
    }
    return q;
  };
  const noteLabels = (events) => {
    let grew = false;
    for (const e of events) if (e.label && !seenLabels.has(e.label)) { seenLabels.add(e.label); grew = true; }
    if (grew) labels.replaceChildren(...[...seenLabels].sort().map((l) => h("option", { value: l })));
  };
  const showCount = () => {
    count.textContent = `${rows.events.size} shown${next ? ", more older" : ""}`;
    empty.hidden = rows.events.size > 0;
    more.hidden = !next;
  };

  const load = async (before = null) => {
    const my = gen;
    const q = query();
    if (before) q.set("before", before);
    const data = await api(`/api/events?${q}`);
    if (my !== gen) return;
    if (before) rows.merge(data.events);
    else rows.replace(data.events);
    next = data.next;
    noteLabels(data.events);
    showCount();
  };

  /** Every few seconds: the newest page merged in. If none of it overlaps what is shown, more came
   * than a page holds; then the list restarts from the newest. */
  const refresh = async () => {
    if (!$(".f-follow", form).checked) return;
    const my = gen;
    const data = await api(`/api/events?${query()}`);
    if (my !== gen) return;
    const overlaps = data.events.some((e) => rows.has(e));
    if (overlaps || !rows.events.size) {
      const wasEmpty = !rows.events.size;
      rows.merge(data.events);
      if (wasEmpty) next = data.next;
    } else if (data.events.length) {
      rows.replace(data.events);
      next = data.next;
    }
    noteLabels(data.events);
    showCount();
  };

  const apply = async () => {
    gen += 1;
    const q = query();
    setHashQuery("events", q);
    try {
      await load();
      banner.clear("events");
    } catch (e) {
      if (e.status !== 401) banner.set("events", e.message);
    }
  };

  const timesOk = () => [...form.querySelectorAll(".time-field")].every((el) => readTimeInput(el) !== undefined);
  form.addEventListener("submit", (e) => { e.preventDefault(); if (timesOk()) apply(); });
  form.addEventListener("change", (e) => { if (e.target.type !== "checkbox" && timesOk()) apply(); });
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      await load(next);
      banner.clear("events-more");
    } catch (e) {
      if (e.status !== 401) banner.set("events-more", e.message);
    } finally {
      more.disabled = false;
    }
  });

  // the camera and zone pickers, from the cameras the server knows
  api("/api/cameras").then(({ cameras }) => {
    for (const c of cameras) if (c.camera !== wanted) camSel.append(h("option", { value: c.camera }, c.camera));
    const zs = new Set(cameras.flatMap((c) => Object.keys(c.zones || {})));
    zones.replaceChildren(...[...zs].sort().map((z) => h("option", { value: z })));
  }).catch((e) => { if (e.status !== 401) banner.set("events-cameras", e.message); });

  apply();
  const stop = poll("events-refresh", refresh, EVENTS_POLL_MS);
  return () => {
    gen += 1;
    stop();
    banner.clear("events");
    banner.clear("events-more");
    banner.clear("events-cameras");
  };
}

// ---------------------------------------------------------------- Recordings

// the recordings page (mountRecordings): timeline.js

// ---------------------------------------------------------------- System

/** A table: head is a list of column names, rows a list of lists of cells (text or elements). */
export function table(cls, head, rows) {
  return h("table", { class: cls },
    h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.length
      ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c ?? "—"))))
      : h("tr", {}, h("td", { colspan: head.length, class: "muted" }, "(none)"))));
}

function fmtValue(key, v) {
  if (v == null) return "—";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") {
    if (/bytes|^volume_(total|free)$/.test(key)) return fmtBytes(v);  // the disk table's volume sizes too
    if (/_ts$/.test(key)) return `${fmtTime(v)} (${fmtAge(v)})`;
    return Number.isInteger(v) ? String(v) : v.toFixed(2);
  }
  if (Array.isArray(v)) return v.map((x) => (typeof x === "object" ? JSON.stringify(x) : x)).join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

const isPlain = (v) => v != null && typeof v === "object" && !Array.isArray(v);

/** Any JSON object as a table, not knowing its shape in advance: a map of maps becomes rows with
 * the union of their keys as columns (with a use bar where a used and a budget are side by side);
 * anything else one row per key (nested keys joined with "."). */
export function objectTable(cls, obj, firstHead = "name") {
  if (!isPlain(obj) || !Object.keys(obj).length) return table(cls, [firstHead, "value"], []);
  const entries = Object.entries(obj);
  if (entries.every(([, v]) => isPlain(v))) {
    const cols = [...new Set(entries.flatMap(([, v]) => Object.keys(v)))];
    const usedKey = cols.find((c) => /^used/.test(c));
    const budgetKey = cols.find((c) => /^(budget|limit|max)/.test(c));
    const head = [firstHead, ...cols, ...(usedKey && budgetKey ? ["use"] : [])];
    return table(cls, head, entries.map(([k, v]) => [k, ...cols.map((c) => fmtValue(c, v[c])),
      ...(usedKey && budgetKey ? [useBar(v[usedKey], v[budgetKey])] : [])]));
  }
  const flat = [];
  const walk = (prefix, o) => {
    for (const [k, v] of Object.entries(o)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (isPlain(v) && Object.keys(v).length) walk(key, v);
      else flat.push([key, fmtValue(k, v)]);
    }
  };
  walk("", obj);
  return table(cls, [firstHead, "value"], flat);
}

export function useBar(used, budget) {
  if (!(used >= 0) || !(budget > 0)) return "—";
  const p = (used / budget) * 100;
  return h("span", { class: "use" },
    h("span", { class: `use-bar${p >= 95 ? " over" : p >= 80 ? " high" : ""}` },
      h("span", { style: `width:${Math.min(p, 100)}%` })),
    `${p.toFixed(0)}%`);
}

function sinkLine(sink) {
  if (!sink) return h("div", { class: "sys-sink", dataset: { state: "unknown" } }, "sink: no status row (not written yet, or an older sink)");
  let state;
  let text;
  if (sink.stopped_ts) {
    state = "stopped";
    text = `STALE: the sink stopped ${fmtAge(sink.stopped_ts)}; this is what it last saw`;
  } else if (sink.stale) {
    state = "stale";
    text = `STALE: the sink has not written for ${fmtDuration(sink.age_s ?? 0)} (is it running? is its disk full?); this is what it last saw`;
  } else {
    state = "up";
    text = `sink: up (pid ${sink.pid}), last wrote ${fmtAge(sink.updated_ts)}`;
  }
  const errs = Object.entries(sink.write_errors || {});
  return h("div", { class: "sys-sink", dataset: { state } },
    h("span", { class: "state", dataset: { state: state === "up" ? "online" : "offline" } }, state), " ", text,
    errs.length ? h("div", { class: "write-errors" },
      `write errors: ${errs.sort().map(([w, n]) => `${w} ${n}`).join(", ")}; last ${fmtAge(sink.last_write_error_ts)}: ${sink.last_write_error ?? ""}`)
      : h("div", { class: "write-errors none" }, "write errors: none"));
}

function camState(c) {
  return h("span", {}, h("span", { class: "state", dataset: { state: c.state ?? "unknown" } }, c.state ?? "unknown"),
    c.covered ? [" ", h("span", { class: "covered-badge" }, "covered")] : "",
    c.reason ? ` ${c.reason}` : "",
    c.unserved_detectors ? h("span", { class: "warn" }, ` no worker serves ${c.unserved_detectors} (${c.unserved} frames unserved)`) : "");
}

function mountSystem(root) {
  const reload = h("button", { class: "reload", title: "POST /api/reload: re-read camwire.toml and signal the daemons" }, "Reload config");
  const result = h("span", { class: "reload-result", hidden: true });
  const body = h("div", { class: "system" }, h("p", { class: "muted" }, "loading…"));
  root.append(h("div", { class: "toolbar" }, h("h2", {}, "System"), h("span", { class: "spacer" }), result, reload), body);

  reload.addEventListener("click", async () => {
    reload.disabled = true;
    result.hidden = false;
    result.dataset.ok = "";
    result.textContent = "reloading…";
    try {
      const res = await api("/api/reload", { method: "POST" });
      result.dataset.ok = "true";
      const signalled = (res.signalled || []).map((s) => `${s.daemon} (pid ${s.pid})`);
      const answers = res.daemons || [];  // daemons on other hosts, each one's own answer (web.remote)
      result.dataset.ok = String(answers.every((a) => a.outcome === "applied" || a.outcome === "unchanged"));
      result.replaceChildren(
        `reloaded at ${fmtClock(Date.now() / 1000)}; signalled here: ${signalled.join(", ") || "nothing"}`,
        answers.length ? h("ul", { class: "reload-answers" }, ...answers.map((a) => h("li", { "data-outcome": a.outcome },
          `${a.daemon} ${a.address}: ${a.outcome}`,
          a.line ? ` at ${a.file}:${a.line}: ${a.reason}` : a.reason ? `: ${a.reason}` : "",
          a.needs_restart?.length ? ` (needs a restart for ${a.needs_restart.join(", ")})` : ""))) : "");
    } catch (e) {
      result.dataset.ok = "false";
      result.textContent = e.body?.error ?? e.message;  // the FILE:LINE: reason line itself
    } finally {
      reload.disabled = false;
      configBanner.now();  // the file as the check just found it
    }
  });

  const stop = poll("system", async () => {
    const s = await api("/api/system");
    const t = Date.now() / 1000;
    const section = (title, ...content) => h("section", {}, h("h3", {}, title), ...content);
    body.replaceChildren(
      sinkLine(s.sink),
      section("Cameras", table("sys-cameras",
        ["camera", "state", "fps in", "fps used", "last frame", "reconnects", "attempts", "results", "last error"],
        (s.cameras || []).map((c) => [
          h("a", { href: `#/camera/${encodeURIComponent(c.camera)}` }, c.camera), camState(c),
          fmtNum(c.fps_in), fmtNum(c.fps_used), fmtAge(c.last_frame_ts, t),
          c.reconnects ?? 0, c.attempts ?? 0, c.results ?? "—",
          h("span", { class: "error-text" }, c.last_error ?? "")]))),
      // one account of every frame (common.frame_account): the extractor's side, then the pool's buckets
      section("Frames", table("sys-frames",
        ["camera", "decoded", "sent", "extractor drops", ...(s.frame_buckets || []).map((b) => b.replace("_", " "))],
        (s.cameras || []).map((c) => [c.camera, c.decoded ?? 0, c.sent ?? 0,
          Object.entries(c.drops || {}).map(([why, n]) => `${why} ${n}`).join(", ") || "0",
          ...(s.frame_buckets || []).map((b) => c.pool?.[b] ?? "—")]))),
      section("Workers", table("sys-workers",
        ["worker", "detector", "credits", "in flight", "dispatched", "completed", "results", "reported"],
        (s.workers || []).map((w) => [
          w.name + (w.leaving ? " (leaving)" : ""), w.detector || "—",
          ...["credits", "in_flight", "dispatched", "completed", "results"].map((k) => w[k] ?? "—"),
          fmtAge(w.updated_ts, t)]))),
      h("div", { class: "two-col" },
        section("Drops by reason", objectTable("sys-drops", s.drops, "reason")),
        section("Disk", objectTable("sys-disk", s.disk, "store"))),
      ...(s.daemons?.length ? [section("Daemons on other hosts", table("sys-daemons",
        ["daemon", "address", "host", "state"],
        s.daemons.map((d) => [d.daemon, d.address, d.host ?? "—",
          h("span", { class: d.reachable ? "" : "warn", "data-reachable": String(d.reachable) },
            d.reachable ? "answering" : `unreachable: ${d.error ?? "no answer yet"}`)])))] : []),
      section("Refused handshakes", table("sys-refused", ["refused by", "socket", "reason", "handshakes", "last", "peers"],
        (s.refused || []).map((r) => [r.daemon, r.socket, r.reason, r.count, fmtAge(r.updated_ts, t),
          (r.peers || []).map((p) => `${p.peer}${p.key && p.key !== "-" ? ` key=${p.key}` : ""} ×${p.count}`).join(", ")]))));
  }, SYSTEM_POLL_MS);
  return () => stop();
}

// ---------------------------------------------------------------- routing and start-up

export const router = {
  routes: { live: mountLive, camera: mountCamera, events: mountEvents, recordings: mountRecordings, system: mountSystem,
    review: mountReview },
  unmount: null,

  render() {
    if (!auth.checked) return;
    const { parts, params } = parseHash();
    const route = parts[0] || "live";
    const mount = this.routes[route];
    if (!mount) { location.replace("#/live"); return; }
    this.unmount?.();
    this.unmount = null;
    detail.close();
    const view = $("#view");
    view.replaceChildren();
    view.dataset.route = route;
    const navRoute = route === "camera" ? "live" : route;
    for (const a of document.querySelectorAll(".nav a")) a.classList.toggle("active", a.dataset.route === navRoute);
    document.title = `camwire · ${route === "camera" ? parts[1] ?? "camera" : route}`;
    this.unmount = mount(view, parts.slice(1), params) || null;
  },
};

function startClock() {
  const el = $(".clock");
  const tick = () => { el.textContent = fmtTime(Date.now() / 1000); };
  tick();
  setInterval(tick, 1000);
}

async function start() {
  $("#login form").addEventListener("submit", (e) => {
    e.preventDefault();
    const input = $("#login .token");
    const token = input.value;
    input.value = "";  // not kept anywhere in the page
    auth.login(token);
  });
  window.addEventListener("hashchange", () => router.render());
  startClock();
  configBanner.start();
  for (let wait = 1000; ; wait = Math.min(wait * 2, 15000)) {
    try {
      await auth.check();
      banner.clear("whoami");
      return;
    } catch (e) {
      if (e.status === 401) { auth.checked = true; return; }
      banner.set("whoami", `${e.message}; retrying`);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

start();
