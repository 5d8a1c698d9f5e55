import { ServerCredentials } from "@grpc/grpc-js";
import type { SecureContextOptions } from "node:tls";

/**
 * TLS server credentials whose certificates can be replaced while serving:
 * grpc-js hands each update to its HTTP/2 servers' setSecureContext, so new
 * handshakes use the new certificates and live connections (KeepAlive
 * streams included) carry on untouched. grpc-js's own createSsl cannot be
 * updated and has no minimum TLS version.
 */
export class ReloadableServerCredentials extends ServerCredentials {
  constructor(context: SecureContextOptions, requireClientCertificate: boolean) {
    // Mutual TLS: a client without a certificate the CA signed fails the handshake.
    super({ requestCert: requireClientCertificate, rejectUnauthorized: requireClientCertificate }, context);
  }

  update(context: SecureContextOptions): void {
    this.updateSecureContextOptions(context);
  }

  override _equals(other: ServerCredentials): boolean {
    return other === this;
  }
}
