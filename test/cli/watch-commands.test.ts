// `mcp-lockd status --watch` (JSON lines off a terminal) and `mcp-lockd wait
// RESOURCE --until free|held`, as real processes against a real service.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";
import { withTimeout } from "../helpers/wait.ts";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { clientCliCommand, cliEnv, runClientCli, startClientCli } from "./client-cli.ts";

const seconds = (s: number) => ({ seconds: s, nanos: 0 });

describe("watching commands", () => {
  let fx: ServiceFixture | undefined;
  before(async () => {
    fx = await startServiceFixture();
  });
  after(() => fx?.close());

  test("status --watch prints one JSON event per line: the snapshot, then the changes; never a lease id", async () => {
    const raw = fx!.client;
    const early = (await raw.acquire({ resource: "sw-early", holder: "early-bird", ttl: seconds(60) })).lease!;
    const cli = startClientCli(["status", "sw-", "--watch"], { address: fx!.service.grpcAddress });
    try {
      await cli.waitForStdout(/"SNAPSHOT_COMPLETE"/);
      const later = (await raw.acquire({ resource: "sw-later", holder: "latecomer", ttl: seconds(60) })).lease!;
      await cli.waitForStdout(/"ACQUIRED".*"sw-later"/);
      await raw.release(later.leaseId);
      await cli.waitForStdout(/"RELEASED".*"sw-later"/);
      cli.kill("SIGINT");
      const exit = await withTimeout(cli.exited, 10_000, "status --watch to end on SIGINT");
      assert.equal(exit.code, 130, `exit ${exit.code}: ${cli.stderr()}`);

      const lines = cli.stdout().trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
      assert.deepEqual(
        lines.map((line) => `${line.type} ${line.resource}`),
        ["HELD sw-early", "SNAPSHOT_COMPLETE ", "ACQUIRED sw-later", "RELEASED sw-later"],
      );
      assert.equal(lines[0]!.holder, "early-bird");
      assert.equal(lines[0]!.fencing_token, early.fencingToken);
      assert.equal(lines[0]!.ttl, 60);
      assert.equal(lines[3]!.state, "free");
      for (const id of [early.leaseId, later.leaseId]) assert.ok(!cli.stdout().includes(id), "a lease id leaked");
    } finally {
      cli.kill("SIGKILL");
      await raw.release(early.leaseId).catch(() => {});
    }
  });

  test("status --watch on a terminal: a live table with the lock, its waiters and the recent events", async () => {
    const raw = fx!.client;
    const { command, args } = clientCliCommand(["status", "tw-", "--watch"]);
    // script(1) (util-linux, in every Debian) gives the command a terminal.
    const shellLine = [command, ...args].map((word) => `'${word.replace(/'/g, "'\\''")}'`).join(" ");
    const child = spawn("script", ["-qfec", shellLine, "/dev/null"], {
      env: cliEnv({ MCP_LOCKD_ADDRESS: fx!.service.grpcAddress, COLUMNS: "120", LINES: "40" }),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let screen = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (screen += chunk));
    const exited = once(child, "exit");
    const lastFrame = () => screen.slice(screen.lastIndexOf("\x1b[H\x1b[2J"));
    const until = (pattern: RegExp, what: string) =>
      withTimeout(
        (async () => {
          while (!pattern.test(lastFrame())) await new Promise((resolve) => child.stdout.once("data", resolve));
        })(),
        10_000,
        what,
      );
    try {
      await until(/no locks held/, "the empty table");
      const lease = (await raw.acquire({ resource: "tw-live", holder: "on-screen", ttl: seconds(60) })).lease!;
      await until(/^tw-live +on-screen +\S+ +1m00s +\S+ +\d+ +0\r?$/m, "the lock's row");
      const waiting = raw.acquire({ resource: "tw-live", holder: "queued", waitTimeout: seconds(30) });
      await until(/^tw-live +on-screen .* 1\r?$/m, "the waiter count");
      assert.match(lastFrame(), /recent events:[\s\S]*WAITERS_CHANGED tw-live holder=on-screen/);
      await raw.release(lease.leaseId);
      const next = (await waiting).lease!;
      await until(/HANDED_OVER tw-live holder=queued .*from=on-screen/, "the hand-over in the feed");
      await raw.release(next.leaseId);
      await until(/no locks held/, "the table empty again");
      assert.ok(!screen.includes(lease.leaseId) && !screen.includes(next.leaseId), "a lease id reached the screen");
    } finally {
      child.kill("SIGTERM");
      await withTimeout(exited, 10_000, "script to exit");
    }
  });

  test("wait --until free returns when the holder releases, at once when already free, 75 after --timeout", async () => {
    const raw = fx!.client;
    const address = fx!.service.grpcAddress;
    const free = await runClientCli(["wait", "wf-res", "--until", "free"], { address });
    assert.equal(free.code, 0, free.stderr);

    const lease = (await raw.acquire({ resource: "wf-res", holder: "slowpoke", ttl: seconds(60) })).lease!;
    // A longer name under the same prefix must not count.
    const other = (await raw.acquire({ resource: "wf-res-2", holder: "other", ttl: seconds(60) })).lease!;
    const timedOut = await runClientCli(["wait", "wf-res", "--until", "free", "--timeout", "300ms"], { address });
    assert.equal(timedOut.code, 75, timedOut.stderr);
    assert.match(timedOut.stderr, /still held after 300ms/);

    const held = await runClientCli(["wait", "wf-res", "--until", "held"], { address });
    assert.equal(held.code, 0, held.stderr);

    const waiting = startClientCli(["wait", "wf-res", "--until", "free"], { address });
    try {
      await waiting.waitForStderr(/waiting until "wf-res" is free; held by "slowpoke"/);
      await raw.release(other.leaseId);
      assert.equal(waiting.child.exitCode, null, "wf-res-2 being released does not end the wait");
      const releasedAt = Date.now();
      await raw.release(lease.leaseId);
      const exit = await withTimeout(waiting.exited, 10_000, "wait --until free to return");
      assert.equal(exit.code, 0, waiting.stderr());
      assert.ok(exit.at - releasedAt < 2_000, `returned ${exit.at - releasedAt} ms after the release`);
    } finally {
      waiting.kill("SIGKILL");
    }

    const usage = await runClientCli(["wait", "wf-res", "--until", "gone"], { address });
    assert.equal(usage.code, 64);
    assert.match(usage.stderr, /--until "gone": expected free or held/);
  });
});
