import { execFile } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface CertificateFiles {
  caFile: string;
  /** For 127.0.0.1 (serverAuth and clientAuth). */
  serverCertFile: string;
  serverKeyFile: string;
  /** Signed by the CA, for client-certificate authentication. */
  clientCertFile: string;
  clientKeyFile: string;
  /** The same, read. */
  ca: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
}

/** A throwaway CA, a server certificate for IP 127.0.0.1 and a client certificate (ECDSA P-256, one day), made with Debian's openssl in `dir`. */
export async function makeTestCertificates(dir: string): Promise<CertificateFiles> {
  const file = (name: string) => join(dir, name);
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", ["req", "-x509", ...key, "-keyout", file("ca.key"), "-out", file("ca.crt"), "-days", "1", "-subj", "/CN=mcp-lockd test CA"]);
  for (const [name, usage] of [
    ["server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"],
    ["client", "extendedKeyUsage=clientAuth\n"],
  ] as const) {
    await writeFile(file(`${name}.ext`), usage);
    await run("openssl", ["req", ...key, "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`), "-subj", `/CN=mcp-lockd test ${name}`]);
    await run("openssl", ["x509", "-req", "-in", file(`${name}.csr`), "-CA", file("ca.crt"), "-CAkey", file("ca.key"), "-CAcreateserial", "-out", file(`${name}.crt`), "-days", "1", "-extfile", file(`${name}.ext`)]);
  }
  return {
    caFile: file("ca.crt"),
    serverCertFile: file("server.crt"),
    serverKeyFile: file("server.key"),
    clientCertFile: file("client.crt"),
    clientKeyFile: file("client.key"),
    ca: await readFile(file("ca.crt")),
    clientCert: await readFile(file("client.crt")),
    clientKey: await readFile(file("client.key")),
  };
}
