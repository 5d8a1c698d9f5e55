import { ACTIONS, AccessPolicy, type Action, type Grant, type Principal } from "./access-policy.ts";

// The --auth-file format (docs/security.md):
//   {"principals": [{"name": "ci", "token_sha256": "<64 lowercase hex>",
//     "cert_common_name": "ci-runner",
//     "grants": [{"resource_prefix": "ci-", "actions": ["lock", "read"]}]}]}
// Unknown keys are errors: a typo in a security setting must not pass quietly.

export class AuthFileError extends Error {
  override name = "AuthFileError";
}

const PRINCIPAL_KEYS = new Set(["name", "token_sha256", "cert_common_name", "grants"]);
const GRANT_KEYS = new Set(["resource_prefix", "actions"]);

export function parseAuthFile(text: string): AccessPolicy {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new AuthFileError(`not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(json) || !Array.isArray(json.principals)) throw new AuthFileError(`expected {"principals": [...]}`);
  const extra = Object.keys(json).filter((key) => key !== "principals");
  if (extra.length > 0) throw new AuthFileError(`unknown key ${JSON.stringify(extra[0])} at the top level`);
  const names = new Set<string>();
  const tokens = new Set<string>();
  const commonNames = new Set<string>();
  const principals = json.principals.map((raw, i): Principal => {
    const at = `principals[${i}]`;
    if (!isObject(raw)) throw new AuthFileError(`${at}: expected an object`);
    for (const key of Object.keys(raw)) if (!PRINCIPAL_KEYS.has(key)) throw new AuthFileError(`${at}: unknown key ${JSON.stringify(key)}`);
    const { name, token_sha256: token, cert_common_name: commonName, grants } = raw;
    if (typeof name !== "string" || name.length === 0 || name.length > 128) throw new AuthFileError(`${at}.name: a string of 1 to 128 characters is required`);
    if (names.has(name)) throw new AuthFileError(`${at}.name: "${name}" appears twice`);
    names.add(name);
    if (token !== undefined && (typeof token !== "string" || !/^[0-9a-f]{64}$/.test(token))) {
      throw new AuthFileError(`${at}.token_sha256: expected 64 lowercase hex digits (the SHA-256 of the token, never the token)`);
    }
    if (typeof token === "string") {
      if (tokens.has(token)) throw new AuthFileError(`${at}.token_sha256: the same token is given to two principals`);
      tokens.add(token);
    }
    if (commonName !== undefined && (typeof commonName !== "string" || commonName.length === 0)) {
      throw new AuthFileError(`${at}.cert_common_name: expected a non-empty string`);
    }
    if (typeof commonName === "string") {
      if (commonNames.has(commonName)) throw new AuthFileError(`${at}.cert_common_name: "${commonName}" is given to two principals`);
      commonNames.add(commonName);
    }
    if (token === undefined && commonName === undefined) {
      throw new AuthFileError(`${at}: needs token_sha256 or cert_common_name, else nobody can act as "${name}"`);
    }
    if (!Array.isArray(grants)) throw new AuthFileError(`${at}.grants: expected an array`);
    return {
      name,
      tokenSha256: typeof token === "string" ? Buffer.from(token, "hex") : undefined,
      certCommonName: typeof commonName === "string" ? commonName : undefined,
      grants: grants.map((grant, j) => parseGrant(grant, `${at}.grants[${j}]`)),
    };
  });
  return new AccessPolicy(principals);
}

function parseGrant(raw: unknown, at: string): Grant {
  if (!isObject(raw)) throw new AuthFileError(`${at}: expected an object`);
  for (const key of Object.keys(raw)) if (!GRANT_KEYS.has(key)) throw new AuthFileError(`${at}: unknown key ${JSON.stringify(key)}`);
  const { resource_prefix: prefix, actions } = raw;
  if (typeof prefix !== "string" || prefix.length > 128) throw new AuthFileError(`${at}.resource_prefix: expected a string of at most 128 characters ("" for all)`);
  if (!Array.isArray(actions) || actions.length === 0) throw new AuthFileError(`${at}.actions: expected a non-empty array of ${ACTIONS.join(", ")}`);
  for (const action of actions) {
    if (!(ACTIONS as readonly unknown[]).includes(action)) {
      throw new AuthFileError(`${at}.actions: ${JSON.stringify(action)} is not one of ${ACTIONS.join(", ")}`);
    }
  }
  return { resourcePrefix: prefix, actions: new Set(actions as Action[]) };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
