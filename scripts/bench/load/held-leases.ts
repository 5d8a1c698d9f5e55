import { sharedNow, sleepUntil } from "../clock.ts";
import type { LockClient, LockDriver, RenewalStream } from "../drivers/driver.ts";
import type { HoldResult, Job, RenewalResult, Schedule } from "../protocol.ts";

interface HeldLease {
  key: string;
  /** Its place in the held set; lease i renews on stream i mod the stream count. */
  index: number;
  alive: boolean;
  /** Send times of renewals not answered yet, oldest first. */
  pending: number[];
  /** When its next renewal is due (shared clock). */
  due: number;
  timer: NodeJS.Timeout | undefined;
}

interface Recording {
  from: number;
  to: number;
  roundTrips: number[];
}

/**
 * The leases this load process holds for W5 to W7 and renews, as a client of
 * a lock service would: every lease every ttl/3 on one of its renewal
 * streams, whether or not the previous renewal has been answered (open loop:
 * a server that falls behind shows as growing round trips, then lost
 * leases). Each stream has its own client and connection. The set lives
 * across jobs so that it is built once and measured several ways.
 */
export class HeldLeases {
  private readonly byKey = new Map<string, HeldLease>();
  private readonly leases: HeldLease[] = [];
  private readonly clients: LockClient[] = [];
  private readonly streams: RenewalStream[] = [];
  private readonly streamOpen: boolean[] = [];
  private streamCount = 1;
  private periodMs = 0;
  /** "max": each answer sends the lease's next renewal at once. */
  private mode: "periodic" | "max" = "periodic";
  private recording: Recording | undefined;
  private lost = 0;
  private readonly errors: string[] = [];

  constructor(private readonly driver: LockDriver) {}

  async hold(job: Extract<Job, { kind: "hold" }>): Promise<HoldResult> {
    this.periodMs = (job.ttlSeconds * 1000) / 3;
    while (this.clients.length < job.streams) await this.openStream();
    this.streamCount = job.streams;
    const deadline = sharedNow() + job.timeoutMs;
    let next = this.leases.length;
    let notGranted = 0;
    let granted = 0;
    // Grants through the streams' clients, `concurrency` at a time; each
    // lease renews from the moment it is granted.
    await Promise.all(
      Array.from({ length: job.concurrency }, async (_, worker) => {
        const client = this.clients[worker % this.clients.length]!;
        while (next < job.count && sharedNow() < deadline) {
          const index = next++;
          try {
            const key = await client.hold(`${job.prefix}${job.firstIndex + index}`, job.ttlSeconds);
            this.add(key, index);
            granted++;
          } catch (err) {
            notGranted++;
            this.error(`grant: ${(err as Error).message}`);
          }
        }
      }),
    );
    notGranted += Math.max(0, job.count - next);
    return { kind: "hold", alive: this.alive(), granted, notGranted, lost: this.lost, errors: this.errors.slice(0, 5) };
  }

  /** Round trips answered within the window. */
  async window(schedule: Schedule): Promise<RenewalResult> {
    const recording: Recording = { from: schedule.measureFrom, to: schedule.measureTo, roundTrips: [] };
    this.recording = recording;
    await sleepUntil(schedule.measureTo);
    this.recording = undefined;
    return this.renewalResult(recording);
  }

  /** From startAt to measureTo every lease renews again as soon as it is answered. */
  async maxRate(schedule: Schedule): Promise<RenewalResult> {
    await sleepUntil(schedule.startAt);
    const recording: Recording = { from: schedule.measureFrom, to: schedule.measureTo, roundTrips: [] };
    this.recording = recording;
    this.mode = "max";
    for (const lease of this.leases) {
      clearTimeout(lease.timer);
      this.send(lease);
    }
    await sleepUntil(schedule.measureTo);
    this.recording = undefined;
    this.mode = "periodic";
    // Every lease was renewed moments ago: spread the next renewals over a period again.
    for (const lease of this.leases) if (lease.alive) this.schedule(lease, sharedNow() + Math.random() * this.periodMs);
    return this.renewalResult(recording);
  }

  async drop(): Promise<void> {
    for (const lease of this.leases) clearTimeout(lease.timer);
    for (const stream of this.streams) stream.close();
    await Promise.all(this.clients.map((client) => client.close()));
    this.leases.length = 0;
    this.byKey.clear();
    this.clients.length = 0;
    this.streams.length = 0;
  }

  private async openStream(): Promise<void> {
    const index = this.clients.length;
    const client = await this.driver.openClient();
    this.clients.push(client);
    this.streamOpen.push(true);
    this.streams.push(
      client.openRenewalStream({
        onAnswer: (key, alive) => this.answered(key, alive),
        onClosed: (error) => this.streamClosed(index, error),
      }),
    );
  }

  private add(key: string, index: number): void {
    const lease: HeldLease = { key, index, alive: true, pending: [], due: 0, timer: undefined };
    this.leases.push(lease);
    this.byKey.set(key, lease);
    // A random first renewal within the period spreads renewals evenly at once.
    if (this.mode === "periodic") this.schedule(lease, sharedNow() + Math.random() * this.periodMs);
    else this.send(lease);
  }

  private schedule(lease: HeldLease, due: number): void {
    lease.due = due;
    lease.timer = setTimeout(() => {
      if (this.mode !== "periodic" || !lease.alive) return;
      this.send(lease);
      // Fixed rate: the next one is due a period after this one was due.
      this.schedule(lease, lease.due + this.periodMs);
    }, Math.max(0, due - sharedNow()));
  }

  private send(lease: HeldLease): void {
    if (!lease.alive) return;
    const stream = lease.index % this.streamCount;
    if (!this.streamOpen[stream]) {
      this.markLost(lease);
      return;
    }
    lease.pending.push(sharedNow());
    this.streams[stream]!.renew(lease.key);
  }

  private answered(key: string, alive: boolean): void {
    const now = sharedNow();
    const lease = this.byKey.get(key);
    if (!lease) return;
    const sentAt = lease.pending.shift();
    const recording = this.recording;
    if (recording && sentAt !== undefined && now >= recording.from && now < recording.to) recording.roundTrips.push(now - sentAt);
    if (!alive) this.markLost(lease);
    else if (this.mode === "max") this.send(lease);
  }

  private streamClosed(index: number, error: Error | undefined): void {
    this.streamOpen[index] = false;
    this.error(`renewal stream ${index} ${error ? `failed: ${error.message}` : "ended by the server"}`);
  }

  private markLost(lease: HeldLease): void {
    if (!lease.alive) return;
    lease.alive = false;
    clearTimeout(lease.timer);
    this.lost++;
  }

  private alive(): number {
    return this.leases.length - this.lost;
  }

  private error(message: string): void {
    if (this.errors.length < 100) this.errors.push(message);
  }

  private renewalResult(recording: Recording): RenewalResult {
    return { kind: "renewals", roundTrips: recording.roundTrips, alive: this.alive(), lost: this.lost, errors: this.errors.slice(0, 5) };
  }
}
