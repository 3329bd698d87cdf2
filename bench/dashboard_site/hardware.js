/* The hardware page: the same benchmarks on each machine configuration (machine + threads) as
   speed-ups against a baseline configuration chosen in a select box. Speed-ups and geometric means
   are computed in Python (bench/hardware.py) for every possible baseline; this only shows them. */
"use strict";

const HARDWARE_FILTERS = ["model", "kind", "backend", "device"];
const CASE_FIELDS = ["model", "kind", "backend", "device", "batch_size"];
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

function drawHardware() {
  const data = dashboardData();
  const select = document.getElementById("baseline");
  if (!select) return; // no timed runs: the page says so instead
  select.innerHTML = data.configs.map((c) => `<option value="${esc(c)}">${esc(c)}</option>`).join("");
  select.value = data.baseline;
  const form = document.getElementById("filters");
  const render = () => renderHardware(data, select.value, filterChoice(form));
  buildFilters(form, data.by_baseline[data.baseline].speedups, HARDWARE_FILTERS, render);
  select.addEventListener("change", render);
  render();
}

function colourOf(data, config) {
  return PALETTE[data.configs.indexOf(config) % PALETTE.length];
}

function renderHardware(data, baseline, choice) {
  const view = data.by_baseline[baseline];
  const others = data.configs.filter((c) => c !== baseline);
  const configs = [baseline, ...others];
  const benchmarks = new Map(); // name -> {case fields, byConfig}, in bench/hardware.py's order
  for (const row of view.speedups) {
    if (!benchmarks.has(row.name)) benchmarks.set(row.name, { ...row, byConfig: {} });
    benchmarks.get(row.name).byConfig[row.config] = row;
  }
  const all = [...benchmarks.values()];
  const shown = all.filter((b) => matchesChoice(b, choice));
  document.getElementById("geomeans").innerHTML = summaryTable(view.geomeans, "geomeans-table", baseline);
  document.getElementById("geomeans-by-kind").innerHTML = summaryTable(
    view.geomeans_by_kind,
    "geomeans-by-kind-table",
    baseline,
  );
  document.getElementById("speedup-plot").innerHTML = speedupPlot(data, shown, others, view.geomeans);
  document.getElementById("speedups").innerHTML = speedupTable(shown, configs, baseline);
  document.getElementById("shown").textContent = `showing ${shown.length} of ${all.length} benchmarks`;
}

function cell(column, value) {
  const text = typeof value === "number" ? formatCell(column, value) : esc(value ?? "–");
  return `<td data-column="${esc(column)}"${typeof value === "number" ? "" : ' class="text"'}>${text}</td>`;
}

function formatCell(column, value) {
  if (column.includes("speedup")) return `${value.toFixed(2)}×`;
  if (column.includes("pct")) return `${formatNumber(value)}%`;
  return formatNumber(value);
}

/* A table of bench/hardware.py's geometric-mean summary, whatever its columns. */
function summaryTable(records, id, baseline) {
  const head = records.columns
    .map((c) => `<th${typeof records.rows[0]?.[c] === "number" ? "" : ' class="text"'}>${esc(c)}</th>`)
    .join("");
  const rows = records.rows.map((row) => {
    const cls = row.config === baseline ? ' class="baseline"' : "";
    const cells = records.columns.map((c) => cell(c, row[c]));
    return `<tr data-config="${esc(row.config)}"${cls}>${cells.join("")}</tr>`;
  });
  return `<table id="${id}"><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

function speedupTable(benchmarks, configs, baseline) {
  const head =
    `<th class="text">benchmark</th>${CASE_FIELDS.map((f) => `<th class="text">${esc(f)}</th>`).join("")}` +
    configs.map((c) => `<th${c === baseline ? ' class="baseline"' : ""}>${esc(c)}${c === baseline ? " (baseline)" : ""}</th>`).join("");
  const rows = benchmarks.map((b) => {
    const cases = CASE_FIELDS.map((f) => `<td class="text">${esc(b[f] ?? "")}</td>`).join("");
    const cells = configs.map((config) => {
      const row = b.byConfig[config];
      if (!row) return `<td class="speedup missing" data-config="${esc(config)}">–</td>`;
      const peak = row.pct_of_peak === null ? "" : `, ${formatNumber(row.pct_of_peak)}% of its matmul peak`;
      const title = `median ${formatNumber(row.median_ms)} ms over ${row.runs} run(s)${peak}`;
      return (
        `<td class="speedup" data-config="${esc(config)}" data-speedup="${row.speedup}" title="${esc(title)}">` +
        `${row.speedup.toFixed(2)}×<small>${esc(formatNumber(row.median_ms))} ms</small></td>`
      );
    });
    return `<tr data-name="${esc(b.name)}"><td class="name text">${esc(b.name)}</td>${cases}${cells.join("")}</tr>`;
  });
  return `<table id="speedup-table"><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

/* A dot plot: a row per benchmark (the geometric mean first), the speed-up of each non-baseline
   configuration on a log axis, 1× (the baseline) marked. */
function speedupPlot(data, benchmarks, others, geomeans) {
  if (others.length === 0) return '<p class="meta">One configuration only: nothing to compare it with.</p>';
  const geomean = { name: "geometric mean (all benchmarks)", byConfig: {} };
  for (const row of geomeans.rows) geomean.byConfig[row.config] = { speedup: row.geomean_speedup };
  const rows = [geomean, ...benchmarks];
  const values = rows.flatMap((b) => others.map((c) => b.byConfig[c]?.speedup)).filter((v) => v > 0);
  const logs = [0, ...values.map(Math.log2)];
  const pad = (Math.max(...logs) - Math.min(...logs)) * 0.08 || 0.25;
  const [lo, hi] = [Math.min(...logs) - pad, Math.max(...logs) + pad];
  const ticks = ratioTicks(2 ** lo, 2 ** hi);
  const [left, right, top, rowHeight] = [330, 24, 8, 22];
  const width = 960;
  const height = top + rows.length * rowHeight + 40;
  const position = linearScale(lo, hi, left, width - right);
  const x = (ratio) => position(Math.log2(ratio));
  const parts = [];
  const labels = tickLabels(ticks, "ratio");
  ticks.forEach((t, i) => {
    parts.push(
      `<line class="grid" x1="${x(t)}" x2="${x(t)}" y1="${top}" y2="${height - 40}"></line>`,
      `<text class="tick" text-anchor="middle" x="${x(t)}" y="${height - 26}">${labels[i]}×</text>`,
    );
  });
  parts.push(
    `<line class="unity" x1="${x(1)}" x2="${x(1)}" y1="${top}" y2="${height - 40}"></line>`,
    `<text class="axis-label" text-anchor="middle" x="${(left + width - right) / 2}" y="${height - 6}">speed-up against the baseline (log scale; right of 1×: faster)</text>`,
  );
  rows.forEach((b, i) => {
    const cy = top + i * rowHeight + rowHeight / 2;
    const label = b.name.length > 52 ? b.name.slice(0, 51) + "…" : b.name;
    parts.push(`<text class="row-label${i === 0 ? " summary" : ""}" text-anchor="end" x="${left - 8}" y="${cy + 4}">${esc(label)}<title>${esc(b.name)}</title></text>`);
    for (const config of others) {
      const value = b.byConfig[config]?.speedup;
      if (!(value > 0)) continue;
      parts.push(
        `<circle class="speedup-mark" data-config="${esc(config)}" cx="${x(value)}" cy="${cy}" r="5" fill="${colourOf(data, config)}">` +
          `<title>${esc(`${b.name}\n${config}: ${value.toFixed(2)}×`)}</title></circle>`,
      );
    }
  });
  const legend = others.map(
    (c) => `<span><span class="swatch" style="background:${colourOf(data, c)}"></span>${esc(c)}</span>`,
  );
  return (
    `<div class="plot-legend">${legend.join("")}</div>` +
    `<svg class="speedup-chart" width="${width}" height="${height}" role="img" aria-label="speed-up per benchmark">${parts.join("")}</svg>`
  );
}

/* Ratios people read on a log axis (…, 0.5, 1, 1.25, 1.5, 2, 3, …) within [lo, hi], at most 9;
   evenly spaced ones where the range is too narrow for those. */
function ratioTicks(lo, hi) {
  const ticks = [];
  for (let decade = -3; decade <= 3; decade += 1) {
    for (const m of [1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8]) {
      const t = Number((m * 10 ** decade).toPrecision(3));
      if (t >= lo && t <= hi) ticks.push(t);
    }
  }
  if (ticks.length < 3) {
    // a narrow range (speed-ups near 1): a log axis there is as good as linear, evenly spaced
    return niceTicks(lo, hi, 4).filter((t) => t >= lo && t <= hi);
  }
  const every = Math.ceil(ticks.length / 9);
  const one = Math.max(ticks.indexOf(1), 0); // 1× stays a tick
  return ticks.filter((_, i) => (i - one) % every === 0);
}

drawHardware();
