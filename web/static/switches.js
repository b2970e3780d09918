// camwire web: a camera's switches on its page (#/camera/NAME): detection, recording, snapshots, each
// on until someone turns it off (the sink keeps them: sink/switches.py). A click POSTs
// /api/cameras/NAME/switches {"switch": "detect", "on": false}; the toggle then waits, marked pending,
// for /api/cameras to show the sink's new state (status.db, written each second), and shows the sink's
// state again if none came within PENDING_MS. Greyed out, with why in the tooltip, while this console
// cannot set them (no token, no --sink, no sink connected: /api/cameras' `switches`; or the camera's own
// sink not connected, where there are several: its `switches_away`).
//
// app.js imports this module and this module imports app.js: its exports are used inside functions
// only, never while the modules are being evaluated.
//
// Hooks for tests (stable): .switches[data-settable] .switch[data-switch][data-on=true|false]
// (a button, role="switch", aria-checked; [data-pending] while a change is on its way); .switch-error.

import { h, api } from "./app.js";

const SWITCHES = [
  ["detect", "Detection", "its objects become events and their boxes are drawn"],
  ["record", "Recording", "the recorder writes its video"],
  ["snapshots", "Snapshots", "pictures of its events and objects are kept"],
];
const PENDING_MS = 10000;

/** The three toggles of one camera; update() with each /api/cameras answer. */
export class SwitchPanel {
  constructor(camera) {
    this.camera = camera;
    this.shown = {};            // switch -> on, as /api/cameras last said
    this.pending = new Map();   // switch -> {on, until}: asked, not shown yet
    this.locked = "not known yet";
    this.error = h("span", { class: "switch-error error-text", hidden: true });
    this.buttons = new Map(SWITCHES.map(([key, label, what]) => [key, h("button", {
      class: "switch", type: "button", role: "switch", "aria-checked": "true", dataset: { switch: key, on: "true" },
      "data-what": what, onclick: () => this.toggle(key),
    }, h("span", { class: "knob", "aria-hidden": "true" }), label)]));
    this.el = h("div", { class: "switches", dataset: { settable: "false" } }, [...this.buttons.values()], this.error);
  }

  /** ``cam``: the camera's dict of /api/cameras; ``settable``: its top-level `switches`. */
  update(cam, settable) {
    this.shown = cam.switches || {};
    // the console's own reason (no token, no sink at all) first, else this camera's (its sink away)
    this.locked = settable && settable.settable ? cam.switches_away || null
      : (settable && settable.why) || "cannot be set from here";
    this.render();
  }

  render() {
    const now = Date.now();
    this.el.dataset.settable = String(!this.locked);
    this.el.title = this.locked ? `switches cannot be set now: ${this.locked}` : "";
    for (const [key, button] of this.buttons) {
      const asked = this.pending.get(key);
      if (asked && (asked.on === this.shown[key] || now > asked.until)) this.pending.delete(key);
      const waiting = this.pending.get(key);
      const on = waiting ? waiting.on : this.shown[key] !== false;
      button.dataset.on = String(on);
      button.setAttribute("aria-checked", String(on));
      button.toggleAttribute("data-pending", !!waiting);
      button.disabled = !!this.locked || !!waiting;
      const label = button.textContent;
      button.title = this.locked ? this.el.title
        : `${label} ${on ? "on" : "off"}: ${button.dataset.what}${on ? "" : " — not now"}. Click to turn it ${on ? "off" : "on"}.`;
    }
  }

  async toggle(key) {
    const on = this.shown[key] === false;  // the other way from what the sink says now
    this.pending.set(key, { on, until: Date.now() + PENDING_MS });
    this.error.hidden = true;
    this.render();
    try {
      await api(`/api/cameras/${encodeURIComponent(this.camera)}/switches`, { method: "POST", body: { switch: key, on } });
    } catch (e) {
      this.pending.delete(key);
      if (e.status !== 401) {
        this.error.textContent = e.message;
        this.error.hidden = false;
      }
    }
    this.render();
  }
}

/** The small badges a live tile shows for switches that are off ("detect off"); [] when all are on. */
export function offBadges(cam) {
  return SWITCHES.filter(([key]) => cam.switches && cam.switches[key] === false)
    .map(([key]) => h("span", { class: "switch-off-badge", dataset: { switch: key } }, `${key} off`));
}
