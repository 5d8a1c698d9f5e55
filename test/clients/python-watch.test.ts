// The Python client's watch() (clients/python, Debian's python3-grpcio)
// against the real service: the snapshot, the changes in order with their
// fields, and leaving the loop ending the watch cleanly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { startServiceFixture } from "../helpers/service-process.ts";
import { waitFor, withTimeout } from "../helpers/wait.ts";
import { PYTHON, PYTHON_PACKAGE_DIR } from "./python-lease-driver.ts";

const WATCH_CLIENT_PY = fileURLToPath(new URL("../../../test/clients/watch_client.py", import.meta.url));
const seconds = (s: number) => ({ seconds: s, nanos: 0 });

test("python LockClient.watch(): snapshot, ACQUIRED, WAITERS_CHANGED, HANDED_OVER, RELEASED; break ends it", async () => {
  const { service, client, close } = await startServiceFixture();
  try {
    const early = (await client.acquire({ resource: "pw-early", holder: "early", ttl: seconds(60) })).lease!;
    const child = spawn(PYTHON, [WATCH_CLIENT_PY, service.grpcAddress, "pw-", "RELEASED", "pw-res"], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR, PYTHONDONTWRITEBYTECODE: "1" },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const exited = once(child, "exit");
    const lines = () => stdout.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as Record<string, unknown>);
    const seen = (type: string) => waitFor(() => lines().some((line) => line.type === type), `${type} from watch_client.py (stderr: ${stderr})`, 10_000);

    await seen("SNAPSHOT_COMPLETE");
    const first = (await client.acquire({ resource: "pw-res", holder: "first", ttl: seconds(30) })).lease!;
    await seen("ACQUIRED");
    const waiting = client.acquire({ resource: "pw-res", holder: "second", waitTimeout: seconds(30) });
    await seen("WAITERS_CHANGED");
    await client.release(first.leaseId);
    const second = (await waiting).lease!;
    await seen("HANDED_OVER");
    await client.release(second.leaseId);
    const [code] = await withTimeout(exited, 10_000, "watch_client.py to leave its loop and exit");
    assert.equal(code, 0, `exit ${code}\n${stdout}\n${stderr}`);

    const got = lines();
    assert.deepEqual(
      got.map((line) => (line.done ? "done" : `${line.type} ${line.resource}`)),
      ["HELD pw-early", "SNAPSHOT_COMPLETE ", "ACQUIRED pw-res", "WAITERS_CHANGED pw-res", "HANDED_OVER pw-res", "RELEASED pw-res", "done"],
    );
    assert.deepEqual(
      { holder: got[0]!.holder, token: got[0]!.fencing_token, ttl: got[0]!.ttl, times: got[0]!.has_times, utc: got[0]!.time_is_utc },
      { holder: "early", token: early.fencingToken, ttl: 60, times: true, utc: true },
    );
    assert.equal(got[3]!.waiters, 1);
    assert.deepEqual(
      { holder: got[4]!.holder, previous: got[4]!.previous_holder, previousToken: got[4]!.previous_fencing_token, waiters: got[4]!.waiters },
      { holder: "second", previous: "first", previousToken: first.fencingToken, waiters: 0 },
    );
    assert.deepEqual({ state: got[5]!.state, holder: got[5]!.holder, times: got[5]!.has_times }, { state: "free", holder: "second", times: true });
    await client.release(early.leaseId);
  } finally {
    await close();
  }
});
