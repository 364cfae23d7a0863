// The live DAG widget's front end (anywidget ESM, no bundler).
//
// The kernel lays the graph out and pushes an SVG plus per-node details; this view
// swaps the SVG in, shows details on click and, once a second, advances the running
// nodes' durations and the run header from the start timestamps in the details. The
// ticking is pure browser work: no kernel messages, no new layout.

const RUNNING = new Set(["running", "retrying"]);
const TICK_MS = 1000;

/** Same format as the kernel's fmt_duration, so a tick never changes the label's shape. */
function fmtDuration(seconds) {
  if (seconds < 1) return Math.max(0, Math.round(seconds * 1000)) + " ms";
  if (seconds < 120) return seconds.toFixed(1) + " s";
  if (seconds < 7200) return (seconds / 60).toFixed(1) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function line(key, value) {
  const d = document.createElement("div");
  const b = document.createElement("b");
  b.textContent = key + ": ";
  const v = document.createElement("span");
  v.textContent = String(value);
  d.append(b, v);
  return d;
}

function pre(text) {
  const p = document.createElement("pre");
  p.textContent = text;
  return p;
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

function render({ model, el }) {
  el.classList.add("dynpipe-dag");
  const head = document.createElement("div");
  head.className = "dp-head";
  const title = document.createElement("span");
  title.className = "dp-title";
  const elapsed = document.createElement("span");
  elapsed.className = "dp-elapsed";
  head.append(title, elapsed);
  const bar = document.createElement("div");
  bar.className = "dp-bar";
  const pic = document.createElement("div");
  pic.className = "dp-pic";
  const info = document.createElement("div");
  info.className = "dp-info";
  el.append(head, bar, pic, info);
  let selected = null;
  let pending = null; // a group whose expand/collapse the kernel has not drawn yet
  let skew = 0; // kernel clock minus browser clock, in seconds
  let durationValue = null; // the selected running node's duration text, ticked

  const now = () => Date.now() / 1000 + skew;

  function show() {
    info.replaceChildren();
    durationValue = null;
    const d = selected && model.get("details")[selected];
    if (!d) return;
    if (d.kind === "group") {
      info.append(line("step", d.step + " ×" + d.total), line("progress", d.progress));
      if (d.expandable) {
        const a = document.createElement("button");
        a.textContent = "expand";
        a.onclick = () => toggle(d.step);
        info.append(a);
      }
      if (pending === d.step) {
        info.append(line("expanding", "drawn as soon as the kernel is free (a busy cell delays it)"));
      }
      const ul = document.createElement("ul");
      ul.className = "dp-members";
      for (const [id, st, dur, err] of d.members) {
        const li = document.createElement("li");
        li.dataset.dpStatus = st;
        li.textContent = id + " — " + st + (dur ? " · " + dur : "") + (err ? " — " + err : "");
        ul.append(li);
      }
      if (d.hidden) {
        const li = document.createElement("li");
        li.textContent = "… and " + d.hidden + " more";
        ul.append(li);
      }
      info.append(ul);
      return;
    }
    info.append(line("step", d.id + " (" + d.step + ", " + d.runtime + ")"), line("status", d.status));
    if (d.duration) {
      const row = line("duration", d.duration);
      if (RUNNING.has(d.status) && d.start != null) durationValue = row.lastChild;
      info.append(row);
    }
    if (d.attempts > 1) info.append(line("attempts", d.attempts));
    if (d.cached) info.append(line("cached", "yes"));
    if (d.upstream.length) info.append(line("upstream", d.upstream.join(", ")));
    const ins = Object.entries(d.inputs).concat(Object.entries(d.parameters));
    if (ins.length) info.append(line("inputs", ins.map(([k, v]) => k + "=" + v).join(", ")));
    if (d.outputs.length) info.append(line("outputs", d.outputs.join(", ")));
    if (d.preview) info.append(line("preview", d.preview));
    if (d.error) info.append(pre(d.traceback || d.error));
    if (d.logs.length) info.append(pre(d.logs.join("\n")));
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
    for (const g of pic.querySelectorAll("g.node")) {
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
    el.dataset.dpActive = clock.running ? "yes" : "no";
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
    bar.replaceChildren();
    for (const step of model.get("expanded")) {
      const b = document.createElement("button");
      b.textContent = "collapse " + step;
      b.onclick = () => toggle(step);
      bar.append(b);
    }
    el.dataset.dpRun = model.get("run_status");
    const svg = model.get("svg");
    pic.innerHTML = svg || model.get("html");
    const details = model.get("details");
    if (pending !== null) {
      // done once the picture matches the request
      const grouped = Object.values(details).some((d) => d.kind === "group" && d.step === pending);
      if (model.get("expanded").includes(pending) !== grouped) pending = null;
    }
    for (const g of pic.querySelectorAll("g.node")) {
      const d = details[g.id];
      if (!d) continue;
      g.dataset.dpStatus = d.kind === "group" ? d.progress : d.status;
      g.style.cursor = "pointer";
      if (g.id === selected) g.classList.add("dp-selected");
    }
    show();
    tick();
  }

  pic.addEventListener("click", (e) => {
    const g = e.target.closest("g.node, tr[id]");
    if (!g) return;
    selected = g.id;
    draw();
  });
  pic.addEventListener("dblclick", (e) => {
    const g = e.target.closest("g.node");
    const d = g && model.get("details")[g.id];
    if (d && d.kind === "group" && d.expandable) toggle(d.step);
  });
  const keys = ["svg", "html", "details", "summary", "run_status", "expanded", "run_name"];
  for (const k of keys) model.on("change:" + k, draw);
  draw();
  const timer = setInterval(tick, TICK_MS);
  return () => {
    clearInterval(timer);
    for (const k of keys) model.off("change:" + k, draw);
  };
}

export default { render };
