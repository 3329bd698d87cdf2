/* The trends page: one chart per series (a benchmark and metric on one machine and thread count),
   its run medians with 95% bands, each run's comparison with the previous run marked when it is a
   flagged change, and filters that choose which charts show. */
"use strict";

const TREND_FILTERS = ["model", "kind", "backend", "device", "machine", "metric"];
const CHART = { width: 470, height: 250, left: 76, right: 14, top: 12, bottom: 62 };
const INSET = 34; // room for the first and last run's labels
const MARKERS = {
  slower: (x, y) => `<path class="point flagged slower" d="M${x},${y - 7} L${x + 6},${y + 4} L${x - 6},${y + 4} Z"/>`,
  faster: (x, y) => `<path class="point flagged faster" d="M${x},${y + 7} L${x + 6},${y - 4} L${x - 6},${y - 4} Z"/>`,
  inconclusive: (x, y) => `<circle class="point inconclusive" cx="${x}" cy="${y}" r="4"/>`,
};
const PLAIN_MARKER = (x, y) => `<circle class="point" cx="${x}" cy="${y}" r="4"/>`;
const FLAGGED = ["slower", "faster"];

function drawTrends() {
  const data = dashboardData();
  const charts = document.getElementById("charts");
  if (!charts) return; // an empty history: the page says so instead
  data.series.forEach((series, index) => charts.appendChild(chartSection(series, index)));
  const form = document.getElementById("filters");
  const apply = () => {
    const choice = filterChoice(form);
    let shown = 0;
    for (const section of charts.children) {
      section.hidden = !matchesChoice(data.series[Number(section.dataset.index)], choice);
      shown += section.hidden ? 0 : 1;
    }
    document.getElementById("shown").textContent = `showing ${shown} of ${data.series.length} series`;
  };
  buildFilters(form, data.series, TREND_FILTERS, apply);
  apply();
}

function chartSection(series, index) {
  const section = document.createElement("section");
  section.className = "chart";
  section.dataset.index = index;
  section.dataset.series = series.id;
  section.dataset.name = series.name;
  const flagged = series.points.filter((p) => p.change && FLAGGED.includes(p.change.verdict)).length;
  section.innerHTML =
    `<h3>${esc(series.name)}</h3>` +
    `<p class="meta">${esc(series.machine)}, ${series.threads ?? "?"} thread${series.threads === 1 ? "" : "s"} · ` +
    `${esc(series.metric)} · ${series.points.length} run${series.points.length === 1 ? "" : "s"}` +
    (flagged ? ` · <b class="flag-count">${flagged} flagged</b>` : "") +
    (series.calibrated ? "" : " · noise not calibrated") +
    "</p>" +
    trendSvg(series);
  return section;
}

function trendSvg(series) {
  const { width, height, left, right, top, bottom } = CHART;
  const points = series.points;
  const values = points.flatMap((p) => [p.median, p.low ?? p.median, p.high ?? p.median]);
  const [least, most] = [Math.min(...values), Math.max(...values)];
  const pad = (most - least) * 0.1 || Math.abs(most) * 0.05 || 1;
  const ticks = niceTicks(Math.max(0, least - pad), most + pad, 4);
  const y = linearScale(ticks[0], ticks[ticks.length - 1], height - bottom, top);
  const inner = width - left - right;
  const x = (i) =>
    left + (points.length === 1 ? inner / 2 : INSET + (i * (inner - 2 * INSET)) / (points.length - 1));
  const parts = [];
  const labels = tickLabels(ticks, series.unit);
  ticks.forEach((t, i) => {
    parts.push(
      `<line class="grid" x1="${left}" x2="${width - right}" y1="${y(t)}" y2="${y(t)}"></line>`,
      `<text class="tick" x="${left - 6}" y="${y(t) + 4}" text-anchor="end">${labels[i]}</text>`,
    );
  });
  parts.push(
    `<line class="axis" x1="${left}" x2="${left}" y1="${top}" y2="${height - bottom}"></line>`,
    `<line class="axis" x1="${left}" x2="${width - right}" y1="${height - bottom}" y2="${height - bottom}"></line>`,
    `<text class="axis-label" text-anchor="middle" transform="translate(14 ${(top + height - bottom) / 2}) rotate(-90)">median (${esc(series.unit)})</text>`,
    `<text class="axis-label" text-anchor="middle" x="${left + inner / 2}" y="${height - 6}">run (history id, date UTC)</text>`,
  );
  const every = Math.ceil(points.length / 6); // at most ~6 labelled runs, the latest always
  points.forEach((p, i) => {
    if ((points.length - 1 - i) % every !== 0) return;
    parts.push(
      `<text class="tick" text-anchor="middle" x="${x(i)}" y="${height - bottom + 16}">#${p.run}</text>`,
      `<text class="tick" text-anchor="middle" x="${x(i)}" y="${height - bottom + 29}">${esc(formatDate(p.started).slice(5))}</text>`,
    );
  });
  parts.push(`<polyline class="trend" points="${points.map((p, i) => `${x(i)},${y(p.median)}`).join(" ")}"></polyline>`);
  points.forEach((p, i) => {
    if (p.low !== null && p.high !== null) {
      parts.push(`<line class="band" x1="${x(i)}" x2="${x(i)}" y1="${y(p.low)}" y2="${y(p.high)}"></line>`);
    }
    const verdict = p.change ? p.change.verdict : "first";
    const marker = (MARKERS[verdict] || PLAIN_MARKER)(x(i), y(p.median));
    parts.push(
      `<g class="run" data-run="${p.run}" data-verdict="${esc(verdict)}">` +
        `<title>${esc(pointTitle(series, p))}</title>${marker}</g>`,
    );
  });
  return `<svg class="trend-chart" width="${width}" height="${height}" role="img" aria-label="${esc(series.name)} over runs">${parts.join("")}</svg>`;
}

function ratio(r) {
  return r === null || r === undefined ? "–" : r.toFixed(3);
}

function pointTitle(series, p) {
  const unit = series.unit;
  const lines = [
    `run ${p.run} (${p.run_key})`,
    `${formatDate(p.started)} UTC · commit ${p.commit ? p.commit.slice(0, 12) : "unknown"}`,
    `median ${formatValue(p.median, unit)} over ${p.rounds} rounds`,
    `95% band ${formatNumber(p.low)} – ${formatNumber(p.high)} ${unit}` +
      (p.sigma === null ? " (rounds only: noise not calibrated)" : ` (between-run noise ${(100 * p.sigma).toFixed(1)}%)`),
  ];
  const c = p.change;
  if (!c) {
    lines.push("first run of this series");
    return lines.join("\n");
  }
  lines.push(
    `vs run ${c.base_run}: ${c.verdict.toUpperCase()}, ${formatPct(c.change_pct)} ` +
      `(ratio ${ratio(c.ratio)}, 95% CI ${ratio(c.ci_low)} – ${ratio(c.ci_high)})`,
    `noise ${c.noise_pct === null ? "unknown" : c.noise_pct.toFixed(1) + "%"} · ` +
      `detectable change ${c.mdc_pct === null ? "unknown" : c.mdc_pct.toFixed(1) + "%"} · ` +
      `q = ${c.q_value === null ? "–" : c.q_value.toPrecision(2)}`,
    c.why,
  );
  return lines.join("\n");
}

drawTrends();
