// Where the service is: one address or several replicas, as `--address`,
// MCP_LOCKD_ADDRESS and LockClientOptions.address all spell it. Shared by the
// TypeScript client and the CLI; clients/python/mcp_lockd/endpoints.py follows
// the same rules.

export const DEFAULT_ADDRESS = "127.0.0.1:50051";

/** An address list that cannot be used; the message names the bad entry. */
export class AddressListError extends Error {
  override name = "AddressListError";
}

// HOST:PORT or [IPv6]:PORT.
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):\d{1,5}$/;
// A gRPC target with a scheme (unix:/path, dns:host:port, ...).
const TARGET = /^(dns|unix|unix-abstract|ipv4|ipv6):\S+$/;
// These targets carry their own comma-separated list, which gRPC walks itself.
const LIST_TARGET = /^(ipv4|ipv6):/;

/**
 * The addresses in `text`, in order: `HOST:PORT[,HOST:PORT...]` (spaces
 * around commas allowed). A value that starts with `ipv4:` or `ipv6:` is one
 * gRPC target whatever commas it has (gRPC fails over within it itself).
 * Throws AddressListError for an empty entry, a duplicate, or an entry that
 * is neither HOST:PORT, [IPv6]:PORT nor a gRPC target with a scheme.
 */
export function parseAddressList(text: string): string[] {
  const trimmed = text.trim();
  if (LIST_TARGET.test(trimmed)) {
    if (!TARGET.test(trimmed)) throw new AddressListError(`${JSON.stringify(text)}: not a gRPC target`);
    return [trimmed];
  }
  const addresses = trimmed.split(",").map((entry) => entry.trim());
  for (const [index, address] of addresses.entries()) {
    if (address === "") {
      throw new AddressListError(`${JSON.stringify(text)}: address ${index + 1} of ${addresses.length} is empty`);
    }
    if (!HOST_PORT.test(address) && !TARGET.test(address)) {
      throw new AddressListError(
        `${JSON.stringify(address)}: expected HOST:PORT (like ${DEFAULT_ADDRESS}) or a gRPC target such as unix:/path, ` +
          `several separated by commas`,
      );
    }
    if (addresses.indexOf(address) !== index) throw new AddressListError(`${JSON.stringify(address)} is listed twice`);
  }
  return addresses;
}
