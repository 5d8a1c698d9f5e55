// An MCP session as an agent's client has it: the SDK's real Client over
// stdio, spawning `mcp-lockd mcp` (node, Deno or the single executable, as
// MCP_LOCKD_TEST_RUNTIME says) against a real service.
import type { Readable } from "node:stream";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  LoggingMessageNotificationSchema,
  ResourceUpdatedNotificationSchema,
  type CallToolResult,
  type LoggingMessageNotification,
  type Progress,
} from "@modelcontextprotocol/sdk/types.js";
import { cliEnv } from "../cli/client-cli.ts";
import { cliCommand } from "../helpers/service-process.ts";
import { withTimeout } from "../helpers/wait.ts";

export interface McpSession {
  client: Client;
  transport: StdioClientTransport;
  /** The mcp-lockd process's pid. */
  pid: number;
  stderr(): string;
  /** Calls a tool; `onprogress` gets its progress notifications. */
  call(name: string, args: Record<string, unknown>, onprogress?: (progress: Progress) => void): Promise<CallToolResult>;
  /** Resolves with the next logging notification that `match` accepts. */
  nextLog(match: (params: LoggingMessageNotification["params"]) => boolean, timeoutMs?: number): Promise<LoggingMessageNotification["params"]>;
  /** Resolves with the URI of the next notifications/resources/updated. */
  nextResourceUpdate(timeoutMs?: number): Promise<string>;
  close(): Promise<void>;
}

/** Starts `mcp-lockd mcp --address ADDRESS ...extraArgs`; `binary` runs that executable (from `cwd`) instead. */
export async function openMcpSession(
  address: string,
  clientName: string,
  extraArgs: string[] = [],
  options: { binary?: string; cwd?: string } = {},
): Promise<McpSession> {
  const mcpArgs = ["mcp", "--address", address, ...extraArgs];
  const { command, args } = options.binary ? cliCommand(mcpArgs, "binary", options.binary) : cliCommand(mcpArgs);
  const env = cliEnv() as Record<string, string>;
  const transport = new StdioClientTransport({ command, args, env, stderr: "pipe", cwd: options.cwd });
  let stderr = "";
  (transport.stderr as Readable).setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const client = new Client({ name: clientName, version: "1.0.0" });
  const logWaiters = new Set<(params: LoggingMessageNotification["params"]) => void>();
  const updateWaiters = new Set<(uri: string) => void>();
  client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    for (const waiter of [...logWaiters]) waiter(notification.params);
  });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
    for (const waiter of [...updateWaiters]) waiter(notification.params.uri);
  });
  try {
    await withTimeout(client.connect(transport), 20_000, `mcp-lockd mcp to initialize (stderr: ${stderr})`);
  } catch (err) {
    await transport.close();
    throw err;
  }
  return {
    client,
    transport,
    pid: transport.pid!,
    stderr: () => stderr,
    call: (name, args, onprogress) =>
      client.callTool({ name, arguments: args }, undefined, {
        timeout: 30_000,
        ...(onprogress ? { onprogress, resetTimeoutOnProgress: true } : {}),
      }) as Promise<CallToolResult>,
    nextLog: (match, timeoutMs = 10_000) => {
      let waiter!: (params: LoggingMessageNotification["params"]) => void;
      const found = new Promise<LoggingMessageNotification["params"]>((resolve) => {
        waiter = (params) => {
          if (match(params)) resolve(params);
        };
        logWaiters.add(waiter);
      });
      return withTimeout(found, timeoutMs, "a logging notification").finally(() => logWaiters.delete(waiter));
    },
    nextResourceUpdate: (timeoutMs = 10_000) => {
      let waiter!: (uri: string) => void;
      const found = new Promise<string>((resolve) => {
        waiter = resolve;
        updateWaiters.add(waiter);
      });
      return withTimeout(found, timeoutMs, "notifications/resources/updated").finally(() => updateWaiters.delete(waiter));
    },
    close: () => client.close(),
  };
}

/** The text of a tool result. */
export function textOf(result: CallToolResult): string {
  return result.content.map((part) => (part.type === "text" ? part.text : "")).join("");
}
