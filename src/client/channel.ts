import { credentials, type ChannelCredentials, type ChannelOptions } from "@grpc/grpc-js";
import { bearerTokenInterceptor } from "./bearer-token.ts";
import type { LockClientTls } from "./types.ts";

/** How a client reaches the service: TLS (PEM contents) and a bearer token, both optional. */
export interface ChannelSecurity {
  tls?: LockClientTls;
  token?: string;
}

/** Plaintext without `tls`; else TLS trusting `tls.ca` (default: the system's CAs), with a client certificate for mutual TLS. */
export function channelCredentials(tls: LockClientTls | undefined): ChannelCredentials {
  if (tls === undefined) return credentials.createInsecure();
  const pem = (value: string | Buffer | undefined) => (value === undefined ? null : Buffer.from(value));
  return credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

/** Channel options that send `token` on every call, if there is one. */
export function tokenOptions(token: string | undefined): ChannelOptions {
  return token === undefined ? {} : { interceptors: [bearerTokenInterceptor(token)] };
}
