import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A certificate and its key, as files and as PEM. */
export interface CertificateFiles {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

/**
 * A certificate authority made with Debian's openssl, and certificates it
 * signs: for servers on 127.0.0.1 and localhost, or for clients with a given
 * common name. EC P-256 keys: quick to make.
 */
export class TestCertificateAuthority implements CertificateFiles {
  private constructor(
    private readonly dir: string,
    readonly name: string,
    readonly certFile: string,
    readonly keyFile: string,
    readonly cert: Buffer,
    readonly key: Buffer,
  ) {}

  static async create(dir: string, name = "ca"): Promise<TestCertificateAuthority> {
    const certFile = join(dir, `${name}.pem`);
    const keyFile = join(dir, `${name}.key`);
    await run("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyFile, "-out", certFile, "-days", "2", "-subj", `/CN=mcp-lockd test ${name}`,
    ]);
    return new TestCertificateAuthority(dir, name, certFile, keyFile, await readFile(certFile), await readFile(keyFile));
  }

  /** A server certificate valid for IP 127.0.0.1 and DNS localhost. */
  server(name = "server"): Promise<CertificateFiles> {
    return this.issue(name, "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost");
  }

  /** A client certificate whose subject CN is `commonName`. */
  client(commonName: string): Promise<CertificateFiles> {
    return this.issue(`client-${commonName}`, commonName, "extendedKeyUsage=clientAuth");
  }

  private async issue(name: string, commonName: string, extension: string): Promise<CertificateFiles> {
    const base = join(this.dir, `${this.name}-${name}`);
    const [keyFile, csr, certFile, ext] = [`${base}.key`, `${base}.csr`, `${base}.pem`, `${base}.ext`];
    await writeFile(ext, `${extension}\n`);
    await run("openssl", [
      "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyFile, "-out", csr, "-subj", `/CN=${commonName}`,
    ]);
    await run("openssl", [
      // A random serial, not -CAcreateserial: certificates issued at once by one CA raced on its .srl file.
      "x509", "-req", "-in", csr, "-CA", this.certFile, "-CAkey", this.keyFile, "-set_serial", `0x${randomBytes(16).toString("hex")}`,
      "-out", certFile, "-days", "2", "-extfile", ext,
    ]);
    return { certFile, keyFile, cert: await readFile(certFile), key: await readFile(keyFile) };
  }
}
