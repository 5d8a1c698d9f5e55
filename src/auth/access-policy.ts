import { createHash, timingSafeEqual } from "node:crypto";
import { PermissionDeniedError, UnauthenticatedError } from "../core/errors.ts";

// Who may do what, once --auth-file turns authorization on. Pure data and
// decisions: the gRPC and HTTP edges extract the credentials, this decides.

/** lock: Acquire, and Release/KeepAlive of its leases. read: listings. admin: everything, ForceRelease too. */
export type Action = "lock" | "read" | "admin";
export const ACTIONS: readonly Action[] = ["lock", "read", "admin"];

export interface Grant {
  /** "" means every resource. */
  resourcePrefix: string;
  actions: ReadonlySet<Action>;
}

export interface Principal {
  name: string;
  /** SHA-256 of the bearer token (32 bytes); the token itself is never kept. */
  tokenSha256?: Buffer;
  /** Matched against the client certificate's subject CN under mutual TLS. */
  certCommonName?: string;
  grants: readonly Grant[];
}

/** What a call presented: a bearer token and/or a verified client certificate's common name. */
export interface PresentedCredentials {
  token?: string;
  certCommonName?: string;
}

export class AccessPolicy {
  constructor(readonly principals: readonly Principal[]) {}

  /**
   * The principal a call acts as. A bearer token, when given, decides alone
   * (a wrong token is refused even with a good certificate); otherwise the
   * certificate's common name. Tokens are compared by their SHA-256 in
   * constant time against every principal, so timing tells nothing of which
   * one (or how much of one) matched.
   */
  authenticate(presented: PresentedCredentials): Principal {
    if (presented.token !== undefined) {
      const digest = createHash("sha256").update(presented.token, "utf8").digest();
      let found: Principal | undefined;
      for (const principal of this.principals) {
        if (principal.tokenSha256 !== undefined && timingSafeEqual(principal.tokenSha256, digest)) found ??= principal;
      }
      if (found) return found;
      throw new UnauthenticatedError("the bearer token matches no principal");
    }
    if (presented.certCommonName !== undefined) {
      const found = this.principals.find((principal) => principal.certCommonName === presented.certCommonName);
      if (found) return found;
      throw new UnauthenticatedError("the client certificate's common name matches no principal");
    }
    throw new UnauthenticatedError(
      'credentials are required: send "authorization: Bearer <token>" metadata, or a client certificate under mutual TLS',
    );
  }

  /** admin on a prefix allows every action there. */
  allows(principal: Principal, action: Action, resource: string): boolean {
    return principal.grants.some(
      (grant) => resource.startsWith(grant.resourcePrefix) && (grant.actions.has(action) || grant.actions.has("admin")),
    );
  }

  /** Throws PERMISSION_DENIED naming the principal, the action and the resource. */
  require(principal: Principal, action: Action, resource: string): void {
    if (!this.allows(principal, action, resource)) throw new PermissionDeniedError(principal.name, action, resource);
  }

  /** Every resource starting with `prefix` is covered: a grant of `action` whose prefix `prefix` starts with. */
  requirePrefix(principal: Principal, action: Action, prefix: string): void {
    const covered = principal.grants.some(
      (grant) => prefix.startsWith(grant.resourcePrefix) && (grant.actions.has(action) || grant.actions.has("admin")),
    );
    if (!covered) throw new PermissionDeniedError(principal.name, action, `${prefix}*`);
  }

  /** For calls that are not about one resource (listings): some grant of `action` anywhere. */
  requireAny(principal: Principal, action: Action): void {
    if (!principal.grants.some((grant) => grant.actions.has(action) || grant.actions.has("admin"))) {
      throw new PermissionDeniedError(principal.name, action, undefined);
    }
  }
}

/**
 * What a call presented, from its `authorization` header or metadata value
 * (only "Bearer <token>" counts) and the subject CN of a client certificate
 * the TLS handshake verified.
 */
export function presentedCredentials(authorization: unknown, certCommonName: unknown): PresentedCredentials {
  const token = typeof authorization === "string" ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization)?.[1] : undefined;
  return {
    ...(token === undefined ? {} : { token }),
    ...(typeof certCommonName === "string" && certCommonName !== "" ? { certCommonName } : {}),
  };
}
