import type { MetricDef } from "./metrics.ts";
import type { SystemName } from "./protocol.ts";
import { roundSignificant, spread, type Spread } from "./stats.ts";

/** What mcp-lockd is compared with, in the ratio columns. */
export const COMPARED: ReadonlyArray<Exclude<SystemName, "mcp-lockd">> = ["etcd", "proper-lockfile"];

export interface RatioJson extends Spread {
  /** The ratio of each round where both systems had a value. */
  per_round: Array<number | null>;
}

export interface WorkloadJson {
  name: string;
  metric: string;
  unit: string;
  better: "higher" | "lower";
  /** One value per round; null for the whole system when the row does not apply or the system could not run. */
  results: Record<SystemName, Array<number | null> | null>;
  /** Why a system's results (or some of its rounds) are null. */
  reasons: Partial<Record<SystemName, string>>;
  summary: Record<SystemName, Spread | null>;
  /** Present unless the row is context only; >1 means mcp-lockd is better. */
  ratios?: Record<string, RatioJson | null>;
  info?: true;
}

/** Values per row, system and round, with the reason wherever a value is missing. */
export class ResultTable {
  private readonly values = new Map<string, Map<SystemName, Array<number | null>>>();
  private readonly reasons = new Map<string, Map<SystemName, string[]>>();
  private readonly wholeRowNull = new Map<string, Map<SystemName, string>>();

  constructor(
    readonly defs: MetricDef[],
    readonly systems: SystemName[],
    readonly rounds: number,
  ) {
    for (const def of defs) {
      this.values.set(def.key, new Map(systems.map((system) => [system, Array<number | null>(rounds).fill(null)])));
      this.reasons.set(def.key, new Map());
      this.wholeRowNull.set(def.key, new Map());
    }
  }

  has(key: string): boolean {
    return this.values.has(key);
  }

  def(key: string): MetricDef {
    const def = this.defs.find((d) => d.key === key);
    if (!def) throw new Error(`no metric ${key}`);
    return def;
  }

  /** Keys of the rows whose key starts with `prefix` (one workload's rows). */
  keys(prefix: string): string[] {
    return this.defs.filter((d) => d.key.startsWith(`${prefix}.`)).map((d) => d.key);
  }

  /** A round's value; NaN and infinities are stored as null with `reason`. */
  set(key: string, system: SystemName, round: number, value: number | null, reason?: string): void {
    const runs = this.values.get(key)?.get(system);
    if (!runs) throw new Error(`no metric ${key} for ${system}`);
    const ok = value !== null && Number.isFinite(value);
    runs[round] = ok ? roundSignificant(value) : null;
    if (!ok) this.addReason(key, system, `round ${round + 1}: ${reason ?? "no value"}`);
  }

  /** The row does not apply to the system at all. */
  setNotApplicable(key: string, system: SystemName, reason: string): void {
    this.wholeRowNull.get(key)!.set(system, reason);
  }

  private addReason(key: string, system: SystemName, reason: string): void {
    const list = this.reasons.get(key)!;
    if (!list.has(system)) list.set(system, []);
    list.get(system)!.push(reason);
  }

  results(key: string, system: SystemName): Array<number | null> | null {
    if (this.wholeRowNull.get(key)!.has(system)) return null;
    return this.values.get(key)?.get(system) ?? null;
  }

  reason(key: string, system: SystemName): string | undefined {
    return this.wholeRowNull.get(key)!.get(system) ?? this.reasons.get(key)!.get(system)?.join("; ");
  }

  /** Per-round ratio oriented so that >1 means mcp-lockd is better, then their median. */
  ratio(key: string, other: SystemName): RatioJson | null {
    const def = this.def(key);
    const ours = this.results(key, "mcp-lockd");
    const theirs = this.results(key, other);
    if (def.info || !ours || !theirs) return null;
    const perRound = ours.map((mine, i) => {
      const their = theirs[i];
      if (mine === null || their === null || mine === undefined || their === undefined) return null;
      const [numerator, denominator] = def.better === "higher" ? [mine, their] : [their, mine];
      return denominator > 0 ? roundSignificant(numerator / denominator, 3) : null;
    });
    const summary = spread(perRound);
    return summary ? { ...summary, per_round: perRound } : null;
  }

  toJson(): WorkloadJson[] {
    return this.defs.map((def) => {
      const results = {} as WorkloadJson["results"];
      const summary = {} as WorkloadJson["summary"];
      const reasons: WorkloadJson["reasons"] = {};
      for (const system of this.systems) {
        const runs = this.results(def.key, system);
        results[system] = runs;
        summary[system] = runs ? spread(runs) : null;
        const reason = this.reason(def.key, system);
        if (reason !== undefined) reasons[system] = reason;
      }
      const row: WorkloadJson = { name: def.workload, metric: def.metric, unit: def.unit, better: def.better, results, reasons, summary };
      if (def.info) row.info = true;
      else if (this.systems.includes("mcp-lockd")) {
        row.ratios = Object.fromEntries(
          COMPARED.filter((other) => this.systems.includes(other)).map((other) => [`mcp-lockd/${other}`, this.ratio(def.key, other)]),
        );
      }
      return row;
    });
  }
}
