// libuv's thread pool for `serve`, unless the environment sets its size:
// every renewal of a lease file that writes waits for one durable write
// there, and with the default 4 threads they queued (10,000 leases renewed at
// ttl/3: renewal p50 26 ms with 4 threads, 2.0-3.1 ms with 16;
// docs/performance.md). The pool reads the variable once, when it starts. In
// the single executable (one CommonJS bundle) this module, imported first,
// runs before that. Under `node bin/mcp-lockd.js` the ESM loader has already
// started the pool while loading the modules, so `npm start` (and the bench,
// for the server it starts that way) sets the variable itself. Other
// commands leave the environment alone: `run` passes it on to the command it
// runs.

/** The pool size the service runs with. */
export const SERVICE_THREAD_POOL_SIZE = 16;

// argv[2] is the command under Node, Deno and the single executable alike.
if (process.argv[2] === "serve") process.env.UV_THREADPOOL_SIZE ??= String(SERVICE_THREAD_POOL_SIZE);
