// camwire web: the review page (#/review). Activity grouped into items per camera by the server
// (web/review.py: overlapping objects, their time span), each an alert or a detection; filters from
// GET /api/review/filters; marks through POST /api/review/reviewed (kept by the sink). An item opens
// in the detail pane: its recorded clip from a few seconds before its first object, the objects'
// snapshots, and a timeline of their stays with motion as a layer beneath.
//
// app.js imports this module and this module imports app.js: its exports are used inside functions
// only, never while the modules are being evaluated.
//
// Hooks for tests (stable): .sev-tab[data-severity] (.active); select.f-camera / .f-label / .f-zone;
// input.f-reviewed; .review-item[data-id][data-severity][data-reviewed][data-camera] .objects .thumb;
// button.mark-reviewed; button.mark-all-reviewed; .review-empty; .review-detail[data-id]
// video.review-clip[data-start]; .review-timeline .obj-span[data-object-id] / .phase[data-phase] / .motion-layer .span;
// .review-snapshots img.snapshot.

import { $, h, api, poll, fmtTime, fmtStay, banner, detail, eventThumb, clipError, setHashQuery } from "./app.js";

const REVIEW_POLL_MS = 5000;
const FILTERS_POLL_MS = 30000;
const TABS = [["alert", "Alerts"], ["detection", "Detections"], ["all", "All"]];

/** The page: its tabs and filters live in the hash (#/review?severity=alert&camera=yard...). */
export function mountReview(root, _parts, params) {
  const state = {
    severity: params.get("severity") || "alert",
    camera: params.get("camera") || "",
    label: params.get("label") || "",
    zone: params.get("zone") || "",
    reviewed: params.get("reviewed") === "1",  // show reviewed items too
  };
  const select = (name, empty) => h("select", { name, class: `f-${name}` }, h("option", { value: "" }, empty));
  const sels = { camera: select("camera", "all cameras"), label: select("label", "all labels"),
    zone: select("zone", "all zones") };
  const showReviewed = h("input", { type: "checkbox", class: "f-reviewed", checked: state.reviewed });
  const tabs = TABS.map(([sev, text]) => h("button", { type: "button", class: "sev-tab", dataset: { severity: sev },
    onclick: () => { state.severity = sev; changed(); } }, text));
  const markAll = h("button", { type: "button", class: "mark-all-reviewed", title: "mark every item shown reviewed" },
    "Mark all reviewed");
  const list = h("div", { class: "review-items" });
  const empty = h("p", { class: "review-empty empty", hidden: true }, "nothing to review");
  const summary = h("span", { class: "summary" });
  root.append(
    h("div", { class: "toolbar" }, h("h2", {}, "Review"), summary),
    h("div", { class: "review-bar" }, h("div", { class: "sev-tabs", role: "tablist" }, ...tabs),
      h("label", {}, "camera", sels.camera), h("label", {}, "label", sels.label), h("label", {}, "zone", sels.zone),
      h("label", { class: "inline" }, showReviewed, "show reviewed"), h("span", { class: "spacer" }), markAll),
    list, empty);

  let shown = [];       // the items as last drawn
  let drawn = "";       // their JSON: a poll that brings nothing new redraws nothing
  const fill = (sel, values, wanted) => {
    const keep = [...new Set([...values, ...(wanted ? [wanted] : [])])].sort();
    sel.replaceChildren(sel.options[0], ...keep.map((v) => h("option", { value: v }, v)));
    sel.value = wanted;
  };
  for (const k of Object.keys(sels)) {
    fill(sels[k], [], state[k]);
    sels[k].addEventListener("change", () => { state[k] = sels[k].value; changed(); });
  }
  showReviewed.addEventListener("change", () => { state.reviewed = showReviewed.checked; changed(); });

  function query() {
    const q = new URLSearchParams();
    if (state.severity !== "all") q.set("severity", state.severity);
    for (const k of ["camera", "label", "zone"]) if (state[k]) q.set(k, state[k]);
    if (!state.reviewed) q.set("reviewed", "0");
    q.set("limit", "100");
    return q;
  }

  function changed() {
    setHashQuery("review", new URLSearchParams({ severity: state.severity, camera: state.camera, label: state.label,
      zone: state.zone, reviewed: state.reviewed ? "1" : "" }));
    drawn = "";
    list.replaceChildren();
    itemsPoll.now();
  }

  async function mark(items, reviewed) {
    const ids = [...new Set(items.flatMap((it) => it.objects.map((o) => o.object_id)))];
    if (!ids.length) return;
    try {
      for (let i = 0; i < ids.length; i += 1000) {
        await api("/api/review/reviewed", { method: "POST", body: { ids: ids.slice(i, i + 1000), reviewed } });
      }
      banner.clear("review-mark");
    } catch (e) {
      if (e.status !== 401) banner.set("review-mark", e.message);
    }
    // the sink writes the mark a moment after the console sent it: look again now and shortly after
    itemsPoll.now();
    setTimeout(() => itemsPoll.now(), 500);
  }
  markAll.addEventListener("click", () => mark(shown.filter((it) => !it.reviewed), true));

  function draw(items) {
    for (const t of tabs) t.classList.toggle("active", t.dataset.severity === state.severity);
    const json = JSON.stringify(items);
    if (json === drawn) return;
    drawn = json;
    shown = items;
    list.replaceChildren(...items.map((it) => itemCard(it, mark)));
    empty.hidden = items.length > 0;
    markAll.disabled = !items.some((it) => !it.reviewed);
    const alerts = items.filter((it) => it.severity === "alert").length;
    summary.textContent = `${items.length} item${items.length === 1 ? "" : "s"}` +
      (state.severity === "all" ? ` (${alerts} alert${alerts === 1 ? "" : "s"})` : "");
  }

  const itemsPoll = poll("review", async () => draw((await api(`/api/review?${query()}`)).items), REVIEW_POLL_MS);
  const filtersPoll = poll("review-filters", async () => {
    const f = await api("/api/review/filters");
    fill(sels.camera, f.cameras, state.camera);
    fill(sels.label, f.labels, state.label);
    fill(sels.zone, f.zones, state.zone);
  }, FILTERS_POLL_MS);
  return () => { itemsPoll(); filtersPoll(); };
}

/** One item: when, where, how long, what; its objects' thumbnails; its mark button. */
function itemCard(it, mark) {
  const objs = it.objects;
  const card = h("div", { class: "review-item", tabIndex: 0, role: "button",
    dataset: { id: it.id, severity: it.severity, reviewed: String(it.reviewed), camera: it.camera } },
    h("div", { class: "ri-head" },
      h("span", { class: "ri-sev", dataset: { severity: it.severity } }, it.severity),
      h("span", { class: "ri-camera" }, it.camera),
      h("span", { class: "ri-at" }, fmtTime(it.start)),
      h("span", { class: "ri-for" }, fmtStay(it.end - it.start)),
      h("span", { class: "ri-labels" }, it.labels.join(", ")),
      it.zones.length ? h("span", { class: "ri-zones", title: "zones" }, it.zones.join(", ")) : null,
      h("span", { class: "spacer" }),
      h("button", { type: "button", class: "mark-reviewed", title: it.reviewed ? "mark not reviewed" : "mark reviewed",
        onclick: (e) => { e.stopPropagation(); mark([it], !it.reviewed); } }, it.reviewed ? "Unreview" : "Reviewed")),
    h("div", { class: "objects" }, ...objs.map((o) =>
      h("span", { class: "obj", dataset: { objectId: o.object_id }, title: `${o.label ?? "object"} ${fmtTime(o.first_seen)}` },
        eventThumb(o), h("span", { class: "obj-label" }, o.label ?? "")))));
  const open = () => openItem(it);
  card.addEventListener("click", open);
  card.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  return card;
}

/** The detail pane: the clip from before the first object, a timeline, the snapshots. */
function openItem(it) {
  detail.close();
  const pane = $("#detail");
  const t0 = it.clip_start;
  const t1 = Math.max(it.end + (it.start - t0), t0 + 1);  // as far after the last object as before the first
  const pct = (t) => `${(100 * (Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)).toFixed(2)}%`;
  const width = (a, b) => `${(100 * Math.max(Math.min(b, t1) - Math.max(a, t0), 0) / (t1 - t0)).toFixed(2)}%`;
  const video = h("video", { class: "review-clip clip", controls: true, autoplay: true, muted: true, playsinline: true,
    src: it.clip_url, dataset: { start: String(t0) } });
  video.muted = true;  // the attribute alone does not mute an element made by script
  const msg = h("p", { class: "clip-message", hidden: true });
  video.addEventListener("error", () => clipError(video, msg, "nothing recorded around this item"));
  const cursor = h("div", { class: "tl-cursor" });
  video.addEventListener("timeupdate", () => { cursor.style.left = pct(t0 + video.currentTime); });
  const seek = (t) => { video.currentTime = Math.max(0, t - t0); video.play().catch(() => {}); };
  const timeline = h("div", { class: "review-timeline", title: "click to play from there" },
    h("div", { class: "motion-layer", title: "motion" }, ...it.motion.map(([a, b]) =>
      h("div", { class: "span", style: `left:${pct(a)};width:${width(a, b)}` }))),
    ...it.objects.map((o) => h("div", { class: "obj-row" },
      h("div", { class: "obj-span", dataset: { objectId: o.object_id, phase: o.phase ?? "" },
        style: `left:${pct(o.first_seen)};width:max(${width(o.first_seen, o.last_seen)}, 3px)`,
        title: `${o.label ?? "object"}: ${fmtTime(o.first_seen)} for ${fmtStay(o.last_seen - o.first_seen)}` +
          (o.phase && o.phase !== "end" ? " so far" : "") + (o.stationary ? ", stationary" : ""),
        onclick: (e) => { e.stopPropagation(); seek(o.first_seen); } }, o.label ?? ""),
      // each phase the sink told: a start, the updates (what changed) and an end, where they fell
      ...(o.phases ?? []).map((p) => h("div", { class: "phase", dataset: { phase: p.phase },
        style: `left:${pct(p.ts)}`,
        title: `${p.phase}${p.changes.length ? ` (${p.changes.join(", ")})` : ""} ${fmtTime(p.ts)}`,
        onclick: (e) => { e.stopPropagation(); seek(p.ts); } })))),
    cursor);
  timeline.addEventListener("click", (e) => {
    const r = timeline.getBoundingClientRect();
    seek(t0 + ((e.clientX - r.left) / r.width) * (t1 - t0));
  });
  pane.replaceChildren(
    h("div", { class: "detail-head" },
      h("h3", {}, `${it.severity} · ${it.labels.join(", ") || "objects"}`),
      h("span", { class: "spacer" }),
      h("a", { href: `#/recordings?camera=${encodeURIComponent(it.camera)}&at=${it.start}` }, "recording"),
      h("button", { class: "close", title: "close (Esc)", onclick: () => detail.close() }, "×")),
    h("p", { class: "detail-sub" }, `${it.camera} · ${fmtTime(it.start)} · ${fmtStay(it.end - it.start)} · ` +
      `${it.objects.length} object${it.objects.length === 1 ? "" : "s"}` + (it.zones.length ? ` · zones ${it.zones.join(", ")}` : "")),
    video, msg,
    h("div", { class: "tl-scale" }, h("span", {}, fmtTime(t0)), h("span", {}, fmtTime(t1))),
    timeline,
    h("div", { class: "review-snapshots" }, ...it.objects.map((o) => o.snapshot_url
      ? h("figure", {}, h("a", { href: o.snapshot_url, target: "_blank", rel: "noopener" },
        h("img", { class: "snapshot", src: o.snapshot_url, alt: `snapshot of ${o.label ?? "an object"}` })),
      h("figcaption", {}, `${o.label ?? ""} · ${fmtTime(o.first_seen)}`))
      : h("p", { class: "muted" }, `${o.label ?? "object"}: no snapshot`))));
  pane.dataset.id = it.id;
  pane.classList.add("review-detail");
  pane.hidden = false;
  document.body.classList.add("detail-open");
}
