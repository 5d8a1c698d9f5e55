// The etcd client reads nothing from disk at run time (static stubs, no
// .proto): bundled by esbuild and run with no node_modules beside it (as in
// the single executable), and under Deno from the sources, it talks to a
// real etcd, lease ids as bigint.
import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { startEtcdCluster } from "../helpers/etcd-cluster.ts";
import { runProcess } from "../helpers/run-process.ts";
import { makeTempDir } from "../helpers/temp-dir.ts";

// dist/test/store/ → the repository root.
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const PROBE = join(ROOT, "test", "store", "etcd-client-probe.ts");
const DENO = join(ROOT, "node_modules", "deno", "deno");

interface ProbeOutput {
  value: string;
  txnSucceeded: boolean;
  txnRevision: string;
  leaseIdType: string;
  leaseId: string;
}

test("the etcd client bundled without node_modules, and under Deno, drives a real etcd", { timeout: 120_000 }, async () => {
  const cluster = await startEtcdCluster(1);
  const temp = await makeTempDir("mcp-lockd-etcd-bundle-");
  try {
    await build({ entryPoints: [PROBE], outfile: join(temp.path, "build", "probe.cjs"), bundle: true, platform: "node", target: "node20", format: "cjs", logLevel: "error" });
    // Alone in an empty directory: nothing to load from beside it.
    await copyFile(join(temp.path, "build", "probe.cjs"), join(temp.path, "probe.cjs"));
    const bundled = await runProcess(process.execPath, [join(temp.path, "probe.cjs"), ...cluster.clientUrls], { cwd: temp.path, timeoutMs: 30_000 });
    assert.equal(bundled.code, 0, bundled.stderr);
    const fromBundle = JSON.parse(bundled.stdout) as ProbeOutput;
    assert.equal(fromBundle.value, "from node");
    assert.equal(fromBundle.txnSucceeded, true);
    assert.ok(BigInt(fromBundle.txnRevision) > 0n);
    assert.equal(fromBundle.leaseIdType, "bigint");

    const host = new URL(cluster.clientUrls[0]!).hostname;
    const deno = await runProcess(DENO, ["run", "--quiet", "--no-prompt", `--allow-net=${host}`, "--allow-env", `--allow-read=${ROOT}`, PROBE, ...cluster.clientUrls], {
      cwd: ROOT,
      timeoutMs: 60_000,
    });
    assert.equal(deno.code, 0, deno.stderr);
    const fromDeno = JSON.parse(deno.stdout) as ProbeOutput;
    assert.equal(fromDeno.value, "from deno");
    assert.equal(fromDeno.txnSucceeded, true);
    assert.ok(BigInt(fromDeno.txnRevision) > BigInt(fromBundle.txnRevision));
    assert.equal(fromDeno.leaseIdType, "bigint");
    assert.notEqual(fromDeno.leaseId, fromBundle.leaseId);
  } finally {
    await temp.remove();
    await cluster.close();
  }
});
