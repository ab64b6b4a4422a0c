/**
 * Prometheus metrics: counters, gauges and histograms with labels, written in the text exposition
 * format (checked by `promtool check metrics` in the tests). Our own, small: prom-client, the
 * usual library, pulls Node-only default collectors and two dependencies into the single file,
 * and what the host needs is a few maps and a writer. Recording is a map lookup and an addition,
 * so it costs ingest nothing measurable.
 * @module
 */

type _Labels = Record<string, string>;

function _key(labels: _Labels): string {
  return Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join("\u0000");
}

/** A label value, escaped as the text format wants. */
function _esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function _labels(labels: _Labels, extra?: [string, string]): string {
  const parts = Object.keys(labels).sort().map((k) => `${k}="${_esc(labels[k]!)}"`);
  if (extra) parts.push(`${extra[0]}="${_esc(extra[1])}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

function _num(n: number): string {
  return Number.isFinite(n) ? String(n) : n > 0 ? "+Inf" : n < 0 ? "-Inf" : "NaN";
}

interface _Metric {
  name: string;
  help: string;
  write(out: string[]): void;
}

/** A counter: only goes up. */
export class Counter implements _Metric {
  readonly name: string;
  readonly help: string;
  #values = new Map<string, { labels: _Labels; value: number }>();
  constructor(name: string, help: string) {
    this.name = name;
    this.help = help;
  }
  inc(labels: _Labels = {}, by = 1): void {
    const k = _key(labels);
    const e = this.#values.get(k);
    if (e) e.value += by;
    else this.#values.set(k, { labels: { ...labels }, value: by });
  }
  write(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`);
    for (const e of this.#values.values()) out.push(`${this.name}${_labels(e.labels)} ${_num(e.value)}`);
  }
}

/** A gauge whose values are read when the metrics are written (or a counter kept elsewhere). */
export class Gauge implements _Metric {
  readonly name: string;
  readonly help: string;
  #read: () => Iterable<[_Labels, number]>;
  #type: "gauge" | "counter";
  constructor(name: string, help: string, read: () => Iterable<[_Labels, number]>, type: "gauge" | "counter" = "gauge") {
    this.name = name;
    this.help = help;
    this.#read = read;
    this.#type = type;
  }
  write(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.#type}`);
    for (const [labels, v] of this.#read()) out.push(`${this.name}${_labels(labels)} ${_num(v)}`);
  }
}

/** A histogram with fixed buckets (upper bounds in the metric's unit). */
export class Histogram implements _Metric {
  readonly name: string;
  readonly help: string;
  readonly buckets: readonly number[];
  #values = new Map<string, { labels: _Labels; counts: number[]; sum: number; count: number }>();
  constructor(name: string, help: string, buckets: readonly number[]) {
    this.name = name;
    this.help = help;
    this.buckets = buckets;
  }
  observe(labels: _Labels, v: number): void {
    const k = _key(labels);
    let e = this.#values.get(k);
    if (!e) {
      e = { labels: { ...labels }, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#values.set(k, e);
    }
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) e.counts[i]!++;
    e.sum += v;
    e.count++;
  }
  /** The value below which a fraction `q` of observations fall (linear within a bucket), for views. */
  quantile(labels: _Labels, q: number): number | undefined {
    const e = this.#values.get(_key(labels));
    if (!e || !e.count) return undefined;
    const rank = q * e.count;
    let prevBound = 0;
    let prevCount = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      if (e.counts[i]! >= rank) {
        const inBucket = e.counts[i]! - prevCount;
        return prevBound + (this.buckets[i]! - prevBound) * (inBucket ? (rank - prevCount) / inBucket : 0);
      }
      prevBound = this.buckets[i]!;
      prevCount = e.counts[i]!;
    }
    return this.buckets.at(-1);
  }
  write(out: string[]): void {
    out.push(`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`);
    for (const e of this.#values.values()) {
      this.buckets.forEach((b, i) => out.push(`${this.name}_bucket${_labels(e.labels, ["le", _num(b)])} ${e.counts[i]}`));
      out.push(`${this.name}_bucket${_labels(e.labels, ["le", "+Inf"])} ${e.count}`);
      out.push(`${this.name}_sum${_labels(e.labels)} ${_num(e.sum)}`, `${this.name}_count${_labels(e.labels)} ${e.count}`);
    }
  }
}

/** Seconds: 1 ms to 30 s, for request and handle durations. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] as const;

/** Every metric of a host, written in registration order. */
export class MetricsRegistry {
  #metrics: _Metric[] = [];

  counter(name: string, help: string): Counter {
    return this.#add(new Counter(name, help));
  }

  gauge(name: string, help: string, read: () => Iterable<[_Labels, number]>): Gauge {
    return this.#add(new Gauge(name, help, read));
  }

  /** A counter whose total is kept elsewhere and read when the metrics are written. */
  readCounter(name: string, help: string, read: () => Iterable<[_Labels, number]>): Gauge {
    return this.#add(new Gauge(name, help, read, "counter"));
  }

  histogram(name: string, help: string, buckets: readonly number[] = DURATION_BUCKETS): Histogram {
    return this.#add(new Histogram(name, help, buckets));
  }

  /** The text exposition format (version 0.0.4). */
  text(): string {
    const out: string[] = [];
    for (const m of this.#metrics) m.write(out);
    return `${out.join("\n")}\n`;
  }

  #add<T extends _Metric>(m: T): T {
    if (this.#metrics.some((x) => x.name === m.name)) throw new Error(`metric ${m.name} registered twice`);
    this.#metrics.push(m);
    return m;
  }
}
