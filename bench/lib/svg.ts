/** The results chart as plain SVG text: throughput against ceilings, and each target's score. */
import { bullmqProcessRate, type BullmqResult, type TargetCheck } from "./targets.ts";
import type { RuntimeResult } from "./suite.ts";

const _COLORS = { node: "#3c873a", deno: "#333333", bun: "#d4a017" } as const;
const _esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * Draw the chart.
 * @param runs one entry per runtime, with its target checks
 * @param title first line of the chart
 */
export function chartSvg(runs: { r: RuntimeResult; targets: TargetCheck[] }[], b: BullmqResult | undefined, title: string): string {
  const items: [string, (r: RuntimeResult) => number][] = [
    ["ceiling: raw JetStream publish", (r) => r.ceilings.publishPerSec],
    ["ceiling: bare HTTP 202", (r) => r.ceilings.httpPerSec],
    ["ingest, 1 reading/request", (r) => r.ingest.single.readingsPerSec],
    ["ingest, 100/request CBOR-seq", (r) => r.ingest.cborBatch.readingsPerSec],
    ["ingest, 100/request JSON", (r) => r.ingest.jsonBatch.readingsPerSec],
    ["ceiling: publish + consume + ack", (r) => r.ceilings.pubsubPerSec],
    ["end to end sustained", (r) => r.endToEnd.sustainedPerSec],
  ];
  if (b) {
    items.push(["BullMQ enqueue (Node)", () => b.enqueuePerSec]);
    items.push(["BullMQ process (Node)", () => bullmqProcessRate(b)]);
  }
  const W = 900, left = 250, barW = W - left - 110, bh = 12, gap = 8;
  const max = Math.max(1, ...runs.flatMap(({ r }) => items.map(([, f]) => f(r))));
  const out: string[] = [];
  let y = 50;
  out.push(`<text x="10" y="22" font-size="15" font-weight="bold">${_esc(title)}</text>`);
  out.push(`<text x="10" y="40" font-size="12">Throughput per second (readings, messages, requests or jobs); each runtime's bars share the run's scale</text>`);
  for (const [label, f] of items) {
    out.push(`<text x="${left - 8}" y="${y + (bh * runs.length) / 2 + 4}" font-size="12" text-anchor="end">${_esc(label)}</text>`);
    for (const { r } of runs) {
      const v = f(r);
      const w = Math.max(1, (v / max) * barW);
      out.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${bh}" fill="${_COLORS[r.runtime]}"/>`);
      out.push(`<text x="${left + w + 4}" y="${y + bh - 2}" font-size="11">${Math.round(v).toLocaleString("en-US")}</text>`);
      y += bh;
    }
    y += gap;
  }
  y += 20;
  out.push(`<text x="10" y="${y}" font-size="12">Targets: measured ÷ target (≥ 1 met; for "under" targets, target ÷ measured); line at 1</text>`);
  y += 12;
  const names = runs[0]?.targets.map((t) => t.name) ?? [];
  const maxScore = 2;
  const one = left + barW / maxScore;
  const top = y;
  for (const name of names) {
    out.push(`<text x="${left - 8}" y="${y + (bh * runs.length) / 2 + 4}" font-size="12" text-anchor="end">${_esc(name)}</text>`);
    for (const { r, targets } of runs) {
      const t = targets.find((x) => x.name === name);
      if (t) {
        const w = Math.max(1, (Math.min(t.score, maxScore) / maxScore) * barW);
        out.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${bh}" fill="${_COLORS[r.runtime]}" opacity="${t.met ? 1 : 0.45}"/>`);
        out.push(`<text x="${left + w + 4}" y="${y + bh - 2}" font-size="11">${_esc(t.measured)}${t.met ? "" : " (missed)"}</text>`);
      }
      y += bh;
    }
    y += gap;
  }
  out.push(`<line x1="${one}" y1="${top - 4}" x2="${one}" y2="${y}" stroke="#c00" stroke-dasharray="4 3"/>`);
  y += 10;
  let x = 10;
  for (const { r } of runs) {
    out.push(`<rect x="${x}" y="${y}" width="12" height="12" fill="${_COLORS[r.runtime]}"/><text x="${x + 16}" y="${y + 11}" font-size="12">${r.runtime}</text>`);
    x += 80;
  }
  y += 24;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif">\n` +
    `<rect width="100%" height="100%" fill="#fff"/>\n${out.join("\n")}\n</svg>\n`;
}
