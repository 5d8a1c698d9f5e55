// libuv's thread pool, unless the environment sets its size: every renewal
// of a lease file that writes waits for one fdatasync there, and with the
// default 4 threads they queued (10,000 leases renewed at ttl/3: renewal p50
// 26 ms with 4 threads, 2.3-3.1 ms with 16; docs/performance.md). The pool
// reads the variable once, when it starts. In the single executable (one
// CommonJS bundle) this module, imported first, runs before that. Under
// `node bin/mcp-lockd.js` the ESM loader has already started the pool while
// loading the modules, so `npm start` sets the variable itself (and the
// bench sets it for the server it starts that way).
process.env.UV_THREADPOOL_SIZE ??= "16";
