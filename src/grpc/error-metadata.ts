// Trailing metadata keys with which the service gives an error's fields in
// structured form, so that clients need not parse messages. Shared by the
// service (status-map.ts) and the clients; documented in docs/client.md.

export const ERROR_CODE_KEY = "mcp-lockd-error-code";
/** The holder is UTF-8 and may be non-ASCII, hence a binary (`-bin`) key. */
export const HOLDER_KEY = "mcp-lockd-holder-bin";
/** ISO 8601, UTC, milliseconds. */
export const EXPIRES_AT_KEY = "mcp-lockd-expires-at";
/** The request field an INVALID_ARGUMENT is about. */
export const FIELD_KEY = "mcp-lockd-field";
