import { readFile } from "node:fs/promises";
import { EtcdConfigError, parseEndpoints, type EtcdTls } from "./etcd-client.ts";
import { DEFAULT_ETCD_PREFIX } from "./etcd-lease-store.ts";

// What `serve --store etcd` is told (flags or MCP_LOCKD_ETCD_* variables),
// shared by the command line that checks it and the service that opens the
// store. TLS material is named by file and read once, at start.

export interface EtcdStoreSettings {
  /** http://HOST:PORT, https://HOST:PORT or HOST:PORT, one per member. */
  endpoints: string[];
  /** Every key of this deployment starts with it; ends with "/". */
  prefix: string;
  /** PEM files: the CA that signs etcd's certificate; a client certificate and its key (etcd's --client-cert-auth). */
  cacertFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Every fencing token issued is above it (a fleet moving from lease files never goes below a token already issued). */
  tokenFloor: number;
}

/**
 * Throws EtcdConfigError naming the entry or setting at fault: an endpoint
 * list etcd-client would refuse, a certificate without its key, TLS files
 * with http:// endpoints, a prefix that does not end with "/".
 */
export function checkEtcdStoreSettings(settings: EtcdStoreSettings): void {
  // Only which TLS files are given matters here; their contents are read at start.
  const given = (file: string | undefined) => (file === undefined ? undefined : Buffer.alloc(0));
  parseEndpoints(settings.endpoints, { ca: given(settings.cacertFile), cert: given(settings.certFile), key: given(settings.keyFile) });
  // Without the trailing "/", deployments with prefixes /a and /ab would read each other's keys.
  if (!settings.prefix.endsWith("/")) {
    throw new EtcdConfigError(`etcd prefix (--etcd-prefix) ${JSON.stringify(settings.prefix)}: must end with "/" (default ${DEFAULT_ETCD_PREFIX})`);
  }
  if (!Number.isSafeInteger(settings.tokenFloor) || settings.tokenFloor < 0) {
    throw new EtcdConfigError(`etcd token floor (--etcd-token-floor) ${settings.tokenFloor}: expected a whole number of at least 0`);
  }
}

/** Reads the TLS files (undefined when none is given); a file that cannot be read fails the start, naming it. */
export async function readEtcdTls(settings: EtcdStoreSettings): Promise<EtcdTls | undefined> {
  const read = async (file: string | undefined, what: string) => {
    if (file === undefined) return undefined;
    try {
      return await readFile(file);
    } catch (err) {
      throw new EtcdConfigError(`cannot read the etcd ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const [ca, cert, key] = await Promise.all([
    read(settings.cacertFile, "CA certificate (--etcd-cacert)"),
    read(settings.certFile, "client certificate (--etcd-cert)"),
    read(settings.keyFile, "client key (--etcd-key)"),
  ]);
  if (ca === undefined && cert === undefined && key === undefined) return undefined;
  return { ...(ca && { ca }), ...(cert && { cert }), ...(key && { key }) };
}
