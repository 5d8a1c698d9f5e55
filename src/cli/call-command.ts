import {
  fromBinary,
  fromJson,
  toBinary,
  toJson,
  type DescEnum,
  type DescField,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescService,
  type FileRegistry,
  type JsonValue,
} from "@bufbuild/protobuf";
import { Client, Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { channelCredentials, tokenOptions, type ChannelSecurity } from "../client/channel.ts";
import { parseArgs } from "node:util";
import { ReflectionClient, ReflectionError } from "../grpc/reflection-client.ts";
import { EXIT_FAILURE, EXIT_USAGE } from "./exit-codes.ts";
import { SERVE_DEFAULTS } from "./serve-options.ts";
import { ERROR_CODE_KEY } from "../grpc/error-metadata.ts";
import { CONNECTION_FLAGS, resolveConnection, UsageError } from "./client-options.ts";
import { parseAddressList } from "../client/address-list.ts";
import { isUnavailable } from "../grpc/service-endpoints.ts";

// `mcp-lockd call`: an example client that knows nothing of lock.proto. It
// learns the services, methods and message types from the server's
// reflection service and calls unary methods with JSON in and JSON out, the
// way grpcurl does. It works against any gRPC server with reflection.

export const CALL_USAGE = `Usage:
  mcp-lockd call [--address HOST:PORT[,HOST:PORT...]] [--timeout SECONDS] list
  mcp-lockd call [--address HOST:PORT[,HOST:PORT...]] [--timeout SECONDS] describe [SYMBOL]
  mcp-lockd call [--address HOST:PORT[,HOST:PORT...]] [--timeout SECONDS] SERVICE/METHOD [JSON]

  list      the services the server has (reflection list_services)
  describe  a service, method, message or enum (every service if no SYMBOL)
  SERVICE/METHOD JSON
            calls a unary method; JSON is the request (default {}), field
            names as in the .proto or in lowerCamelCase; prints the response
            as JSON with every field.
  --address  MCP_LOCKD_ADDRESS (as for the other client commands), else
             MCP_LOCKD_GRPC_LISTEN (where serve listens), else ${SERVE_DEFAULTS.grpcListen};
             several replicas separated by commas: the next is asked when
             one is unavailable
  --timeout  deadline of each call, in seconds (default 10)
  --cacert F, --cert F --key F, --token-file F: TLS, a client certificate and a
             bearer token, as for the other client commands

Example:
  mcp-lockd call mcplockd.v1.LockService/ListLocks '{"resource_prefix": ""}'
`;

/** The server answered with an error (a gRPC status, or reflection's "not found"). */
const EXIT_CALL_FAILED = EXIT_FAILURE;

export interface CallIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

const processIo: CallIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

/** Runs `mcp-lockd call ARGS`; resolves to the exit code. */
export async function runCallCommand(args: string[], io: CallIo = processIo): Promise<number> {
  let parsed;
  try {
    parsed = parseCallArgs(args, io.env);
  } catch (err) {
    io.stderr(`mcp-lockd call: ${(err as Error).message}\n\n${CALL_USAGE}`);
    return EXIT_USAGE;
  }
  // Several addresses are replicas: the first that is not UNAVAILABLE answers.
  for (const [index, address] of parsed.addresses.entries()) {
    const reflection = new ReflectionClient(address, parsed.timeoutMs, parsed.security);
    try {
      io.stdout(await run(parsed, address, reflection));
      return 0;
    } catch (err) {
      if (err instanceof UsageError) {
        io.stderr(`mcp-lockd call: ${err.message}\n`);
        return EXIT_USAGE;
      }
      if (isUnavailable(err) && index + 1 < parsed.addresses.length) continue;
      io.stderr(`mcp-lockd call: ${describeFailure(err, parsed.address)}\n`);
      return EXIT_CALL_FAILED;
    } finally {
      reflection.close();
    }
  }
  throw new Error("unreachable: an address list is never empty");
}

interface CallArgs {
  /** As given, for messages. */
  address: string;
  /** The replicas, in the order they are asked. */
  addresses: string[];
  security: ChannelSecurity;
  timeoutMs: number;
  verb: string;
  operands: string[];
}

function parseCallArgs(args: string[], env: NodeJS.ProcessEnv): CallArgs {
  const { values, positionals } = parseArgs({
    args,
    options: { ...CONNECTION_FLAGS, timeout: { type: "string" } },
    strict: true,
    allowPositionals: true,
  });
  const timeout = Number(values.timeout ?? "10");
  if (!Number.isFinite(timeout) || timeout <= 0) throw new Error(`--timeout ${values.timeout}: expected a number of seconds > 0`);
  const [verb, ...operands] = positionals;
  if (verb === undefined) throw new Error("say what to do: list, describe, or SERVICE/METHOD");
  const max = verb === "list" ? 0 : 1;
  if (operands.length > max) throw new Error(`too many arguments after ${verb}: ${operands.slice(max).join(" ")}`);
  const address = values.address ?? (env.MCP_LOCKD_ADDRESS || undefined) ?? env.MCP_LOCKD_GRPC_LISTEN ?? SERVE_DEFAULTS.grpcListen;
  const { tls, token } = resolveConnection({ ...values, address }, env);
  return {
    address,
    addresses: parseAddressList(address),
    security: { tls, token },
    timeoutMs: timeout * 1000,
    verb,
    operands,
  };
}

async function run(args: CallArgs, address: string, reflection: ReflectionClient): Promise<string> {
  if (args.verb === "list") return (await reflection.listServices()).sort().join("\n") + "\n";
  if (args.verb === "describe") {
    const symbols = args.operands.length > 0 ? args.operands : (await reflection.listServices()).sort();
    const registry = await reflection.registryFor(symbols.map((symbol) => symbol.replace("/", ".")));
    return symbols.map((symbol) => describeSymbol(registry, symbol)).join("\n");
  }
  const slash = args.verb.lastIndexOf("/");
  if (slash <= 0 || slash === args.verb.length - 1) {
    throw new UsageError(`"${args.verb}" is neither list, describe nor SERVICE/METHOD (like mcplockd.v1.LockService/ListLocks)`);
  }
  const serviceName = args.verb.slice(0, slash);
  const methodName = args.verb.slice(slash + 1);
  const registry = await reflection.registryFor([serviceName]);
  const service = registry.getService(serviceName);
  const method = service?.methods.find((m) => m.name === methodName);
  if (!service || !method) {
    const known = service ? `; it has ${service.methods.map((m) => m.name).join(", ")}` : "";
    throw new UsageError(`no method ${methodName} in ${serviceName}${known}`);
  }
  if (method.methodKind !== "unary") {
    throw new UsageError(`${args.verb} is ${method.methodKind.replace("_", " ")}: only unary methods can be called`);
  }
  return callUnary(args, address, registry, method, args.operands[0] ?? "{}");
}

async function callUnary(args: CallArgs, address: string, registry: FileRegistry, method: DescMethod, jsonText: string): Promise<string> {
  let json: JsonValue;
  try {
    json = JSON.parse(jsonText) as JsonValue;
  } catch (err) {
    throw new UsageError(`the request is not JSON: ${(err as Error).message}`);
  }
  let request: Uint8Array;
  try {
    request = toBinary(method.input, fromJson(method.input, json, { registry }));
  } catch (err) {
    throw new UsageError(`the request is not a valid ${method.input.typeName}: ${(err as Error).message}`);
  }
  const client = new Client(address, channelCredentials(args.security.tls), tokenOptions(args.security.token));
  try {
    const response = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        `/${method.parent.typeName}/${method.name}`,
        (bytes: Buffer) => bytes,
        (bytes: Buffer) => bytes,
        Buffer.from(request),
        new Metadata(),
        { deadline: Date.now() + args.timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value!)),
      ),
    );
    const message = fromBinary(method.output, response);
    const out = toJson(method.output, message, { registry, alwaysEmitImplicit: true, useProtoFieldName: true });
    return JSON.stringify(out, null, 2) + "\n";
  } finally {
    client.close();
  }
}

function describeFailure(err: unknown, address: string): string {
  if (err instanceof ReflectionError) return `reflection: ${err.message}`;
  const e = err as Partial<ServiceError> & Error;
  if (typeof e.code === "number" && typeof e.details === "string") {
    const errorCode = e.metadata?.get(ERROR_CODE_KEY)[0];
    const detail = errorCode === undefined ? "" : ` [${String(errorCode)}]`;
    const hint = e.code === status.UNAVAILABLE && /connect|ECONNREFUSED|No connection/i.test(e.details) ? ` (is mcp-lockd serving on ${address}?)` : "";
    return `${status[e.code] ?? e.code}: ${e.details}${detail}${hint}`;
  }
  return e?.message ?? String(err);
}

// ---- describe: the descriptors back as .proto text, with their comments ----

function describeSymbol(registry: FileRegistry, symbol: string): string {
  const name = symbol.replace("/", ".");
  const desc = registry.get(name);
  if (desc?.kind === "service") return `${name} is a service (${desc.file.proto.name}):\n${serviceText(desc)}`;
  if (desc?.kind === "message") return `${name} is a message (${desc.file.proto.name}):\n${messageText(desc, "")}`;
  if (desc?.kind === "enum") return `${name} is an enum (${desc.file.proto.name}):\n${enumText(desc, "")}`;
  const dot = name.lastIndexOf(".");
  const method = registry.getService(name.slice(0, dot))?.methods.find((m) => m.name === name.slice(dot + 1));
  if (method) return `${name} is a method (${method.parent.file.proto.name}):\n${methodText(method, "")}`;
  throw new UsageError(`cannot describe ${symbol}: the server declares it, but it is not a service, method, message or enum`);
}

function serviceText(service: DescService): string {
  const methods = service.methods.map((method) => methodText(method, "  ")).join("");
  return `${comments(service.file, pathOf(service), "")}service ${service.name} {\n${methods}}\n`;
}

function methodText(method: DescMethod, indent: string): string {
  const stream = (yes: boolean) => (yes ? "stream " : "");
  const clientStreams = method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming";
  const serverStreams = method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming";
  return (
    comments(method.parent.file, pathOf(method), indent) +
    `${indent}rpc ${method.name}(${stream(clientStreams)}.${method.input.typeName}) returns (${stream(serverStreams)}.${method.output.typeName});\n`
  );
}

function messageText(message: DescMessage, indent: string): string {
  const inner = indent + "  ";
  const body = [
    ...message.nestedEnums.map((e) => enumText(e, inner)),
    ...message.nestedMessages.filter((m) => !isMapEntry(m)).map((m) => messageText(m, inner)),
    ...message.fields.map((field) => comments(message.file, pathOf(field), inner) + `${inner}${fieldText(field)};\n`),
  ].join("");
  return `${comments(message.file, pathOf(message), indent)}${indent}message ${message.name} {\n${body}${indent}}\n`;
}

function enumText(desc: DescEnum, indent: string): string {
  const inner = indent + "  ";
  const values = desc.values
    .map((value) => comments(desc.file, [...pathOf(desc), 2, desc.values.indexOf(value)], inner) + `${inner}${value.name} = ${value.number};\n`)
    .join("");
  return `${comments(desc.file, pathOf(desc), indent)}${indent}enum ${desc.name} {\n${values}${indent}}\n`;
}

function fieldText(field: DescField): string {
  let type: string;
  switch (field.fieldKind) {
    case "map":
      type = `map<${scalarName(field.mapKey)}, ${valueType(field.mapKind === "scalar" ? field.scalar : field.mapKind === "enum" ? field.enum : field.message)}>`;
      break;
    case "list":
      type = `repeated ${valueType(field.listKind === "scalar" ? field.scalar : field.listKind === "enum" ? field.enum : field.message)}`;
      break;
    case "scalar":
      type = (field.proto.proto3Optional ? "optional " : "") + valueType(field.scalar);
      break;
    default:
      type = (field.proto.proto3Optional ? "optional " : "") + valueType(field.fieldKind === "enum" ? field.enum : field.message);
  }
  const oneof = field.oneof && !field.proto.proto3Optional ? ` /* oneof ${field.oneof.name} */` : "";
  return `${type} ${field.name} = ${field.number}${oneof}`;
}

/** A scalar type (a ScalarType number), or a message or enum by its full name. */
function valueType(type: number | DescMessage | DescEnum): string {
  return typeof type === "number" ? scalarName(type) : `.${type.typeName}`;
}

// ScalarType (= FieldDescriptorProto.Type) numbers → .proto scalar names.
const SCALAR_NAMES: Record<number, string> = {
  1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32", 8: "bool",
  9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64", 17: "sint32", 18: "sint64",
};

function scalarName(type: number): string {
  return SCALAR_NAMES[type] ?? `scalar${type}`;
}

function isMapEntry(message: DescMessage): boolean {
  return message.proto.options?.mapEntry === true;
}

/**
 * The SourceCodeInfo path of a declaration (descriptor.proto field numbers:
 * file.message_type = 4, enum_type = 5, service = 6; message.field = 2,
 * nested_type = 3, enum_type = 4; service.method = 2).
 */
function pathOf(desc: DescMessage | DescEnum | DescService | DescMethod | DescField): number[] {
  switch (desc.kind) {
    case "service":
      return [6, desc.file.services.indexOf(desc)];
    case "rpc":
      return [...pathOf(desc.parent), 2, desc.parent.methods.indexOf(desc)];
    case "message":
      return desc.parent ? [...pathOf(desc.parent), 3, desc.parent.nestedMessages.indexOf(desc)] : [4, desc.file.messages.indexOf(desc)];
    case "enum":
      return desc.parent ? [...pathOf(desc.parent), 4, desc.parent.nestedEnums.indexOf(desc)] : [5, desc.file.enums.indexOf(desc)];
    case "field":
      return [...pathOf(desc.parent), 2, desc.parent.fields.indexOf(desc)];
  }
}

/** The leading comments of the declaration at `path`, as `//` lines; "" if the server sent no source info. */
function comments(file: DescFile, path: number[], indent: string): string {
  const location = file.proto.sourceCodeInfo?.location.find(
    (l) => l.path.length === path.length && l.path.every((n, i) => n === path[i]),
  );
  const text = location?.leadingComments?.replace(/\n$/, "");
  if (!text) return "";
  return text
    .split("\n")
    .map((line) => `${indent}//${line}`.trimEnd() + "\n")
    .join("");
}
