/**
 * The size of libuv's thread pool, which runs the lease-file store's fsyncs,
 * and all its file calls while several operations are in flight
 * (src/store/file-system.ts): with Node's default of 4 threads, at most 4
 * resources' fsyncs proceed at once and every other call waits for a thread.
 * libuv reads UV_THREADPOOL_SIZE once, when the pool first starts, so this
 * runs before anything else: the single executable (a CommonJS bundle)
 * imports this module first; `node bin/mcp-lockd.js` sets the same value
 * itself, because an ES module cannot (the module loader starts the pool
 * before any module runs). An operator's own value wins. Deno has no libuv
 * pool; there the variable is ignored.
 */
export const DEFAULT_THREAD_POOL_SIZE = 16;

process.env.UV_THREADPOOL_SIZE ??= String(DEFAULT_THREAD_POOL_SIZE);
