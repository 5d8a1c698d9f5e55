import { after } from "node:test";
import { randomBytes } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { EtcdClient } from "../../src/store/etcd/etcd-client.ts";
import { prefixEnd } from "../../src/store/etcd/etcd-keys.ts";
import { startEtcdCluster, type EtcdCluster } from "./etcd-cluster.ts";
import { etcdServeArgs } from "./etcd-replicas.ts";
import { TestLockClient } from "./lock-client.ts";
import { startServiceProcess, testRuntime, type ServiceProcess, type ServiceProcessOptions, type ServiceRuntime } from "./service-process.ts";
import { makeTempDir } from "./temp-dir.ts";
import { STORE_KINDS, type StoreKind } from "../../src/store/store-kind.ts";

// The conformance suites (LockService, bad input, restart, Watch) run once per
// store: the lease files, or etcd. A test file asks storesUnderTest() which
// ones, and gets a service on either from startServiceUnderTest() (or starts
// its services one by one with servicesOnStore()). All etcd
// services of one test file share one single-member etcd (started at first
// use, stopped after the file's tests), each under its own key prefix, so
// they see nothing of each other.

export type { StoreKind };

/**
 * The stores a conformance file runs against: MCP_LOCKD_TEST_STORES
 * ("file", "etcd" or "file,etcd") if set, else both, etcd only when the
 * service runs under one of `etcdRuntimes` (default: Node only, so that
 * the Deno and single-executable runs do not repeat every etcd case).
 */
export function storesUnderTest(etcdRuntimes: readonly ServiceRuntime[] = ["node"]): StoreKind[] {
  const chosen = process.env.MCP_LOCKD_TEST_STORES;
  if (chosen) {
    const kinds = chosen.split(",").map((kind) => kind.trim());
    for (const kind of kinds) if (!(STORE_KINDS as readonly string[]).includes(kind)) throw new Error(`MCP_LOCKD_TEST_STORES=${chosen}: expected file, etcd or both`);
    return kinds as StoreKind[];
  }
  return etcdRuntimes.includes(testRuntime()) ? ["file", "etcd"] : ["file"];
}

let sharedCluster: Promise<EtcdCluster> | undefined;

// Registered when a test file imports this module, so on the file's root: it
// runs once every test of the file is done.
after(async () => (await sharedCluster?.catch(() => undefined))?.close());

/** The test file's etcd: started at the first call, stopped once the file's tests are done. */
export function sharedEtcd(): Promise<EtcdCluster> {
  return (sharedCluster ??= startEtcdCluster(1));
}

/** Where one deployment's leases live: a lock dir, or a key prefix in the shared etcd. */
export interface StoreUnderTest {
  readonly kind: StoreKind;
  /** The lock dir (file store); undefined for etcd. */
  readonly lockDir: string | undefined;
  /** The `serve` flags that select it. */
  readonly serveArgs: string[];
  /**
   * Everything the store holds now, as text: file names and contents below
   * the lock dir, or etcd keys and values under the prefix (to show that
   * lease ids are never stored).
   */
  storedTexts(): Promise<string[]>;
  /** Removes the lock dir, or deletes every key under the prefix. */
  remove(): Promise<void>;
}

/** A fresh store of `kind`: a temp lock dir (`lockSubdir` below it, created by the service), or a new etcd prefix. */
export async function makeStoreUnderTest(kind: StoreKind, options: { lockSubdir?: string } = {}): Promise<StoreUnderTest> {
  if (kind === "file") {
    const temp = await makeTempDir();
    const lockDir = options.lockSubdir === undefined ? temp.path : join(temp.path, options.lockSubdir);
    return {
      kind,
      lockDir,
      serveArgs: ["--lock-dir", lockDir],
      async storedTexts() {
        const names = await readdir(temp.path, { recursive: true });
        const contents = await Promise.all(names.map((name) => readFile(join(temp.path, name), "utf8").catch(() => "")));
        return [...names, ...contents];
      },
      remove: () => temp.remove(),
    };
  }
  const cluster = await sharedEtcd();
  const prefix = `/mcp-lockd-test-${randomBytes(6).toString("hex")}/`;
  const keyRange = { key: Buffer.from(prefix), rangeEnd: prefixEnd(Buffer.from(prefix)) };
  const withClient = async <T>(use: (client: EtcdClient) => Promise<T>): Promise<T> => {
    const client = new EtcdClient({ endpoints: cluster.clientUrls });
    try {
      return await use(client);
    } finally {
      client.close();
    }
  };
  return {
    kind,
    lockDir: undefined,
    serveArgs: etcdServeArgs(cluster, prefix),
    storedTexts: () =>
      withClient(async (client) => {
        const { kvs } = await client.range(keyRange);
        return kvs.flatMap((kv) => [Buffer.from(kv.key).toString("utf8"), Buffer.from(kv.value).toString("utf8")]);
      }),
    remove: () => withClient(async (client) => void (await client.deleteRange(keyRange))),
  };
}

/** Services started on one store and the clients connected to them: close() ends them all. */
export interface ServicesOnStore {
  readonly store: StoreUnderTest;
  /** Starts `mcp-lockd serve` on the store, on ports 0: the first, a restart, or another replica. Stopped by close(). */
  start(): Promise<ServiceProcess>;
  /** A client of `service`, closed by close(). */
  connect(service: ServiceProcess): TestLockClient;
  /** Closes the clients, SIGKILLs whatever is still running (SIGTERM for the first service) and removes the store; safe to call twice. */
  close(): Promise<void>;
}

/** What runs each service (by default what MCP_LOCKD_TEST_RUNTIME names), and where. */
export type ServiceLaunch = Pick<ServiceProcessOptions, "runtime" | "binary" | "cwd" | "env">;

export interface ServiceOptions {
  /** The file store's lock dir is this folder of its temp dir (created by the service). */
  lockSubdir?: string;
  /** More `serve` flags. */
  extraArgs?: string[];
  launch?: ServiceLaunch;
}

/** A fresh store of `kind`, on which services start and clients connect as asked; none is started yet. */
export async function servicesOnStore(kind: StoreKind, options: ServiceOptions = {}): Promise<ServicesOnStore> {
  const store = await makeStoreUnderTest(kind, options);
  const services: ServiceProcess[] = [];
  const clients: TestLockClient[] = [];
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      try {
        for (const client of clients) client.close();
        const [first, ...others] = services;
        await Promise.all([first?.stop("SIGTERM"), ...others.map((service) => service.stop("SIGKILL"))]);
      } finally {
        await store.remove();
      }
    })());
  const start = async () => {
    const service = await startServiceProcess({ ...options.launch, extraArgs: [...store.serveArgs, ...(options.extraArgs ?? [])] });
    services.push(service);
    return service;
  };
  const connect = (service: ServiceProcess) => {
    const client = new TestLockClient(service.grpcAddress);
    clients.push(client);
    return client;
  };
  return { store, start, connect, close };
}

export interface ServiceUnderTest extends ServicesOnStore {
  /** The first service started on the store. */
  readonly service: ServiceProcess;
  /** Connected to `service`. */
  readonly client: TestLockClient;
}

/** `mcp-lockd serve` on a fresh store of `kind`, and a client of it. What was started is cleaned up if a step fails. */
export async function startServiceUnderTest(kind: StoreKind, options: ServiceOptions = {}): Promise<ServiceUnderTest> {
  const services = await servicesOnStore(kind, options);
  try {
    const service = await services.start();
    return { ...services, service, client: services.connect(service) };
  } catch (err) {
    await services.close();
    throw err;
  }
}
