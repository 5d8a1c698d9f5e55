// Promise wrappers over the generated grpc.health.v1 and grpc.reflection.v1
// clients, for tests that look at a running service from the outside.
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { credentials, Metadata, type ClientReadableStream, type ServiceError } from "@grpc/grpc-js";
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthClient,
  type HealthCheckResponse,
} from "../../src/gen/grpc/health/v1/health.ts";
import {
  ServerReflectionClient,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../src/gen/grpc/reflection/v1/reflection.ts";
import { ServerReflectionClient as ServerReflectionAlphaClient } from "../../src/gen/grpc/reflection/v1alpha/reflection.ts";
import { ReflectionError } from "../../src/grpc/reflection-client.ts";

const DEFAULT_DEADLINE_MS = 10_000;
// A connection reset while connecting (seen once under Deno, in CI) is
// retried until the deadline instead of failing the call at once; a service
// that is really gone still fails it, at the deadline.

/** "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN", "UNKNOWN" (or the number if the server sent an unnamed value). */
/** Resolves once the client's channel is connected (reconnecting meanwhile), or rejects at the deadline. */
function ready(client: HealthClient, deadlineMs: number): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + deadlineMs, (err) => (err ? reject(err) : resolve())));
}

export function statusName(status: ServingStatus): string {
  return ServingStatus[status] ?? String(status);
}

/** Health.Check; rejects with the gRPC error (NOT_FOUND for an unknown service). */
export async function healthCheck(address: string, service: string, deadlineMs = DEFAULT_DEADLINE_MS): Promise<string> {
  const client = new HealthClient(address, credentials.createInsecure());
  try {
    await ready(client, deadlineMs);
    return await new Promise<string>((resolve, reject) =>
      client.check({ service }, new Metadata(), { deadline: Date.now() + deadlineMs }, (err: ServiceError | null, response: HealthCheckResponse) =>
        err ? reject(err) : resolve(statusName(response.status)),
      ),
    );
  } finally {
    client.close();
  }
}

/** Health.List: service name → status name. */
export async function healthList(address: string, deadlineMs = DEFAULT_DEADLINE_MS): Promise<Record<string, string>> {
  const client = new HealthClient(address, credentials.createInsecure());
  try {
    await ready(client, deadlineMs);
    return await new Promise<Record<string, string>>((resolve, reject) =>
      client.list({}, new Metadata(), { deadline: Date.now() + deadlineMs }, (err, response) =>
        err
          ? reject(err)
          : resolve(Object.fromEntries(Object.entries(response.statuses).map(([name, s]) => [name, statusName(s.status)]))),
      ),
    );
  } finally {
    client.close();
  }
}

/** The end of a Watch stream: undefined when the server ended it with OK. */
export type WatchEnd = ServiceError | undefined;

export interface HealthWatch extends AsyncIterable<string> {
  /** The next status the server sent (queued in order); rejects if the stream ends first. */
  next(): Promise<string>;
  /** Waits, skipping other statuses, until `status` arrives; rejects if the stream ends first. */
  until(status: string): Promise<void>;
  /** Resolves when the stream ends (OK → undefined, else the error; a cancel() gives CANCELLED). */
  readonly ended: Promise<WatchEnd>;
  cancel(): void;
}

/** Health.Watch as a queue of status names. */
export function watchHealth(address: string, service: string): HealthWatch {
  const client = new HealthClient(address, credentials.createInsecure());
  const call: ClientReadableStream<HealthCheckResponse> = client.watch({ service });
  const queued: string[] = [];
  const waiting: Array<{ resolve: (status: string) => void; reject: (err: Error) => void }> = [];
  let end: { value: WatchEnd } | undefined;
  let resolveEnded!: (value: WatchEnd) => void;
  const ended = new Promise<WatchEnd>((resolve) => (resolveEnded = resolve));
  const finish = (value: WatchEnd) => {
    if (end) return;
    end = { value };
    client.close();
    resolveEnded(value);
    for (const waiter of waiting.splice(0)) waiter.reject(endedError(value));
  };
  call.on("data", (response: HealthCheckResponse) => {
    const name = statusName(response.status);
    const waiter = waiting.shift();
    if (waiter) waiter.resolve(name);
    else queued.push(name);
  });
  call.on("error", (err: ServiceError) => finish(err));
  call.on("end", () => finish(undefined));
  // 'end' does not come when the status is an error; 'status' always does.
  call.on("status", (s: { code: number }) => {
    if (s.code === 0) finish(undefined);
  });
  const next = (): Promise<string> => {
    const value = queued.shift();
    if (value !== undefined) return Promise.resolve(value);
    if (end) return Promise.reject(endedError(end.value));
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
  return {
    next,
    async until(status: string) {
      while ((await next()) !== status);
    },
    ended,
    cancel: () => call.cancel(),
    async *[Symbol.asyncIterator]() {
      for (;;) {
        try {
          yield await next();
        } catch (err) {
          if (end) return;
          throw err;
        }
      }
    },
  };
}

function endedError(value: WatchEnd): Error {
  return new Error(`the Watch stream ended (${value === undefined ? "OK" : `${value.code} ${value.details}`})`);
}

export type ReflectionVersion = "v1" | "v1alpha";

/**
 * Sends reflection requests on one ServerReflectionInfo stream and resolves
 * with the answers in order. The stream is closed afterwards.
 */
export function reflect(
  address: string,
  requests: Array<Partial<ServerReflectionRequest>>,
  version: ReflectionVersion = "v1",
): Promise<ServerReflectionResponse[]> {
  const Client = version === "v1" ? ServerReflectionClient : ServerReflectionAlphaClient;
  const client = new Client(address, credentials.createInsecure());
  return new Promise<ServerReflectionResponse[]>((resolve, reject) => {
    const call = client.serverReflectionInfo({ deadline: Date.now() + DEFAULT_DEADLINE_MS });
    const responses: ServerReflectionResponse[] = [];
    call.on("data", (response: ServerReflectionResponse) => {
      responses.push(response);
      if (responses.length === requests.length) call.end();
    });
    call.on("error", reject);
    call.on("end", () =>
      responses.length === requests.length
        ? resolve(responses)
        : reject(new Error(`reflection stream ended after ${responses.length} of ${requests.length} answers`)),
    );
    for (const request of requests) call.write({ host: "", ...request });
  }).finally(() => client.close());
}

/** Thrown when the server answers a reflection request with an ErrorResponse. */
export { ReflectionError };

async function reflectOne(address: string, request: Partial<ServerReflectionRequest>): Promise<ServerReflectionResponse> {
  const [response] = await reflect(address, [request]);
  if (response!.errorResponse) throw new ReflectionError(response!.errorResponse.errorCode, response!.errorResponse.errorMessage);
  return response!;
}

/** Reflection list_services: the full names of the services the server has. */
export async function listServices(address: string): Promise<string[]> {
  const response = await reflectOne(address, { listServices: "" });
  return (response.listServicesResponse?.service ?? []).map((service) => service.name);
}

/** The decoded FileDescriptorProtos answering file_containing_symbol (the defining file first). */
export async function fileContainingSymbol(address: string, symbol: string): Promise<FileDescriptorProto[]> {
  const response = await reflectOne(address, { fileContainingSymbol: symbol });
  return decodeFiles(response);
}

/** The decoded FileDescriptorProtos answering file_by_filename (the file first). */
export async function fileByFilename(address: string, filename: string): Promise<FileDescriptorProto[]> {
  const response = await reflectOne(address, { fileByFilename: filename });
  return decodeFiles(response);
}

function decodeFiles(response: ServerReflectionResponse): FileDescriptorProto[] {
  const files = response.fileDescriptorResponse?.fileDescriptorProto ?? [];
  return files.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
}

export interface DescribedMethod {
  name: string;
  /** Fully qualified, without the leading dot. */
  inputType: string;
  outputType: string;
  clientStreaming: boolean;
  serverStreaming: boolean;
}

/**
 * A service as reflection describes it, from file_containing_symbol:
 * `methods` are the method names in declaration order.
 */
export async function describeService(
  address: string,
  name: string,
): Promise<{ methods: string[]; methodDetails: DescribedMethod[]; file: string }> {
  const files = await fileContainingSymbol(address, name);
  for (const file of files) {
    for (const service of file.service) {
      if (qualify(file.package, service.name) !== name) continue;
      const methodDetails = service.method.map((method) => ({
        name: method.name,
        inputType: method.inputType.replace(/^\./, ""),
        outputType: method.outputType.replace(/^\./, ""),
        clientStreaming: method.clientStreaming,
        serverStreaming: method.serverStreaming,
      }));
      return { methods: methodDetails.map((method) => method.name), methodDetails, file: file.name };
    }
  }
  throw new Error(`reflection answered for ${name} without a file that defines it (files: ${files.map((f) => f.name).join(", ")})`);
}

function qualify(pkg: string, name: string): string {
  return pkg === "" ? name : `${pkg}.${name}`;
}
