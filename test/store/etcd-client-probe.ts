// Run by test/store/etcd-client-runtimes.test.ts in an esbuild bundle with no
// node_modules and under Deno: `etcd-client-probe ENDPOINT...` puts a key,
// reads it back and grants a lease through EtcdClient, then prints JSON.
import { EtcdClient } from "../../src/store/etcd/etcd-client.ts";

declare const Deno: unknown;

// A function, not top-level await: the bundle is CommonJS, like the single executable's.
async function main(): Promise<void> {
  const client = new EtcdClient({ endpoints: process.argv.slice(2) });
  try {
    const runtime = typeof Deno === "undefined" ? "node" : "deno";
    const put = await client.put({ key: Buffer.from("/probe"), value: Buffer.from(`from ${runtime}`) });
    const range = await client.range({ key: Buffer.from("/probe") });
    // A Txn goes by the lean path (node:http2 directly), which the bundle and Deno must run too.
    const txn = await client.txn({
      compare: [],
      success: [{ requestPut: { key: Buffer.from("/probe-txn"), value: Buffer.from(runtime), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } }],
      failure: [],
    });
    const lease = await client.leaseGrant(5);
    await client.leaseRevoke(lease.ID);
    console.log(
      JSON.stringify({
        value: range.kvs[0]?.value.toString(),
        txnSucceeded: txn.succeeded,
        txnRevision: String(txn.header?.revision),
        revision: String(put.header?.revision),
        leaseIdType: typeof lease.ID,
        leaseId: lease.ID.toString(),
      }),
    );
  } finally {
    client.close();
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
