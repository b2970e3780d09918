// camwire web: the recordings page (#/recordings), a timeline to find a moment. Reads
// GET /api/recordings (per camera the recorded ranges and the events in the visible window),
// /api/recordings/CAMERA/preview.jpg?ts= (the key frame at or before ts, small: the stills shown
// while hovering or dragging) and plays or downloads /api/recordings/CAMERA/clip.mp4?start=&end=.
//
// The view spans a day down to a minute: the zoom buttons, the span presets and the mouse wheel
// (round the pointer) zoom; shift-drag, shift-wheel and ◀ ▶ pan. A drag selects a range, a click
// selects 30 s round a point or an event's tick. Times are typed and shown in 24-hour local time.
//
// Hooks for tests (stable): .timeline-box[data-from][data-to] (the visible span, epoch s);
// .timeline[data-camera] .range / .gap / .tick[data-id] / .selection / .tl-sum; .axis-label;
// .timeline .preview img / .preview .at; button.zoom-in / .zoom-out / .span[data-span];
// input.rec-since / .rec-until / .sel-start / .sel-end; video.range-video; a.download;
// .rec-message(.nothing).
//
// app.js imports this module and this one imports app.js: its exports are used inside functions
// only, never while the modules load.

import {
  h, api, poll, banner, pad, fmtTime, fmtClock, fmtDuration, toLocalInput, readTimeInput, timeInput, clipError, setHashQuery,
} from "./app.js";

const POLL_MS = 15000;
const MIN_SPAN = 60;       // s: a minute across the page, a frame every few pixels
const MAX_SPAN = 86400;    // s: a day
const SPANS = [["24h", 86400], ["1h", 3600], ["10m", 600], ["1m", 60]];
const ZOOM = 2;            // a button press halves or doubles the span; a wheel notch is gentler
const WHEEL_ZOOM = 1.25;
const DRAG_PX = 4;         // a press that moves less than this is a click
const STOPPED_AFTER_S = 60;  // the newest recording ending longer ago than this, up to now: it stopped
const LOAD_DELAY_MS = 250;   // zooming and panning redraw at once and ask the server once they settle

/** Axis step (seconds) that gives about 4 to 8 labels over `span` seconds. */
export function axisStep(span) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  return steps.find((s) => span / s <= 8) ?? 86400;
}

/** An axis label: 24-hour local time, with seconds at minute scale; the date at midnight. */
function axisLabel(t, step) {
  const d = new Date(t * 1000);
  if (step >= 3600 && d.getHours() === 0 && d.getMinutes() === 0) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return step < 60 ? fmtClock(t) : `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function mountRecordings(root, _parts, params) {
  const now = () => Date.now() / 1000;
  const at = Number(params.get("at")) || null;
  let win = { since: Number(params.get("since")) || null, until: Number(params.get("until")) || null };
  // follow: the window ends now and slides with time, until the user moves it into the past
  let follow = !win.since && !at && !params.get("start");
  if (at) win = { since: at - 300, until: at + 300 };
  else if (!win.since) win = { since: now() - 3600, until: now() };
  else if (!win.until) win.until = win.since + 3600;
  // a range to select: start/end (a link to exactly that), or at (an event: 10 s before to 20 s after)
  const start = Number(params.get("start")) || null, end = Number(params.get("end")) || null;
  if (start && end && !at) {
    const pad_ = Math.max(30, (end - start) * 2);
    win = { since: start - pad_, until: end + pad_ };
  }
  let sel = start && end ? { camera: params.get("camera") || null, start, end }
    : at ? { camera: params.get("camera") || null, start: at - 10, end: at + 20 } : null;
  let data = {};
  let gesture = null;  // the press under way: {kind: "select"|"pan", ...}
  let stale = false;   // data came during a gesture: drawn when it ends
  let loadTimer = null;

  const camSel = h("select", { class: "rec-camera", name: "camera" }, h("option", { value: "" }, "all cameras"));
  const wantedCam = params.get("camera") ?? "";
  if (wantedCam) camSel.append(h("option", { value: wantedCam }, wantedCam));
  camSel.value = wantedCam;
  const timeField = (cls) => timeInput({ class: `${cls} time-field` });
  const sinceIn = timeField("rec-since");
  const untilIn = timeField("rec-until");
  const spanButtons = SPANS.map(([label, s]) =>
    h("button", { type: "button", class: "span", dataset: { span: s }, title: `show ${label}`, onclick: () => showSpan(s) }, label));
  const winBar = h("form", { class: "filters rec-window", onsubmit: (e) => { e.preventDefault(); onWinInput(); } },
    h("label", {}, "camera", camSel),
    h("label", {}, "from", sinceIn), h("label", {}, "to", untilIn),
    h("span", { class: "group" },
      h("button", { type: "button", class: "zoom-out", title: "zoom out (or the mouse wheel)", onclick: () => zoom(ZOOM) }, "−"),
      spanButtons,
      h("button", { type: "button", class: "zoom-in", title: "zoom in (or the mouse wheel)", onclick: () => zoom(1 / ZOOM) }, "+")),
    h("button", { type: "button", class: "earlier", title: "half a window earlier (or shift-drag)", onclick: () => shift(-0.5) }, "◀"),
    h("button", { type: "button", class: "later", title: "half a window later", onclick: () => shift(0.5) }, "▶"),
    h("button", { type: "button", class: "now", title: "follow now", onclick: () => setWin(now() - span(), now()) }, "now"),
    h("span", { class: "follow-note muted" }));

  const axis = h("div", { class: "axis" });
  const timelines = h("div", { class: "timelines" });
  const previewImg = h("img", { alt: "", hidden: true });
  const previewAt = h("span", { class: "at" });
  const preview = h("div", { class: "preview", hidden: true }, previewImg, previewAt);
  const box = h("div", { class: "timeline-box" },
    h("div", { class: "timeline axis-row" }, h("div", { class: "tl-name" }), axis), timelines);

  const selCam = h("span", { class: "sel-camera" }, "—");
  const selStart = timeField("sel-start");
  const selEnd = timeField("sel-end");
  const selLen = h("span", { class: "sel-length muted" });
  const play = h("button", { type: "button", class: "play" }, "Play");
  const download = h("a", { class: "download button", download: "", "aria-disabled": "true" }, "Export");
  const message = h("p", { class: "rec-message", hidden: true });
  const video = h("video", { class: "range-video", controls: true, muted: true, playsinline: true, preload: "metadata" });
  video.muted = true;
  root.append(
    h("div", { class: "toolbar" }, h("h2", {}, "Recordings"), h("span", { class: "summary muted" },
      "drag to select a range · click an event tick to pick around it · wheel to zoom · shift-drag to pan")),
    winBar, box,
    h("form", { class: "filters selection-bar", onsubmit: (e) => { e.preventDefault(); playSel(); } },
      h("span", { class: "muted" }, "selection"), selCam,
      h("label", {}, "start", selStart), h("label", {}, "end", selEnd), selLen,
      play, download),
    message,
    video);

  const span = () => win.until - win.since;
  const rangesOf = (cam) => data[cam]?.ranges ?? [];
  const pct = (ts) => `${((ts - win.since) / span()) * 100}%`;
  const clampTs = (ts) => Math.min(Math.max(ts, win.since), win.until);
  const trackRect = () => timelines.querySelector(".track")?.getBoundingClientRect() ?? null;
  const tsAt = (x) => {
    const r = trackRect();
    return r ? win.since + Math.min(Math.max((x - r.left) / r.width, 0), 1) * span() : win.since;
  };

  // -- the window: zoom, pan, presets ---------------------------------------------------------------

  /** Show [since, until], its span kept within a minute and a day; a window reaching past now
   * ends now and follows it. Drawn at once, loaded once the moves settle. */
  function setWin(since, until) {
    let s = Math.min(Math.max(until - since, MIN_SPAN), MAX_SPAN);
    const mid = (since + until) / 2;
    since = mid - s / 2;
    until = mid + s / 2;
    follow = until >= now() - 1;
    if (follow) { until = now(); since = until - s; }
    win = { since, until };
    render();
    clearTimeout(loadTimer);
    loadTimer = setTimeout(() => stop.now(), LOAD_DELAY_MS);
  }
  /** Zoom by `factor` keeping `anchor` (a time) where it is on the screen. */
  function zoom(factor, anchor = follow ? win.until : (win.since + win.until) / 2) {
    const s = Math.min(Math.max(span() * factor, MIN_SPAN), MAX_SPAN);
    const since = anchor - (anchor - win.since) * (s / span());
    setWin(since, since + s);
  }
  function showSpan(s) {
    const mid = sel && sel.end > win.since && sel.start < win.until ? (sel.start + sel.end) / 2
      : follow ? now() : (win.since + win.until) / 2;
    setWin(mid - s / 2, mid + s / 2);
  }
  const shift = (by) => setWin(win.since + by * span(), win.until + by * span());

  function onWinInput() {
    const s = readTimeInput(sinceIn);
    const e = readTimeInput(untilIn);
    if (s == null || e == null) return;
    if (e <= s) { untilIn.setCustomValidity("the end must be after the start"); untilIn.reportValidity(); return; }
    setWin(s, e);
  }
  for (const el of [sinceIn, untilIn]) el.addEventListener("change", onWinInput);

  // -- the selection: play and export -----------------------------------------------------------------

  function clipUrl(dl = false) {
    const q = new URLSearchParams({ start: sel.start.toFixed(3), end: sel.end.toFixed(3) });
    if (dl) q.set("download", "1");
    return `/api/recordings/${encodeURIComponent(sel.camera)}/clip.mp4?${q}`;
  }

  function showSelection() {
    const ok = sel && sel.camera && sel.end > sel.start;
    selCam.textContent = sel?.camera ?? "—";
    if (sel) {
      if (document.activeElement !== selStart) selStart.value = toLocalInput(sel.start);
      if (document.activeElement !== selEnd) selEnd.value = toLocalInput(sel.end);
    }
    selLen.textContent = ok ? fmtDuration(sel.end - sel.start) : "";
    play.disabled = !ok;
    if (ok) {
      download.href = clipUrl(true);
      download.setAttribute("aria-disabled", "false");
    } else {
      download.removeAttribute("href");
      download.setAttribute("aria-disabled", "true");
    }
    for (const el of timelines.querySelectorAll(".selection")) el.remove();
    if (ok && sel.end > win.since && sel.start < win.until) {
      const track = timelines.querySelector(`.timeline[data-camera="${CSS.escape(sel.camera)}"] .track`);
      const s = clampTs(sel.start), e = clampTs(sel.end);
      if (track) track.append(h("div", { class: "selection", style: `left:${pct(s)};width:calc(${pct(e)} - ${pct(s)})` }));
    }
  }

  function playSel() {
    if (!sel?.camera || !(sel.end > sel.start)) return;
    message.hidden = true;
    message.classList.remove("nothing");
    if (data[sel.camera] && !rangesOf(sel.camera).some(([s, e]) => s < sel.end && e > sel.start)) {
      // the timeline already says so; still ask the server, which is the authority
      message.textContent = `nothing recorded on ${sel.camera} between ${fmtTime(sel.start)} and ${fmtTime(sel.end)} (as of the timeline)`;
      message.classList.add("nothing");
      message.hidden = false;
    }
    video.src = clipUrl();
    video.play().catch((e) => { if (e.name !== "AbortError" && e.name !== "NotSupportedError") message.textContent = e.message; });
  }
  video.addEventListener("error", () => clipError(video, message,
    sel ? `nothing recorded on ${sel.camera} between ${fmtTime(sel.start)} and ${fmtTime(sel.end)}` : "nothing recorded"));
  video.addEventListener("loadeddata", () => { message.hidden = true; });
  play.addEventListener("click", playSel);

  const selectAround = (camera, ts) => {
    sel = { camera, start: ts - 10, end: ts + 20 };
    showSelection();
  };

  function onSelInput() {
    const s = readTimeInput(selStart);
    const e = readTimeInput(selEnd);
    if (s == null || e == null) return;
    if (e <= s) { selEnd.setCustomValidity("the end must be after the start"); selEnd.reportValidity(); return; }
    sel = { camera: sel?.camera ?? (camSel.value || Object.keys(data)[0] || null), start: s, end: e };
    showSelection();
  }
  for (const el of [selStart, selEnd]) el.addEventListener("change", onSelInput);

  // -- previews: the key frame under the pointer ------------------------------------------------------

  // one request at a time; while it loads only the newest wanted time is remembered (scrubbing asks
  // for dozens a second, the server decodes one key frame per group of pictures)
  let previewBusy = false;
  let previewWant = null;
  let previewShown = "";
  function wantPreview(camera, ts) {
    previewAt.textContent = fmtTime(ts);
    const recorded = rangesOf(camera).some(([s, e]) => ts >= s && ts < e);
    if (!recorded) {
      previewImg.hidden = true;
      previewWant = null;
      preview.classList.add("not-recorded");
      return;
    }
    preview.classList.remove("not-recorded");
    // whole seconds: the still is a key frame's anyway, and the browser caches by URL
    const url = `/api/recordings/${encodeURIComponent(camera)}/preview.jpg?ts=${Math.floor(ts)}`;
    if (url === previewShown && !previewImg.hidden) return;
    previewWant = url;
    if (!previewBusy) nextPreview();
  }
  function nextPreview() {
    previewBusy = previewWant != null;
    if (!previewBusy) return;
    previewShown = previewWant;
    previewWant = null;
    previewImg.src = previewShown;
  }
  previewImg.addEventListener("load", () => { previewImg.hidden = preview.classList.contains("not-recorded"); nextPreview(); });
  previewImg.addEventListener("error", () => { previewImg.hidden = true; nextPreview(); });

  function movePreview(row, camera, x) {
    if (preview.parentElement !== row) row.append(preview);
    const track = row.querySelector(".track");
    const r = track.getBoundingClientRect();
    const rowRect = row.getBoundingClientRect();
    preview.style.left = `${Math.min(Math.max(x, r.left), r.right) - rowRect.left}px`;
    preview.hidden = false;
    wantPreview(camera, tsAt(x));
  }
  const hidePreview = () => { preview.hidden = true; previewWant = null; };

  // -- pointer gestures on the tracks: drag selects, shift-drag pans, a click selects round a point ---

  timelines.addEventListener("pointerdown", (e) => {
    const row = e.target.closest(".timeline[data-camera]");
    if (!row || !e.target.closest(".track") || e.target.closest(".tick") || e.button !== 0) return;
    e.preventDefault();
    timelines.setPointerCapture(e.pointerId);  // the container stays while tracks are redrawn
    const camera = row.dataset.camera;
    gesture = e.shiftKey
      ? { kind: "pan", x0: e.clientX, since0: win.since, until0: win.until, moved: false, camera, row }
      : { kind: "select", x0: e.clientX, t0: tsAt(e.clientX), moved: false, camera, row };
    if (gesture.kind === "pan") timelines.classList.add("panning");
  });
  timelines.addEventListener("pointermove", (e) => {
    const g = gesture;
    if (!g) {
      const row = e.target.closest(".timeline[data-camera]");
      if (row && e.target.closest(".track")) movePreview(row, row.dataset.camera, e.clientX);
      else if (!e.target.closest(".preview")) hidePreview();
      return;
    }
    if (Math.abs(e.clientX - g.x0) >= DRAG_PX) g.moved = true;
    if (!g.moved) return;
    if (g.kind === "pan") {
      const r = trackRect();
      const by = r ? -((e.clientX - g.x0) / r.width) * (g.until0 - g.since0) : 0;
      follow = false;
      win = { since: g.since0 + by, until: g.until0 + by };
      render();
      return;
    }
    const t1 = tsAt(e.clientX);
    sel = { camera: g.camera, start: Math.min(g.t0, t1), end: Math.max(g.t0, t1) };
    showSelection();
    const row = timelines.querySelector(`.timeline[data-camera="${CSS.escape(g.camera)}"]`);
    if (row) movePreview(row, g.camera, e.clientX);  // scrubbing: the still at the moving end
  });
  const endGesture = (e) => {
    const g = gesture;
    if (!g) return;
    gesture = null;
    timelines.classList.remove("panning");
    if (g.kind === "pan") {
      if (g.moved) setWin(win.since, win.until);
    } else if (!g.moved && e.type === "pointerup") {
      selectAround(g.camera, g.t0 - 5);
    }
    if (stale) { stale = false; render(); }
  };
  timelines.addEventListener("pointerup", endGesture);
  timelines.addEventListener("pointercancel", endGesture);
  timelines.addEventListener("pointerleave", () => { if (!gesture) hidePreview(); });
  box.addEventListener("wheel", (e) => {
    if (!e.target.closest(".track, .axis")) return;
    e.preventDefault();
    const dx = Math.abs(e.deltaX) > Math.abs(e.deltaY) ? e.deltaX : e.shiftKey ? e.deltaY : 0;
    const r = trackRect();
    if (dx) { if (r) shift(dx / r.width); return; }
    if (e.deltaY) zoom(e.deltaY > 0 ? WHEEL_ZOOM : 1 / WHEEL_ZOOM, tsAt(e.clientX));
  }, { passive: false });

  // -- drawing ----------------------------------------------------------------------------------------

  function renderAxis() {
    const step = axisStep(span());
    const offset = new Date(win.since * 1000).getTimezoneOffset() * 60;  // labels on local round times
    const first = Math.ceil((win.since - offset) / step) * step + offset;
    const labels = [];
    for (let t = first; t <= win.until; t += step) {
      labels.push(h("span", { class: "axis-label", style: `left:${pct(t)}` }, axisLabel(t, step)));
    }
    axis.replaceChildren(...labels);
  }

  function render() {
    if (gesture?.kind === "select") { stale = true; return; }  // a redraw would take the track from under the pointer
    box.dataset.from = win.since.toFixed(3);
    box.dataset.to = win.until.toFixed(3);
    box.dataset.span = Math.round(span());
    for (const b of spanButtons) b.classList.toggle("on", Math.abs(Number(b.dataset.span) - span()) < 1);
    if (document.activeElement !== sinceIn) sinceIn.value = toLocalInput(win.since);
    if (document.activeElement !== untilIn) untilIn.value = toLocalInput(win.until);
    winBar.querySelector(".follow-note").textContent = follow ? "following now" : "";
    renderAxis();
    const t = now();
    const rows = Object.keys(data).sort().map((cam) => {
      const { ranges = [], events = [] } = data[cam];
      const inWin = ranges.filter(([s, e]) => e > win.since && s < win.until);
      const recorded = inWin.reduce((n, [s, e]) => n + (Math.min(e, win.until) - Math.max(s, win.since)), 0);
      const bar = (cls, s, e, title, extra = {}) => {
        const a = clampTs(s), b = clampTs(e);
        return h("div", { class: cls, title, dataset: { start: s, end: e, ...extra }, style: `left:${pct(a)};width:calc(${pct(b)} - ${pct(a)})` });
      };
      // a gap is where recording stopped and started again: between two ranges, never before the
      // first (the recorder had not begun, or retention took it) nor after the newest still growing
      const gaps = [];
      for (let i = 1; i < ranges.length; i++) {
        const [s, e] = [ranges[i - 1][1], ranges[i][0]];
        if (e > win.since && s < win.until) gaps.push([s, e]);
      }
      const last = ranges[ranges.length - 1];
      const stopped = last && last[1] < t - STOPPED_AFTER_S && last[1] < win.until ? last[1] : null;
      const track = h("div", { class: "track" },
        gaps.map(([s, e]) => bar("gap", s, e, `not recorded ${fmtTime(s)} – ${fmtTime(e)} (${fmtDuration(e - s)})`)),
        stopped != null ? bar("gap stopped", stopped, Math.min(t, win.until), `not recorded since ${fmtTime(stopped)}`) : null,
        inWin.map(([s, e]) => bar("range", s, e, `recorded ${fmtTime(s)} – ${fmtTime(e)} (${fmtDuration(e - s)})`)),
        t < win.until ? h("div", { class: "future", style: `left:${pct(Math.max(t, win.since))};right:0` }) : null,
        events.filter((ev) => ev.ts >= win.since && ev.ts <= win.until).map((ev) =>
          h("button", { type: "button", class: "tick", dataset: { id: ev.id, type: ev.type ?? "" },
            title: `${[ev.type, ev.label].filter(Boolean).join(" · ")} at ${fmtTime(ev.ts)}`,
            style: `left:${pct(ev.ts)}`, onclick: () => selectAround(cam, ev.ts) })),
        inWin.length ? null : h("div", { class: "nothing" }, "nothing recorded"));
      const n = gaps.length;
      const sum = inWin.length ? [fmtDuration(recorded), `${n} gap${n === 1 ? "" : "s"}`,
        stopped != null ? `stopped ${fmtClock(stopped)}` : null].filter(Boolean).join(" · ") : "nothing recorded";
      const row = h("div", { class: "timeline", dataset: { camera: cam } },
        h("div", { class: "tl-name", title: cam }, h("span", { class: "name" }, cam), h("span", { class: "tl-sum muted" }, sum)),
        track);
      if (preview.parentElement?.dataset.camera === cam && !preview.hidden) row.append(preview);
      return row;
    });
    timelines.replaceChildren(...(rows.length ? rows : [h("p", { class: "empty nothing" }, "nothing recorded in this window")]));
    showSelection();
  }

  const load = async () => {
    if (follow) win = { since: now() - span(), until: now() };
    setHashQuery("recordings", new URLSearchParams(follow ? { camera: camSel.value, span: Math.round(span()) } :
      { camera: camSel.value, since: Math.round(win.since), until: Math.round(win.until) }));
    // a little either side: panning a bit shows what is there before the next answer
    const q = new URLSearchParams({ since: (win.since - span()).toFixed(3), until: (win.until + span()).toFixed(3) });
    if (camSel.value) q.set("camera", camSel.value);
    try {
      const res = await api(`/api/recordings?${q}`);
      data = res.cameras || {};
    } catch (e) {
      if (e.status !== 404) throw e;
      data = {};  // an unknown camera or nothing at all: "nothing recorded" below
    }
    render();
  };
  const wantSpan = Number(params.get("span"));
  if (follow && wantSpan) win = { since: now() - Math.min(Math.max(wantSpan, MIN_SPAN), MAX_SPAN), until: now() };
  render();
  const stop = poll("recordings", load, POLL_MS);
  camSel.addEventListener("change", () => stop.now());

  api("/api/cameras").then(({ cameras }) => {
    for (const c of cameras) if (c.camera !== wantedCam) camSel.append(h("option", { value: c.camera }, c.camera));
  }).catch((e) => { if (e.status !== 401) banner.set("recordings-cameras", e.message); });

  const onResize = () => showSelection();
  window.addEventListener("resize", onResize);
  return () => {
    stop();
    clearTimeout(loadTimer);
    window.removeEventListener("resize", onResize);
    video.pause();
    video.removeAttribute("src");
    video.load();
    banner.clear("recordings-cameras");
  };
}
