#!/usr/bin/env node
// node scripts/measure-served-call.mjs [CALLS] [PORT PID]: what one served
// unary gRPC call costs the serving process in CPU, without the client's
// cost mixed in. The client is node:http2 sending raw gRPC frames (the
// cheapest client there is), in this process; the server is a child whose
// CPU time is read before and after the measured calls (after 500 warm-up
// calls, so V8 has compiled the path):
//   - a bare grpc-js server answering one method with two bytes;
//   - a node:http2 server answering the same with raw frames (no gRPC
//     library: what HTTP/2 itself costs);
//   - with PORT and PID, a running `mcp-lockd serve` answering an empty
//     ListLocks (its whole serving stack: interceptors, metrics, gate).
// Each is measured twice, alternately. Default 4,000 calls.
import http2 from "node:http2";
import { fork } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const role = process.argv[2];
if (role === "grpc-js" || role === "http2") {
  await serve(role);
} else {
  const calls = Number(process.argv[2] ?? 4000);
  const [port, pid] = process.argv.slice(3).map(Number);
  for (let round = 0; round < 2; round++) {
    for (const kind of ["grpc-js", "http2"]) {
      const child = fork(fileURLToPath(import.meta.url), [kind]);
      const { port: childPort } = await new Promise((resolve) => child.once("message", resolve));
      const cpu = () =>
        new Promise((resolve) => {
          child.once("message", (message) => resolve(message.cpuUs));
          child.send("cpu");
        });
      report(kind, await measure(childPort, "/t.T/Echo", Buffer.from([0, 0, 0, 0, 2, 104, 105]), calls, cpu));
      child.kill();
    }
    if (port && pid) report("mcp-lockd ListLocks", await measure(port, "/mcplockd.v1.LockService/ListLocks", Buffer.alloc(5), calls, async () => cpuOfPid(pid)));
  }
}

function report(kind, { cpuUs, latencyUs }) {
  console.log(JSON.stringify({ server: kind, "server CPU µs per call": cpuUs, "latency µs": latencyUs }));
}

/** CPU (user + system, µs) of another process, from /proc (clock ticks of 10 ms: enough over thousands of calls). */
function cpuOfPid(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

async function measure(port, path, frame, calls, cpu) {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const one = () =>
    new Promise((resolve, reject) => {
      const stream = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers" });
      stream.on("data", () => {});
      stream.on("trailers", (trailers) => {
        if (trailers["grpc-status"] !== "0") reject(new Error(`grpc-status ${trailers["grpc-status"]}: ${trailers["grpc-message"]}`));
      });
      stream.on("end", resolve);
      stream.on("error", reject);
      stream.end(frame);
    });
  for (let i = 0; i < 500; i++) await one();
  const before = await cpu();
  const start = performance.now();
  for (let i = 0; i < calls; i++) await one();
  const elapsed = performance.now() - start;
  const after = await cpu();
  session.close();
  return { cpuUs: Math.round((after - before) / calls), latencyUs: Math.round((1000 * elapsed) / calls) };
}

async function serve(kind) {
  const reply = (port) => process.send({ port });
  process.on("message", (message) => {
    if (message !== "cpu") return;
    const usage = process.cpuUsage();
    process.send({ cpuUs: usage.user + usage.system });
  });
  if (kind === "grpc-js") {
    const grpc = await import("@grpc/grpc-js");
    const server = new grpc.Server();
    const same = (bytes) => bytes;
    const method = { path: "/t.T/Echo", requestStream: false, responseStream: false, requestSerialize: same, requestDeserialize: same, responseSerialize: same, responseDeserialize: same };
    server.addService({ Echo: method }, { Echo: (_call, callback) => callback(null, Buffer.from("ok")) });
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
      if (err) throw err;
      reply(port);
    });
    return;
  }
  const server = http2.createServer();
  server.on("stream", (stream) => {
    stream.on("data", () => {});
    stream.on("end", () => {
      const body = Buffer.from("ok");
      const frame = Buffer.alloc(5 + body.length);
      frame.writeUInt32BE(body.length, 1);
      body.copy(frame, 5);
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.end(frame);
    });
  });
  server.listen(0, "127.0.0.1", () => reply(server.address().port));
}
