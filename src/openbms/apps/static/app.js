// The openbms page: the reading over a websocket, the rest over the JSON API (see apps/server.py).
"use strict";

const $ = (id) => document.getElementById(id);
let limits = {};
let info = { source: "twin", control: false };
let lastReading = null;

function fmt(value, digits, unit) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(digits)} ${unit}`;
}

function fmtTime(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.floor(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return `${h}:${String(m).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function fet(id, on) {
  const el = $(id);
  el.textContent = on === null || on === undefined ? "—" : on ? "on" : "off";
  el.className = "value " + (on ? "on" : "off");
}

function list(id, items, details) {
  const ul = $(id);
  ul.replaceChildren();
  if (!items || items.length === 0) {
    const li = document.createElement("li");
    li.className = "quiet";
    li.textContent = "none";
    ul.append(li);
    return;
  }
  for (const name of items) {
    const li = document.createElement("li");
    const d = (details || []).find((x) => x.fault === name);
    const clears = d && d.cleared_by && d.cleared_by.length ? `; cleared by ${d.cleared_by.join(", ")}` : "";
    li.textContent = d ? `${name} (recovery class ${d.class}${clears})` : name;
    ul.append(li);
  }
}

function renderCells(r) {
  const box = $("cells");
  const cells = r.cell_v || [];
  const lo = Math.min(limits.cell_v_min_v ?? 2.5, ...cells.filter((v) => v !== null)) - 0.05;
  const hi = Math.max(limits.cell_v_max_v ?? 3.65, ...cells.filter((v) => v !== null)) + 0.05;
  const pct = (v) => Math.max(0, Math.min(100, ((v - lo) / (hi - lo)) * 100));
  if (box.childElementCount !== cells.length) {
    box.replaceChildren();
    cells.forEach((_, i) => {
      const c = document.createElement("div");
      c.className = "cell";
      c.innerHTML = `<div class="bar"></div><div class="v"></div><div class="num">${i + 1}</div>`;
      box.append(c);
    });
    for (const [key, cls] of [["cell_v_max_v", ""], ["cell_v_min_v", ""], ["cell_v_warn_high_v", "warn"], ["cell_v_warn_low_v", "warn"]]) {
      if (limits[key] === null || limits[key] === undefined) continue;
      const line = document.createElement("div");
      line.className = "limit " + cls;
      line.dataset.key = key;
      box.append(line);
    }
  }
  const balancing = new Set(r.balancing || []);
  [...box.querySelectorAll(".cell")].forEach((c, i) => {
    const v = cells[i];
    c.querySelector(".bar").style.height = v === null ? "0%" : pct(v) + "%";
    c.querySelector(".v").textContent = v === null ? "?" : v.toFixed(3);
    c.classList.toggle("bal", balancing.has(i + 1));
    c.classList.toggle("high", v !== null && limits.cell_v_max_v && v >= limits.cell_v_max_v);
    c.classList.toggle("low", v !== null && limits.cell_v_min_v && v <= limits.cell_v_min_v);
    c.title = `cell ${i + 1}: ${v === null ? "unreadable" : v.toFixed(3) + " V"}${balancing.has(i + 1) ? ", balancing" : ""}`;
  });
  for (const line of box.querySelectorAll(".limit")) line.style.bottom = pct(limits[line.dataset.key]) + "%";
  const known = cells.filter((v) => v !== null);
  $("cell-range").textContent = known.length ? `${Math.min(...known).toFixed(3)}–${Math.max(...known).toFixed(3)} V` : "";
}

function render(r) {
  lastReading = r;
  if (!r.ok) {
    $("state").textContent = "no reply";
    $("state").className = "value state-fault";
    $("link").textContent = "board silent: " + (r.error || "");
    return;
  }
  const state = r.state || "—";
  $("state").textContent = state;
  $("state").className = "value " + (state === "normal" ? "state-normal" : ["fault", "lockout"].includes(state) ? "state-fault" : "state-other");
  $("pack-v").textContent = fmt(r.pack_v, 2, "V");
  $("current").textContent = fmt(r.current_a, 1, "A");
  $("soc").textContent = r.soc === null || r.soc === undefined ? "—" : `${(r.soc * 100).toFixed(1)} %`;
  fet("charge-fet", r.charge_fet);
  fet("discharge-fet", r.discharge_fet);
  const temps = (r.temperature_c || []).filter((t) => t !== null);
  $("temps").textContent = temps.length ? `${Math.min(...temps).toFixed(1)}–${Math.max(...temps).toFixed(1)} °C` : "—";
  $("clock").textContent = fmtTime(r.t_s);
  list("faults", r.faults, r.fault_details);
  list("warnings", r.warnings);
  renderCells(r);
}

function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { $("link").textContent = "live"; $("link").className = "badge live"; };
  ws.onmessage = (msg) => render(JSON.parse(msg.data).reading);
  ws.onclose = () => {
    $("link").textContent = "connection lost, retrying…";
    $("link").className = "badge lost";
    setTimeout(connect, 1000);
  };
}

function plot(canvas, xs, ys, color, unit) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const pts = xs.map((x, i) => [x, ys[i]]).filter(([x, y]) => x !== null && y !== null);
  ctx.fillStyle = "#6b7785";
  ctx.font = "12px system-ui";
  if (pts.length < 2) { ctx.fillText("no data yet", 10, 20); return; }
  const x0 = pts[0][0], x1 = pts[pts.length - 1][0];
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (y1 - y0 < 1e-6) { y0 -= 1; y1 += 1; }
  const X = (x) => 50 + ((x - x0) / Math.max(x1 - x0, 1e-9)) * (w - 60);
  const Y = (y) => h - 20 - ((y - y0) / (y1 - y0)) * (h - 30);
  ctx.fillText(`${y1.toFixed(2)} ${unit}`, 2, 14);
  ctx.fillText(`${y0.toFixed(2)} ${unit}`, 2, h - 22);
  ctx.fillText(fmtTime(x0), 50, h - 4);
  ctx.fillText(fmtTime(x1), w - 60, h - 4);
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  pts.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
  ctx.stroke();
}

async function getJson(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.json();
}

async function refreshSlow() {
  try {
    const now = lastReading && lastReading.t_s !== null ? lastReading.t_s : null;
    const h = await getJson("/api/history" + (now !== null ? `?since_s=${now - 3600}` : ""));
    plot($("plot-v"), h.t_s, h.pack_v, "#2e86de", "V");
    plot($("plot-i"), h.t_s, h.current_a, "#d68910", "A");
    const page = await getJson("/api/events?limit=50&offset=-50");
    const body = $("events").querySelector("tbody");
    body.replaceChildren();
    for (const e of page.events.slice().reverse()) {
      const tr = document.createElement("tr");
      const { t_s, kind, id, pack, run, ...rest } = e;
      const detail = Object.entries(rest)
        .map(([k, v]) => `${k}=${typeof v === "object" && v !== null ? JSON.stringify(v) : v}`)
        .join("  ");
      for (const text of [fmtTime(t_s), kind, detail]) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      body.append(tr);
    }
    const d = await getJson("/api/diagnosis");
    renderDiagnosis(d);
  } catch (err) {
    /* the websocket badge says when the server is gone */
  }
}

function renderDiagnosis(d) {
  const box = $("diagnosis");
  box.className = "";
  box.replaceChildren();
  const head = document.createElement("p");
  head.innerHTML = `<strong></strong>`;
  head.querySelector("strong").textContent = `Recommendation: ${d.recommendation}`;
  box.append(head);
  for (const r of d.reasons || []) {
    const p = document.createElement("p");
    p.textContent = r.text;
    box.append(p);
  }
  if (d.steps && d.steps.length) {
    const ol = document.createElement("ol");
    for (const s of d.steps) {
      const li = document.createElement("li");
      li.textContent = s.text + (s.safety ? ` (${s.safety})` : "");
      ol.append(li);
    }
    box.append(ol);
  }
}

function token() {
  const t = $("token").value.trim();
  sessionStorage.setItem("openbms-token", t);
  return t;
}

async function post(url, body) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token()}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let doc = {};
  try { doc = await res.json(); } catch (e) { /* empty body */ }
  return { status: res.status, doc };
}

async function act(step, say) {
  const { status, doc } = await post("/api/actions", step);
  const msg = $("message");
  if (status === 200) {
    msg.className = "done";
    msg.textContent = say;
    render(doc.reading);
  } else {
    msg.className = "error";
    msg.textContent = `${status}: ${doc.detail || "refused"}`;
  }
}

function wireControls() {
  const num = (id) => Number($(id).value);
  const on = (id, fn) => $(id).addEventListener("click", fn);
  on("load-on", () => act({ load: { current_a: num("load-a") } }, `load of ${num("load-a")} A connected`));
  on("load-off", () => act({ disconnect: "load" }, "load disconnected"));
  on("charger-on", () => act({ charger: { voltage_v: num("charger-v"), current_a: num("charger-a") } }, "charger connected"));
  on("charger-off", () => act({ disconnect: "charger" }, "charger disconnected"));
  on("short-on", () => act({ short: { resistance_ohm: num("short-ohm") } }, "terminals shorted"));
  on("short-off", () => act({ disconnect: "short" }, "short cleared"));
  on("ambient-set", () => act({ ambient: { temperature_c: num("ambient-c") } }, "ambient set"));
  const fault = () => {
    const f = { fault: $("fault").value };
    if (["cell_internal_short", "capacity_fade", "open_balance_wire", "sensor_stuck", "sensor_drift"].includes(f.fault)) f.cell = num("fault-cell");
    return f;
  };
  on("inject", () => act({ inject: fault() }, `${$("fault").value} injected`));
  on("repair", () => act({ repair: fault() }, `${$("fault").value} repaired`));
  on("charge-off", () => act({ fets: { charge_on: false } }, "charge FET switched off"));
  on("charge-on", () => act({ fets: { charge_on: true } }, "charge FET switched on"));
  on("discharge-off", () => act({ fets: { discharge_on: false } }, "discharge FET switched off"));
  on("discharge-on", () => act({ fets: { discharge_on: true } }, "discharge FET switched on"));
  on("press", () => act({ press: "reset_button" }, "reset button pressed"));
  on("soft-reset", () => act({ command: "soft_reset" }, "soft reset sent"));
  on("wizard-start", () => wizard("start"));
  on("wizard-next", () => wizard("next"));
}

let walk = null;

async function wizard(what) {
  const name = $("procedure").value;
  const { status, doc } = await post(`/api/procedures/${name}/${what}`);
  const msg = $("wizard-message");
  if (status === 200 || status === 409) {
    walk = doc;
    msg.className = doc.refused ? "error" : "done";
    msg.textContent = doc.refused ? `Not yet: ${doc.refused}` : doc.finished ? "Finished: the test passed and the result is logged." : "";
    showWalk();
  } else {
    msg.className = "error";
    msg.textContent = `${status}: ${doc.detail || "refused"}`;
  }
}

async function pollWalk() {
  if (!walk || walk.finished) return;
  try {
    walk = await getJson(`/api/procedures/${walk.procedure}`);
    showWalk();
  } catch (e) { /* ignore */ }
}

function showWalk() {
  const ol = $("wizard-steps");
  ol.replaceChildren();
  walk.steps.forEach((s, i) => {
    const li = document.createElement("li");
    li.textContent = s.text;
    li.className = walk.finished || i < walk.index ? "past" : i === walk.index ? "current" : "";
    ol.append(li);
  });
  const cur = walk.current;
  const box = $("wizard-current");
  box.replaceChildren();
  const actions = $("wizard-actions");
  actions.replaceChildren();
  $("wizard-next").disabled = walk.finished;
  if (!cur) return;
  const p = document.createElement("p");
  p.textContent = `Step ${walk.index + 1} of ${walk.steps.length}: ${cur.text}`;
  box.append(p);
  if (cur.safety) {
    const s = document.createElement("p");
    s.className = "safety";
    s.textContent = cur.safety;
    box.append(s);
  }
  if (cur.wait_left_s > 0) {
    const c = document.createElement("p");
    c.id = "wizard-countdown";
    c.textContent = `Wait ${Math.ceil(cur.wait_left_s)} s (board time)`;
    box.append(c);
  }
  if (cur.blocked) {
    const b = document.createElement("p");
    b.className = "quiet";
    b.textContent = `Before going on: ${cur.blocked}`;
    box.append(b);
  }
  if (info.control) {
    for (const step of cur.actions) {
      const btn = document.createElement("button");
      const [k, v] = Object.entries(step)[0];
      btn.textContent = `In the twin: ${k} ${typeof v === "string" ? v.replace("_", " ") : ""}`;
      btn.addEventListener("click", () => act(step, `${k} ${v} done`).then(pollWalk));
      actions.append(btn);
    }
  }
}

async function start() {
  // Before any await: a token typed while the page loads must not be overwritten.
  if (!$("token").value) $("token").value = sessionStorage.getItem("openbms-token") || "";
  info = await getJson("/api/info");
  limits = await getJson("/api/limits");
  $("label").textContent = `${info.source}: ${info.label}`;
  if (info.source !== "twin") {
    for (const b of $("controls").querySelectorAll("button")) b.disabled = !b.closest(".board") || !info.control;
    $("control-note").textContent = info.control
      ? "a real board: the FETs switch from here; everything else with your hands, the page checks each step"
      : "a real board, read only (start serve with --allow-control to switch its FETs)";
  }
  wireControls();
  connect();
  refreshSlow();
  setInterval(refreshSlow, 2000);
  setInterval(pollWalk, 1000);
}

start();
