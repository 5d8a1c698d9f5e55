// `mcp-lockd run RESOURCE -- COMMAND` as users run it: a real service, the
// CLI as a child process (the single executable under
// MCP_LOCKD_TEST_RUNTIME=binary), real commands. Environment and exit codes;
// mutual exclusion and FIFO order between runs; busy with --wait 0; the
// waiting line; SIGINT/SIGTERM while waiting leave the queue; signals
// forwarded to the command; and lease loss (lease file deleted behind the
// service's back; service SIGKILLed and kept down past the ttl), where the
// command gets SIGTERM and, if it ignores it, SIGKILL after the grace period,
// with the latency from the loss to the command's end measured.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { startServiceFixture, type ServiceFixture } from "../helpers/service-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { exists } from "../helpers/fs.ts";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { clientCliCommand, cliEnv, processExists, runClientCli, startClientCli } from "./client-cli.ts";

const NODE = process.execPath;

async function withService(fn: (fx: ServiceFixture) => Promise<void>): Promise<void> {
  const fx = await startServiceFixture({ lockSubdir: "locks" });
  try {
    await fn(fx);
  } finally {
    await fx.close();
  }
}

async function waitersOn(fx: ServiceFixture, resource: string): Promise<number | undefined> {
  return (await fx.client.listLocks(resource)).locks.find((l) => l.resource === resource)?.waiters;
}

async function heldBy(fx: ServiceFixture, resource: string): Promise<string | undefined> {
  return (await fx.client.listLocks(resource)).locks.find((l) => l.resource === resource)?.holder;
}

/**
 * A node child that prints "ready <pid>" and then idles; on SIGTERM it writes
 * the time to `termFile` and, unless `ignoreTerm`, exits 0. With `grandchild`
 * it first starts `sleep 300` in its own process group (not detached) and
 * prints its pid as "grandchild <pid>".
 */
function idleChild(termFile: string, options: { ignoreTerm?: boolean; grandchild?: boolean } = {}): string[] {
  const script = `
    const fs = require("node:fs");
    ${options.grandchild ? `const g = require("node:child_process").spawn("sleep", ["300"], { stdio: "ignore" }); console.log("grandchild " + g.pid);` : ""}
    process.on("SIGTERM", () => {
      fs.writeFileSync(${JSON.stringify(termFile)}, String(Date.now()));
      ${options.ignoreTerm ? "" : "process.exit(0);"}
    });
    console.log("ready " + process.pid);
    setInterval(() => {}, 1000);
  `;
  return [NODE, "-e", script];
}

test("run: the command gets MCP_LOCKD_* in its environment, run passes its exit code through and releases", async () => {
  await withService(async (fx) => {
    const address = fx.service.grpcAddress;
    const before = Date.now();
    const ok = await runClientCli(
      ["run", "env-res", "--ttl", "5s", "--", NODE, "-e", "const e = process.env; console.log(JSON.stringify({ r: e.MCP_LOCKD_RESOURCE, t: e.MCP_LOCKD_FENCING_TOKEN, x: e.MCP_LOCKD_EXPIRES_AT, id: e.MCP_LOCKD_LEASE_ID ?? null }))"],
      { address },
    );
    assert.equal(ok.code, 0, `exit 0 (stderr: ${ok.stderr})`);
    const seen = JSON.parse(ok.stdout) as { r: string; t: string; x: string; id: string | null };
    assert.equal(seen.r, "env-res");
    assert.match(seen.t, /^[1-9]\d*$/, "a fencing token in decimal");
    assert.match(seen.x, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, "RFC 3339");
    const expiry = Date.parse(seen.x);
    assert.ok(expiry > before && expiry <= Date.now() + 5_000, `the expiry ${seen.x} is about now + ttl`);
    assert.equal(seen.id, null, "the lease id, a capability, is not handed to the command");
    assert.equal(ok.stderr, "", "nothing on stderr when the lock was free");
    assert.equal(await heldBy(fx, "env-res"), undefined, "released after the command exited");

    const failed = await runClientCli(["run", "env-res", "--", NODE, "-e", "process.exit(3)"], { address });
    assert.equal(failed.code, 3, "the command's own exit code");
    const { lease } = await fx.client.acquire({ resource: "env-res", holder: "after" });
    assert.ok(lease && BigInt(lease.fencingToken) > BigInt(seen.t), "released, and tokens keep increasing");
    await fx.client.release(lease.leaseId);

    const killed = await runClientCli(["run", "env-res", "--", NODE, "-e", "process.kill(process.pid, 'SIGKILL')"], { address });
    assert.equal(killed.code, 137, "128 + SIGKILL when the command died of it");
    const notFound = await runClientCli(["run", "env-res", "--", "/nonexistent/command-xyz"], { address });
    assert.equal(notFound.code, 127, `127 for a missing command (stderr: ${notFound.stderr})`);
    assert.match(notFound.stderr, /command-xyz/);
    assert.equal(await heldBy(fx, "env-res"), undefined, "released after each of them");
  });
});

test("run: runs on one resource never overlap and are granted in arrival order", async () => {
  await withService(async (fx) => {
    const address = fx.service.grpcAddress;
    const marker = join(fx.dir, "inside");
    const log = join(fx.dir, "order.log");
    // O_EXCL: a command that starts while another is inside fails (exit 1).
    const inside = `
      const fs = require("node:fs");
      const [marker, log, id] = process.argv.slice(1);
      fs.writeFileSync(marker, id, { flag: "wx" });
      fs.appendFileSync(log, id + " " + process.env.MCP_LOCKD_FENCING_TOKEN + "\\n");
      setTimeout(() => fs.unlinkSync(marker), 150);
    `;
    // Hold the resource so that the runs queue up in a known order.
    const { lease: gate } = await fx.client.acquire({ resource: "serial", holder: "gate", ttl: { seconds: 60, nanos: 0 } });
    assert.ok(gate);
    const runs: ReturnType<typeof startClientCli>[] = [];
    for (let i = 0; i < 4; i++) {
      runs.push(startClientCli(["run", "serial", "--ttl", "5s", "--", NODE, "-e", inside, marker, log, `run-${i}`], { address }));
      await waitFor(async () => (await waitersOn(fx, "serial")) === i + 1, `run-${i} to be queued`);
    }
    await fx.client.release(gate.leaseId);
    const exits = await withTimeout(Promise.all(runs.map((r) => r.exited)), 30_000, "the runs");
    exits.forEach((exit, i) => assert.equal(exit.code, 0, `run-${i} exits 0 (stderr: ${runs[i]!.stderr()})`));
    const entries = (await readFile(log, "utf8")).trim().split("\n").map((line) => line.split(" "));
    assert.deepEqual(entries.map(([id]) => id), ["run-0", "run-1", "run-2", "run-3"], "FIFO");
    const tokens = entries.map(([, token]) => BigInt(token!));
    for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, "fencing tokens increase");
    assert.equal(await exists(marker), false);
  });
});

test("run --wait 0: busy exits 75 naming the holder, without running the command", async () => {
  await withService(async (fx) => {
    const { lease } = await fx.client.acquire({ resource: "busy", holder: "busy-holder", ttl: { seconds: 60, nanos: 0 } });
    assert.ok(lease);
    const ran = join(fx.dir, "ran");
    const result = await runClientCli(["run", "busy", "--wait", "0", "--", NODE, "-e", `require("fs").writeFileSync(${JSON.stringify(ran)}, "x")`], {
      address: fx.service.grpcAddress,
    });
    assert.equal(result.code, 75, `exit 75 (stderr: ${result.stderr})`);
    assert.match(result.stderr, /"busy" is held by "busy-holder" until \d{4}-.*not waiting \(--wait 0\); the command did not run/);
    assert.equal(await exists(ran), false, "the command did not run");

    const timedOut = await runClientCli(["run", "busy", "--wait", "1s", "--", "true"], { address: fx.service.grpcAddress });
    assert.equal(timedOut.code, 75, `the wait running out is busy too (stderr: ${timedOut.stderr})`);
    assert.match(timedOut.stderr, /gave up after waiting 1s/);
    await fx.client.release(lease.leaseId);
  });
});

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  test(`run: says who holds the lock while waiting; ${signal} while waiting leaves the queue and exits ${code}`, async () => {
    await withService(async (fx) => {
      const address = fx.service.grpcAddress;
      const { lease: first } = await fx.client.acquire({ resource: "queue", holder: "first-holder", ttl: { seconds: 60, nanos: 0 } });
      assert.ok(first);
      const ran = join(fx.dir, "ran");
      const waiting = startClientCli(["run", "queue", "--", NODE, "-e", `require("fs").writeFileSync(${JSON.stringify(ran)}, "x")`], { address });
      // stderr is a pipe here: plain lines, one per holder.
      await waiting.waitForStderr(/mcp-lockd run: waiting for "queue": held by "first-holder" for \d+\w* \(fencing token \d+, expires in \w+, 1 waiting\)\n/);
      const second = fx.client.acquire(
        { resource: "queue", holder: "second", waitTimeout: { seconds: 30, nanos: 0 } },
        { deadlineMs: 40_000 },
      );
      await waitFor(async () => (await waitersOn(fx, "queue")) === 2, "the second waiter to queue behind run");

      waiting.kill(signal);
      const exit = await withTimeout(waiting.exited, 10_000, `run to exit on ${signal}`);
      assert.equal(exit.code, code, `exit ${code} (stderr: ${waiting.stderr()})`);
      assert.match(waiting.stderr(), new RegExp(`${signal} while waiting for "queue": left the queue`));
      await waitFor(async () => (await waitersOn(fx, "queue")) === 1, "run to have left the queue");

      await fx.client.release(first.leaseId);
      const granted = await withTimeout(second, 10_000, "the next waiter's grant");
      assert.equal(granted.lease?.holder, "second", "the next waiter got the lock, not the one that left");
      assert.equal(await exists(ran), false, "the command never ran");
      await fx.client.release(granted.lease!.leaseId);
    });
  });
}

test("run on a terminal: one live waiting line rewritten in place, then the command runs", { skip: !(await exists("/usr/bin/script")) && "needs script(1) for a pseudo-terminal" }, async () => {
  await withService(async (fx) => {
    const { lease } = await fx.client.acquire({ resource: "tty-res", holder: "tty-holder", ttl: { seconds: 60, nanos: 0 } });
    assert.ok(lease);
    const { command, args } = clientCliCommand(["run", "tty-res", "--", "sh", "-c", "echo ran-under-tty"]);
    const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;
    // script(1) gives the CLI a pseudo-terminal as stdin, stdout and stderr; -e passes its exit code on.
    const tty = spawn("/usr/bin/script", ["-qfec", [command, ...args].map(quote).join(" "), "/dev/null"], {
      env: cliEnv({ MCP_LOCKD_ADDRESS: fx.service.grpcAddress }),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    const seen = new Promise<void>((resolve) =>
      tty.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
        output += chunk;
        if (/\r\x1b\[Kmcp-lockd run: waiting \S+ for "tty-res": held by "tty-holder"[^\n]*\r\x1b\[Kmcp-lockd run: waiting/.test(output)) resolve();
      }),
    );
    const closed = once(tty, "close");
    try {
      await withTimeout(seen, 20_000, "the live line to be drawn twice");
      assert.ok(!/waiting[^\r]*\n/.test(output), "the waiting line is rewritten in place, never ended with a newline");
      await fx.client.release(lease.leaseId);
      const [code] = (await withTimeout(closed, 20_000, "run to finish")) as [number | null];
      assert.equal(code, 0, output);
      assert.match(output, /\r\x1b\[Kmcp-lockd run: acquired "tty-res" after waiting \S+ \(fencing token \d+\)\r?\n/, "the live line is cleared, then one line says so");
      assert.match(output, /ran-under-tty/);
    } finally {
      tty.kill("SIGKILL");
    }
  });
});

test("run: SIGTERM and SIGINT sent to run reach the command; run exits with the command's result and releases", async () => {
  await withService(async (fx) => {
    const address = fx.service.grpcAddress;
    const term = join(fx.dir, "term");
    const handles = startClientCli(
      ["run", "fwd", "--", NODE, "-e", `process.on("SIGTERM", () => { require("fs").writeFileSync(${JSON.stringify(term)}, "x"); process.exit(7); }); console.log("ready"); setInterval(() => {}, 1000);`],
      { address },
    );
    await handles.waitForStdout(/ready/);
    handles.kill("SIGTERM");
    const exit = await withTimeout(handles.exited, 10_000, "run to exit");
    assert.equal(exit.code, 7, `the command's exit code after it handled the forwarded SIGTERM (stderr: ${handles.stderr()})`);
    assert.equal(await exists(term), true, "the command got SIGTERM");

    const plain = startClientCli(["run", "fwd", "--", NODE, "-e", `console.log("ready"); setInterval(() => {}, 1000);`], { address });
    await plain.waitForStdout(/ready/);
    plain.kill("SIGINT");
    assert.equal((await withTimeout(plain.exited, 10_000, "run to exit")).code, 130, "the command died of the forwarded SIGINT: 128 + 2");
    assert.equal(await heldBy(fx, "fwd"), undefined, "released");
  });
});

test("run: Ctrl-Z (SIGTSTP) stops the command with run; SIGCONT resumes both", { skip: process.platform !== "linux" && "reads /proc" }, async () => {
  const state = async (pid: number) => /^\d+ \(.*\) (\w)/.exec(await readFile(`/proc/${pid}/stat`, "utf8"))?.[1];
  await withService(async (fx) => {
    const running = startClientCli(["run", "jobs", "--ttl", "10s", "--", ...idleChild(join(fx.dir, "term"))], { address: fx.service.grpcAddress });
    const pid = Number((await running.waitForStdout(/ready (\d+)/))[1]);
    const runPid = running.child.pid!;
    running.kill("SIGTSTP");
    await waitFor(async () => (await state(pid)) === "T" && (await state(runPid)) === "T", "the command and run to be stopped");
    running.kill("SIGCONT");
    await waitFor(async () => (await state(pid)) !== "T" && (await state(runPid)) !== "T", "both to run again");
    running.kill("SIGTERM");
    assert.equal((await withTimeout(running.exited, 10_000, "run to exit")).code, 0, `the command exits 0 on SIGTERM (stderr: ${running.stderr()})`);
  });
});

test("run: lease lost (its file deleted behind the service's back): SIGTERM to the command, exit 76; loss to termination measured", async (t) => {
  await withService(async (fx) => {
    const termFile = join(fx.dir, "term-at");
    // ttl 3 s: renewals every 1 s, so the deletion is noticed within about 1 s.
    const running = startClientCli(["run", "doomed", "--ttl", "3s", "--grace", "5s", "--", ...idleChild(termFile)], { address: fx.service.grpcAddress });
    await running.waitForStdout(/ready \d+/);
    const deletedAt = Date.now();
    await unlink(join(fx.lockDir, "doomed.lock"));
    const lostLine = running.waitForStderr(/LOST the lock on "doomed"/).then(() => Date.now());
    const exit = await withTimeout(running.exited, 15_000, "run to exit after the loss");
    assert.equal(exit.code, 76, `exit 76 (stderr: ${running.stderr()})`);
    assert.match(running.stderr(), /mcp-lockd run: LOST the lock on "doomed": .*Stopping the command \(pid \d+\): SIGTERM to its process group now, SIGKILL in 5s/);
    assert.match(running.stderr(), /the command exited with code 0 after the lock on "doomed" was lost; exit 76/);
    const terminatedAt = Number(await readFile(termFile, "utf8"));
    const latency = terminatedAt - deletedAt;
    t.diagnostic(`file deleted -> LOST line ${(await lostLine) - deletedAt} ms; -> SIGTERM received by the command ${latency} ms; -> run exited ${exit.at - deletedAt} ms`);
    assert.ok(latency >= 0 && latency < 3_000, `the command got SIGTERM ${latency} ms after the deletion (renewals every 1 s)`);
  });
});

test("run: a command that ignores SIGTERM gets SIGKILL after --grace, and so does everything it started", async (t) => {
  await withService(async (fx) => {
    const termFile = join(fx.dir, "term-at");
    const running = startClientCli(
      ["run", "stubborn", "--ttl", "3s", "--grace", "1s", "--", ...idleChild(termFile, { ignoreTerm: true, grandchild: true })],
      { address: fx.service.grpcAddress },
    );
    const grandchild = Number((await running.waitForStdout(/grandchild (\d+)/))[1]);
    const pid = Number((await running.waitForStdout(/ready (\d+)/))[1]);
    await unlink(join(fx.lockDir, "stubborn.lock"));
    const exit = await withTimeout(running.exited, 20_000, "run to exit after the loss");
    assert.equal(exit.code, 76, `exit 76 (stderr: ${running.stderr()})`);
    assert.match(running.stderr(), /the command outlived the 1s grace period: SIGKILL/);
    assert.match(running.stderr(), /the command died of SIGKILL after the lock on "stubborn" was lost; exit 76/);
    const termAt = Number(await readFile(termFile, "utf8"));
    const graceMeasured = exit.at - termAt;
    t.diagnostic(`SIGTERM received -> run exited (command SIGKILLed) ${graceMeasured} ms with --grace 1s`);
    assert.ok(graceMeasured >= 900 && graceMeasured < 4_000, `SIGKILL came ${graceMeasured} ms after SIGTERM`);
    assert.equal(processExists(pid), false, "the command is gone");
    await waitFor(() => !processExists(grandchild), "the grandchild (same process group) to be gone", 5_000);
  });
});

test("run: the service SIGKILLed and kept down past the ttl: the command is stopped no later than the last confirmed expiry", async (t) => {
  await withService(async (fx) => {
    const termFile = join(fx.dir, "term-at");
    const running = startClientCli(["run", "orphan", "--ttl", "2s", "--grace", "5s", "--", ...idleChild(termFile)], { address: fx.service.grpcAddress });
    await running.waitForStdout(/ready \d+/);
    const killedAt = Date.now();
    assert.equal(await fx.service.stop("SIGKILL"), "SIGKILL");
    const exit = await withTimeout(running.exited, 15_000, "run to exit after the loss");
    assert.equal(exit.code, 76, `exit 76 (stderr: ${running.stderr()})`);
    // The client names the last confirmed expiry (its own clock) in the loss.
    const named = /LOST the lock on "orphan": .*no renewal was confirmed before its expiry at (\S+?)\.? /.exec(running.stderr());
    assert.ok(named, `the loss names the last confirmed expiry: ${running.stderr()}`);
    const lastConfirmed = Date.parse(named[1]!);
    // Renewals go out every ttl/3, so the last confirmed one was sent within ttl/3 before the kill.
    assert.ok(
      lastConfirmed > killedAt + 2_000 * (2 / 3) - 200 && lastConfirmed <= killedAt + 2_000 + 50,
      `the last confirmed expiry is ${lastConfirmed - killedAt} ms after the kill (ttl 2 s)`,
    );
    const terminatedAt = Number(await readFile(termFile, "utf8"));
    t.diagnostic(
      `service killed ${lastConfirmed - killedAt} ms before the last confirmed expiry; the command got SIGTERM ${terminatedAt - lastConfirmed} ms after it (negative: before); run exited ${exit.at - lastConfirmed} ms after it`,
    );
    assert.ok(terminatedAt > killedAt, "not before the service died");
    assert.ok(terminatedAt - lastConfirmed <= 250, `SIGTERM ${terminatedAt - lastConfirmed} ms after the last confirmed expiry`);
    await rm(termFile, { force: true });
  });
});
