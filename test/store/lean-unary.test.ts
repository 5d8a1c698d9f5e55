import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Http2Server, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { status } from "@grpc/grpc-js";
import { LeanUnary, type LeanCallError } from "../../src/store/etcd/lean-unary.ts";

// The etcd client's lean unary path (Txn) against HTTP/2 servers that answer
// the way a gRPC server can, and the ways a broken peer can: each answer must
// map to the status the etcd store's rules expect (a real etcd is in
// etcd-client.test.ts; these are the cases etcd cannot be made to produce).

type Behaviour = (stream: ServerHttp2Stream, body: Buffer) => void;

async function serve(behaviour: Behaviour): Promise<{ server: Http2Server; address: string }> {
  const server = createServer();
  server.on("stream", (stream) => {
    // A stream the server resets on purpose reports it here.
    stream.on("error", () => {});
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => behaviour(stream, Buffer.concat(chunks)));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, address: `127.0.0.1:${(server.address() as AddressInfo).port}` };
}

function framed(message: Buffer): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

async function failure(promise: Promise<unknown>): Promise<LeanCallError> {
  try {
    await promise;
  } catch (err) {
    return err as LeanCallError;
  }
  assert.fail("the call succeeded");
}

test("lean unary calls: answers, etcd's errors, broken peers, deadlines and aborts map as grpc-js's would", async (t) => {
  const servers: Http2Server[] = [];
  const clients: LeanUnary[] = [];
  const client = async (behaviour: Behaviour) => {
    const { server, address } = await serve(behaviour);
    servers.push(server);
    const lean = new LeanUnary(address, false, undefined);
    clients.push(lean);
    return lean;
  };
  try {
    await t.test("an answer: the message, unframed; the request arrives framed with the gRPC headers", async () => {
      let seen: { path?: string; type?: string; body?: Buffer } = {};
      const lean = await client((stream, body) => {
        seen = { body };
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(framed(Buffer.from("answer")));
      });
      const answer = await lean.call("/etcdserverpb.KV/Txn", Buffer.from("request"), 2_000);
      assert.equal(answer.toString(), "answer");
      assert.deepEqual(seen.body, framed(Buffer.from("request")));
    });

    await t.test("etcd's own error (trailers-only): its code and its message, percent-decoded", async () => {
      const lean = await client((stream) => {
        stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": String(status.NOT_FOUND), "grpc-message": "etcdserver%3A requested lease not found" }, { endStream: true });
      });
      const err = await failure(lean.call("/etcdserverpb.KV/Txn", Buffer.alloc(0), 2_000));
      assert.equal(err.code, status.NOT_FOUND);
      assert.equal(err.details, "etcdserver: requested lease not found");
    });

    await t.test("an answer without a status, or an HTTP error: UNAVAILABLE, and it may have been applied (not 'No connection established')", async () => {
      for (const behaviour of [
        (stream: ServerHttp2Stream) => {
          stream.respond({ ":status": 200, "content-type": "application/grpc" });
          stream.end(framed(Buffer.from("x")));
        },
        (stream: ServerHttp2Stream) => stream.respond({ ":status": 503 }, { endStream: true }),
        (stream: ServerHttp2Stream) => stream.close(0x2 /* INTERNAL_ERROR */),
      ]) {
        const lean = await client(behaviour);
        const err = await failure(lean.call("/etcdserverpb.KV/Txn", Buffer.alloc(0), 2_000));
        assert.equal(err.code, status.UNAVAILABLE, err.message);
        assert.doesNotMatch(err.details, /No connection established/);
      }
    });

    await t.test("a body that is not one uncompressed message: INTERNAL", async () => {
      const lean = await client((stream) => {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(Buffer.from([1, 0, 0, 0, 1, 7]));
      });
      assert.equal((await failure(lean.call("/etcdserverpb.KV/Txn", Buffer.alloc(0), 2_000))).code, status.INTERNAL);
    });

    await t.test("no answer within the deadline: DEADLINE_EXCEEDED, and the stream is cancelled", async () => {
      let cancelled: Promise<unknown> = Promise.resolve();
      const lean = await client((stream) => {
        cancelled = once(stream, "close");
      });
      const started = performance.now();
      const err = await failure(lean.call("/etcdserverpb.KV/Txn", Buffer.alloc(0), 200));
      assert.equal(err.code, status.DEADLINE_EXCEEDED);
      assert.ok(performance.now() - started >= 190);
      await cancelled;
    });

    await t.test("aborted: rejects with the signal's reason", async () => {
      const lean = await client(() => {});
      const abort = new AbortController();
      const call = lean.call("/etcdserverpb.KV/Txn", Buffer.alloc(0), 5_000, abort.signal);
      abort.abort(new Error("stop"));
      assert.equal((await failure(call)).message, "stop");
    });

    await t.test("nothing listening: UNAVAILABLE with 'No connection established' (safe to send elsewhere)", async () => {
      const { server, address } = await serve(() => {});
      server.close();
      await once(server, "close");
      const lean = new LeanUnary(address, false, undefined);
      clients.push(lean);
      const err = await failure(lean.call("/etcdserverpb.KV/Txn", Buffer.alloc(0), 2_000));
      assert.equal(err.code, status.UNAVAILABLE);
      assert.match(err.details, /No connection established/);
    });

    await t.test("a connection the server closed is replaced by the next call", async () => {
      let calls = 0;
      const lean = await client((stream) => {
        calls++;
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(framed(Buffer.from(String(calls))));
        // The server ends the connection after each answer (as a member restarting would).
        stream.session?.close();
      });
      assert.equal((await lean.call("/p", Buffer.alloc(0), 2_000)).toString(), "1");
      assert.equal((await lean.call("/p", Buffer.alloc(0), 2_000)).toString(), "2");
    });
  } finally {
    for (const lean of clients) lean.close();
    for (const server of servers) server.close();
  }
});
