/* What both dashboard pages share: the data embedded in the page, escaping, number formats,
   axis ticks, and the filter selects. Nothing here reaches the network: the page carries its data
   (bench/dashboard.py inlines it), so it works from file:// where fetch() is refused.
   SVG is written as markup into a container; the HTML parser gives it the SVG namespace. */
"use strict";

function dashboardData() {
  return JSON.parse(document.getElementById("dashboard-data").textContent);
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

/* 3 significant digits; k/M/G for counts so that instruction counts stay short. */
function formatNumber(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  const size = Math.abs(x);
  for (const [scale, suffix] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (size >= scale) return (x / scale).toPrecision(3) + suffix;
  }
  if (size !== 0 && size < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(3)));
}

function formatValue(x, unit) {
  return unit === "instructions" ? `${formatNumber(x)} instructions` : `${formatNumber(x)} ${unit}`;
}

function formatPct(x) {
  return x === null || x === undefined ? "–" : `${x >= 0 ? "+" : ""}${x.toFixed(1)}%`;
}

/* "2026-11-23T10:00:00+00:00" -> "2026-11-23 10:00" (UTC as recorded). */
function formatDate(iso) {
  return iso ? iso.replace("T", " ").slice(0, 16) : "";
}

/* About `count` round-numbered ticks, the first at or below lo, the last at or above hi. */
function niceTicks(lo, hi, count) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  const last = Math.ceil(hi / step) * step;
  for (let t = Math.floor(lo / step) * step; t <= last + step * 1e-9; t += step) {
    ticks.push(Number(t.toPrecision(12)));
  }
  return ticks;
}

/* Labels for evenly spaced ticks, with as many decimals as the step needs (0.0155, 0.01575 …);
   instruction counts in k/M/G. */
function tickLabels(ticks, unit) {
  const top = Math.max(...ticks.map(Math.abs));
  const [scale, suffix] =
    (unit === "instructions" && [[1e9, "G"], [1e6, "M"], [1e3, "k"]].find(([s]) => top >= s)) || [1, ""];
  const step = ticks.length > 1 ? Math.abs(ticks[1] - ticks[0]) / scale : 1;
  let digits = 0;
  while (digits < 12 && ticks.some((t) => Math.abs(t / scale - Number((t / scale).toFixed(digits))) > step * 1e-6)) {
    digits += 1;
  }
  return ticks.map((t) => (t / scale).toFixed(digits) + suffix);
}

function linearScale(d0, d1, r0, r1) {
  const span = d1 - d0 || 1;
  return (v) => r0 + ((v - d0) * (r1 - r0)) / span;
}

/* One <select> per field, offering the values the items have; `onChange` runs on any choice. */
function buildFilters(form, items, fields, onChange) {
  for (const field of fields) {
    const values = [...new Set(items.map((item) => item[field]))]
      .filter((v) => v !== null && v !== undefined)
      .map(String)
      .sort();
    if (values.length === 0) continue;
    const options = values.map((v) => `<option value="${esc(v)}">${esc(v)}</option>`).join("");
    const label = document.createElement("label");
    label.innerHTML =
      `${esc(field)} <select name="${esc(field)}" id="filter-${esc(field)}">` +
      `<option value="">all (${values.length})</option>${options}</select>`;
    form.appendChild(label);
  }
  form.addEventListener("change", onChange);
}

/* The chosen value per field ("" = any). */
function filterChoice(form) {
  return Object.fromEntries([...form.querySelectorAll("select")].map((s) => [s.name, s.value]));
}

function matchesChoice(item, choice) {
  return Object.entries(choice).every(([field, value]) => value === "" || String(item[field]) === value);
}
