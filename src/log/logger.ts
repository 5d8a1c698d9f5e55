import pino from "pino";

// The service's log: text for people at a terminal, JSON lines (pino) for
// log shippers. Fields never include a lease id or a bearer token: callers
// pass only resource, holder, fencing token, durations and errors.

export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface Logger {
  readonly level: LogLevel;
  enabled(level: LogLevel): boolean;
  error(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  debug(message: string, fields?: LogFields): void;
}

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export interface LoggerOptions {
  format: LogFormat;
  level: LogLevel;
  /** Where text lines go (default: stderr). JSON goes to file descriptor `fd` (default 2). */
  write?: (line: string) => void;
  fd?: number;
}

export function createLogger(options: LoggerOptions): Logger {
  const { level } = options;
  const enabled = (wanted: LogLevel) => RANK[wanted] <= RANK[level];
  if (options.format === "json") {
    // A synchronous destination: no worker-thread transport (they break in a
    // bundle), and nothing is lost when the process exits right after a line.
    const json = pino(
      { level, base: { service: "mcp-lockd", pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (label) => ({ level: label }) } },
      pino.destination({ fd: options.fd ?? 2, sync: true }),
    );
    const at = (wanted: LogLevel) => (message: string, fields?: LogFields) => {
      if (enabled(wanted)) json[wanted](withoutUndefined(fields) ?? {}, message);
    };
    return { level, enabled, error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
  }
  const write = options.write ?? ((line: string) => void process.stderr.write(line));
  const at = (wanted: LogLevel) => (message: string, fields?: LogFields) => {
    if (!enabled(wanted)) return;
    const prefix = wanted === "info" ? "" : `${wanted}: `;
    write(`${new Date().toISOString()} mcp-lockd: ${prefix}${message}${formatFields(fields)}\n`);
  };
  return { level, enabled, error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
}

function withoutUndefined(fields: LogFields | undefined): LogFields | undefined {
  if (fields === undefined) return undefined;
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

/** ` key=value ...`, strings quoted when they hold spaces, quotes or control characters. */
function formatFields(fields: LogFields | undefined): string {
  if (fields === undefined) return "";
  let text = "";
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue;
    const shown = typeof value === "string" && (value === "" || /[\s"=\u0000-\u001f\u007f]/.test(value)) ? JSON.stringify(value) : String(value);
    text += ` ${key}=${shown}`;
  }
  return text;
}
