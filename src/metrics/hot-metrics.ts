import type { Registry } from "prom-client";

// Counters and histograms for the per-call hot paths (every RPC, message,
// renewal and store operation). prom-client hashes and validates the labels
// on each inc() and observe(), about a microsecond each: several per
// renewal would show in KeepAlive's throughput. Here a series is bound to
// its labels once and then only adds numbers; the registry reads them at
// scrape time through the metric interface prom-client's registry accepts.

type Labels = Record<string, string>;

interface MetricValue {
  labels: Labels;
  value: number;
  metricName?: string;
}

export class CounterSeries {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

abstract class HotMetric<S extends { labels: Labels }> {
  private readonly series = new Map<string, S>();
  readonly aggregator = "sum";

  constructor(
    registry: Registry,
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly string[],
  ) {
    registry.registerMetric(this as never);
  }

  /** The series of these labels (made on first use; keep the result on hot paths). */
  for(labels: Labels): S {
    const key = this.labelNames.map((name) => labels[name] ?? "").join("\u0000");
    let series = this.series.get(key);
    if (series === undefined) this.series.set(key, (series = this.make({ ...labels })));
    return series;
  }

  protected all(): S[] {
    // A metric without labels shows 0 before its first event.
    if (this.labelNames.length === 0 && this.series.size === 0) this.for({});
    return [...this.series.values()];
  }

  protected abstract make(labels: Labels): S;
  abstract get(): Promise<{ name: string; help: string; type: string; values: MetricValue[]; aggregator: string }>;
}

export class HotCounter extends HotMetric<CounterSeries> {
  readonly type = "counter";
  protected make(labels: Labels): CounterSeries {
    return new CounterSeries(labels);
  }
  async get() {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.all().map(({ labels, value }) => ({ labels, value })) };
  }
}

export class HotHistogram extends HotMetric<HistogramSeries> {
  readonly type = "histogram";
  constructor(
    registry: Registry,
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly bounds: readonly number[],
  ) {
    super(registry, name, help, labelNames);
  }
  protected make(labels: Labels): HistogramSeries {
    return new HistogramSeries(labels, this.bounds);
  }
  async get() {
    const values: MetricValue[] = [];
    for (const series of this.all()) {
      let cumulative = 0;
      this.bounds.forEach((bound, i) => {
        cumulative += series.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { le: String(bound), ...series.labels }, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { le: "+Inf", ...series.labels }, value: series.count });
      values.push({ metricName: `${this.name}_sum`, labels: series.labels, value: series.sum });
      values.push({ metricName: `${this.name}_count`, labels: series.labels, value: series.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
