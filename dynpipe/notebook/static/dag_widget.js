// The live DAG widget's front end (anywidget ESM, no bundler).
//
// The kernel lays the graph out and pushes an SVG plus per-node details; this view
// swaps the SVG in, fits it to the cell's width (wheel to zoom once the picture has
// focus or with Ctrl, drag to pan, "fit" to reset), shows details on click and, once
// a second, advances the running nodes' durations and the run header from the start
// timestamps in the details. All of this is browser work: no kernel messages, no layout.

const RUNNING = new Set(["running", "retrying"]);
const TICK_MS = 1000;
const MAX_HEIGHT = 600; // px: a taller picture is panned, never cut off
const RUNTIMES = {
  inline: "inline (in the kernel's process)",
  isolated: "isolated (its own worker process)",
};

/** Same format as dynpipe.display.format_duration, so a tick keeps the label's shape. */
function fmtDuration(seconds) {
  if (seconds < 1) return Math.max(0, Math.round(seconds * 1000)) + " ms";
  if (seconds < 120) return seconds.toFixed(1) + " s";
  if (seconds < 7200) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function button(text, title, onclick) {
  const b = el("button", "jp-Button jp-mod-styled dp-button", text);
  b.title = title;
  b.onclick = onclick;
  return b;
}

/** A key/value row of the details table; returns the value cell. */
function row(table, key, value) {
  table.append(el("dt", "", key));
  const dd = el("dd", "", value);
  table.append(dd);
  return dd;
}

/** Code the reader can copy (a button copies it; the text is selectable too). */
function snippet(code) {
  const box = el("div", "dp-snippet");
  const c = el("code", "", code);
  const copy = button("copy", "copy to the clipboard", () => {
    const done = () => (copy.textContent = "copied");
    if (navigator.clipboard) navigator.clipboard.writeText(code).then(done, () => select(c));
    else select(c);
  });
  box.append(c, copy);
  return box;
}

function select(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const sel = window.getSelection();
  sel.removeAllRanges();
  sel.addRange(range);
}

/** Counts, first start and (when nothing runs) last end over nodes and groups. */
function runClock(details) {
  const counts = {};
  let first = null;
  let last = null;
  let running = false;
  let total = 0;
  const add = (status, n) => {
    counts[status] = (counts[status] || 0) + n;
    total += n;
    if (RUNNING.has(status)) running = true;
  };
  for (const d of Object.values(details)) {
    if (d.kind === "group") {
      for (const [status, n] of Object.entries(d.counts)) add(status, n);
    } else {
      add(d.status, 1);
    }
    if (d.start != null && (first === null || d.start < first)) first = d.start;
    if (d.end != null && (last === null || d.end > last)) last = d.end;
  }
  return { counts, first, last, running, total };
}

function render({ model, el: root }) {
  root.classList.add("dynpipe-dag");
  const head = el("div", "dp-head");
  const title = el("span", "dp-title");
  const elapsed = el("span", "dp-elapsed");
  // The Dask dashboard of the cluster running the isolated steps, when there is one.
  const dashboard = el("a", "dp-dashboard", "Dask dashboard");
  dashboard.target = "_blank";
  dashboard.rel = "noopener noreferrer";
  dashboard.title = "the Dask cluster's dashboard (workers, task stream, memory)";
  head.append(title, elapsed, dashboard);
  const bar = el("div", "dp-bar");
  const tools = el("div", "dp-tools");
  const groups = el("span", "dp-groups");
  bar.append(tools, groups);
  const pic = el("div", "dp-pic");
  pic.tabIndex = 0;
  const stage = el("div", "dp-stage");
  pic.append(stage);
  const info = el("div", "dp-info");
  root.append(head, bar, pic, info);
  let selected = null;
  let pending = null; // a group whose expand/collapse the kernel has not drawn yet
  let skew = 0; // kernel clock minus browser clock, in seconds
  let durationValue = null; // the selected running node's duration text, ticked
  // The view: scale and offset; `moved` once the reader zoomed or panned (kept across frames).
  const view = { k: 1, x: 0, y: 0, w: 0, h: 0, moved: false };
  let drag = null;
  let dragged = false;

  const now = () => Date.now() / 1000 + skew;

  function apply() {
    stage.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.k})`;
    root.dataset.dpZoom = view.k.toFixed(3);
  }

  /** Fit the picture to the cell's width (never enlarged), the box to the picture's height. */
  function fit() {
    const width = pic.clientWidth || 800;
    view.k = view.w ? Math.min(1, width / view.w) : 1;
    view.x = 0;
    view.y = 0;
    view.moved = false;
    pic.style.height = Math.max(40, Math.min(MAX_HEIGHT, view.h * view.k + 4)) + "px";
    apply();
  }

  function zoom(factor, cx, cy) {
    const k = Math.min(4, Math.max(0.02, view.k * factor));
    view.x = cx - ((cx - view.x) * k) / view.k;
    view.y = cy - ((cy - view.y) * k) / view.k;
    view.k = k;
    view.moved = true;
    apply();
  }

  tools.append(
    button("fit", "fit the whole graph to the width (reset zoom and pan)", fit),
    button("−", "zoom out", () => zoom(1 / 1.25, pic.clientWidth / 2, pic.clientHeight / 2)),
    button("+", "zoom in", () => zoom(1.25, pic.clientWidth / 2, pic.clientHeight / 2)),
  );
  tools.title = "drag to pan; wheel zooms after a click on the picture (or with Ctrl)";

  pic.addEventListener(
    "wheel",
    (e) => {
      if (!(e.ctrlKey || e.metaKey || document.activeElement === pic)) return;
      e.preventDefault();
      const r = pic.getBoundingClientRect();
      zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - r.left, e.clientY - r.top);
    },
    { passive: false },
  );
  pic.addEventListener("pointerdown", (e) => {
    drag = { x: e.clientX, y: e.clientY, vx: view.x, vy: view.y };
    dragged = false;
  });
  pic.addEventListener("pointermove", (e) => {
    if (!drag || !e.buttons) return;
    const dx = e.clientX - drag.x;
    const dy = e.clientY - drag.y;
    if (!dragged && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!dragged) pic.setPointerCapture(e.pointerId);
    dragged = true;
    view.x = drag.vx + dx;
    view.y = drag.vy + dy;
    view.moved = true;
    apply();
  });
  pic.addEventListener("pointerup", () => (drag = null));

  function showGroup(d) {
    const table = el("dl", "dp-kv");
    row(table, "step", d.step + " ×" + d.total);
    row(table, "progress", d.progress);
    info.append(table);
    if (d.expandable) info.append(button("expand", "draw every member (as a grid)", () => toggle(d.step)));
    if (pending === d.step) {
      info.append(el("div", "dp-note", "drawn as soon as the kernel is free (a busy cell delays it)"));
    }
    const ul = el("ul", "dp-members");
    for (const [id, st, dur, err] of d.members) {
      const li = el("li", "", id + " — " + st + (dur ? " · " + dur : "") + (err ? " — " + err : ""));
      li.dataset.dpStatus = st;
      ul.append(li);
    }
    if (d.hidden) ul.append(el("li", "", "… and " + d.hidden + " more"));
    info.append(ul);
  }

  function showNode(d) {
    const top = el("div", "dp-info-head");
    const badge = el("span", "dp-badge", d.status);
    badge.dataset.dpStatus = d.status;
    top.append(el("b", "", d.id), badge, el("span", "dp-runtime", RUNTIMES[d.runtime] || d.runtime));
    const table = el("dl", "dp-kv");
    row(table, "step", d.step);
    if (d.where) row(table, RUNNING.has(d.status) ? "running on" : "ran on", d.where);
    if (d.duration) {
      const value = row(table, "duration", d.duration);
      if (RUNNING.has(d.status) && d.start != null) durationValue = value;
    }
    // The node's badge counts retries (⟳2); say both so the two always read alike.
    if (d.attempts > 1) row(table, "attempts", `${d.attempts} (⟳${d.attempts - 1} retries)`);
    const params = Object.entries(d.parameters);
    if (params.length) row(table, "parameters", params.map(([k, v]) => k + "=" + v).join(", "));
    const ins = Object.entries(d.inputs);
    if (ins.length) row(table, "inputs", ins.map(([k, v]) => k + "=" + v).join(", "));
    if (d.upstream.length) row(table, "upstream", d.upstream.join(", "));
    if (d.preview) row(table, "preview", d.preview);
    info.append(top, table);
    const artifacts = Object.entries(d.artifacts || {});
    for (const [name, id] of artifacts) {
      info.append(el("div", "dp-label", "output " + name + " · artifact " + id));
      info.append(snippet('Client().get_artifact_version("' + id + '").load()'));
    }
    if (!artifacts.length && d.outputs.length) row(table, "outputs", d.outputs.join(", "));
    if (d.error) {
      info.append(el("div", "dp-label", "error"));
      info.append(el("pre", "dp-error", d.traceback || d.error));
    }
    if (d.logs) {
      info.append(el("div", "dp-label", "log"));
      info.append(el("pre", "dp-log", d.logs));
    }
  }

  function show() {
    info.replaceChildren();
    durationValue = null;
    const d = selected && model.get("details")[selected];
    info.hidden = !d;
    if (!d) return;
    if (d.kind === "group") showGroup(d);
    else showNode(d);
  }

  function toggle(step) {
    pending = step;
    const cur = model.get("expanded");
    const i = cur.indexOf(step);
    model.set("expanded", i < 0 ? cur.concat([step]) : cur.filter((s) => s !== step));
    model.save_changes();
  }

  /** Advance every running node's label and the run header to the current time. */
  function tick() {
    const details = model.get("details");
    const t = now();
    for (const g of stage.querySelectorAll("g.node")) {
      const d = details[g.id];
      if (!d || d.kind !== "node" || !RUNNING.has(d.status) || d.start == null) continue;
      for (const text of g.querySelectorAll("text")) {
        const parts = text.textContent.split(" · ");
        if (parts.length > 1 && parts[0] === d.status) {
          parts[1] = fmtDuration(t - d.start);
          text.textContent = parts.join(" · ");
        }
      }
    }
    if (durationValue !== null) {
      const d = details[selected];
      if (d && d.start != null) durationValue.textContent = fmtDuration(t - d.start);
    }
    const clock = runClock(details);
    const status = model.get("run_status");
    const state = status !== "running" ? status : clock.running ? "running" : "open, idle";
    const parts = Object.entries(clock.counts)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([s, n]) => n + " " + s);
    const steps = clock.total + (clock.total === 1 ? " step" : " steps");
    title.textContent =
      (model.get("run_name") || model.get("summary")) +
      " · " +
      state +
      " · " +
      steps +
      (parts.length ? " (" + parts.join(", ") + ")" : "");
    root.dataset.dpActive = clock.running ? "yes" : "no";
    if (clock.first === null) {
      elapsed.textContent = "";
    } else {
      const until = clock.running || clock.last === null ? t : clock.last;
      elapsed.textContent =
        " · " + (clock.running ? "elapsed " : "active ") + fmtDuration(until - clock.first);
    }
  }

  function draw() {
    const clock = model.get("clock");
    if (clock) skew = clock - Date.now() / 1000;
    groups.replaceChildren();
    for (const step of model.get("expanded")) {
      groups.append(button("collapse " + step, "draw " + step + " as one node", () => toggle(step)));
    }
    root.dataset.dpRun = model.get("run_status");
    const link = model.get("dashboard");
    const web = /^https?:\/\//i.test(link || ""); // never a javascript: or data: URL
    dashboard.hidden = !web;
    if (web) dashboard.href = link;
    stage.innerHTML = model.get("svg") || model.get("html");
    const svg = stage.querySelector("svg");
    const box = svg && svg.viewBox && svg.viewBox.baseVal;
    if (box && box.width) {
      // Natural size in CSS px (dot writes points); scaling happens on the stage.
      view.w = (box.width * 4) / 3;
      view.h = (box.height * 4) / 3;
      svg.setAttribute("width", view.w);
      svg.setAttribute("height", view.h);
    } else {
      view.w = stage.scrollWidth;
      view.h = stage.scrollHeight;
    }
    if (!view.moved) fit();
    const details = model.get("details");
    if (pending !== null) {
      // done once the picture matches the request
      const grouped = Object.values(details).some((d) => d.kind === "group" && d.step === pending);
      if (model.get("expanded").includes(pending) !== grouped) pending = null;
    }
    for (const g of stage.querySelectorAll("g.node")) {
      const d = details[g.id];
      if (!d) continue;
      g.dataset.dpStatus = d.kind === "group" ? d.progress : d.status;
      g.style.cursor = "pointer";
      if (g.id === selected) g.classList.add("dp-selected");
    }
    show();
    tick();
  }

  stage.addEventListener("click", (e) => {
    if (dragged) return; // the end of a pan, not a click
    const g = e.target.closest("g.node, tr[id]");
    if (!g) return;
    selected = g.id;
    draw();
  });
  stage.addEventListener("dblclick", (e) => {
    const g = e.target.closest("g.node");
    const d = g && model.get("details")[g.id];
    if (d && d.kind === "group" && d.expandable) toggle(d.step);
  });
  const keys = ["svg", "html", "details", "summary", "run_status", "expanded", "run_name", "dashboard"];
  for (const k of keys) model.on("change:" + k, draw);
  draw();
  // The cell's width is known only once the output is attached: fit again then.
  const resize = new ResizeObserver(() => view.moved || fit());
  resize.observe(pic);
  const timer = setInterval(tick, TICK_MS);
  return () => {
    clearInterval(timer);
    resize.disconnect();
    for (const k of keys) model.off("change:" + k, draw);
  };
}

export default { render };
