// Secure by default: plaintext only on loopback unless the operator says
// otherwise (serve --insecure-listen).

/** "127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost". Anything else (0.0.0.0, ::, names) may be reachable from elsewhere. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
  return bare === "localhost" || bare === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

/** The host part of "host:port" or "[v6]:port". */
export function hostOf(listen: string): string {
  return listen.slice(0, listen.lastIndexOf(":"));
}

/** Throws, naming the flag and the way out, when plaintext would be served beyond loopback. */
export function assertPlaintextAllowed(listens: Array<{ flag: string; address: string }>, tls: boolean, insecureListen: boolean): void {
  if (tls || insecureListen) return;
  for (const { flag, address } of listens) {
    if (!isLoopbackHost(hostOf(address))) {
      throw new Error(
        `${flag} ${address} is not a loopback address and TLS is off: give --cert-file and --key-file ` +
          `(and --auth-file to control who may lock what), or --insecure-listen to serve plaintext beyond loopback anyway`,
      );
    }
  }
}
