import { createPrivateKey, X509Certificate } from "node:crypto";
import { createSecureContext, type SecureContextOptions } from "node:tls";

// The serve side's TLS settings (--cert-file, --key-file, --trusted-ca-file,
// --client-cert-auth, --tls-min-version), shared by the gRPC and HTTP servers.

export type TlsMinVersion = "1.2" | "1.3";

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** Required with clientCertAuth: the CA that signs client certificates. */
  trustedCaFile?: string;
  /** Mutual TLS: refuse clients without a certificate signed by trustedCaFile. */
  clientCertAuth: boolean;
  minVersion: TlsMinVersion;
}

/** The files to read, in the order secureContextOf takes their contents. */
export function tlsFilePaths(files: TlsFiles): string[] {
  return files.trustedCaFile === undefined ? [files.certFile, files.keyFile] : [files.certFile, files.keyFile, files.trustedCaFile];
}

/**
 * Context options from the files' contents, checked here so that a file
 * that is not PEM, or a key that does not match its certificate, is
 * reported (and a reload rejected) at once rather than on the next
 * handshake. The checks are explicit: Deno's createSecureContext accepts
 * anything.
 */
export function secureContextOf(files: TlsFiles, [cert, key, ca]: Buffer[]): SecureContextOptions {
  const options: SecureContextOptions = {
    cert,
    key,
    ca,
    minVersion: files.minVersion === "1.3" ? "TLSv1.3" : "TLSv1.2",
  };
  const certificate = parsePem(files.certFile, () => new X509Certificate(cert!));
  const privateKey = parsePem(files.keyFile, () => createPrivateKey(key!));
  if (!certificate.checkPrivateKey(privateKey)) throw new Error(`${files.keyFile} is not the key of the certificate in ${files.certFile}`);
  if (ca) parsePem(files.trustedCaFile!, () => new X509Certificate(ca));
  try {
    createSecureContext(options);
  } catch (err) {
    throw new Error(`${files.certFile} / ${files.keyFile}${ca ? ` / ${files.trustedCaFile}` : ""}: ${(err as Error).message}`);
  }
  return options;
}

function parsePem<T>(file: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new Error(`${file}: not a PEM certificate or key (${(err as Error).message})`);
  }
}
