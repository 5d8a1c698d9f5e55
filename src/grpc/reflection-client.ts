import { create, createFileRegistry, fromBinary, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { Metadata, status, type ClientDuplexStream, type ServiceError } from "@grpc/grpc-js";
import { channelCredentials, tokenOptions, type ChannelSecurity } from "../client/channel.ts";
import {
  ServerReflectionClient,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../gen/grpc/reflection/v1/reflection.ts";
import { ServerReflectionClient as ServerReflectionAlphaClient } from "../gen/grpc/reflection/v1alpha/reflection.ts";

// A client of gRPC server reflection that turns what a server says about
// itself into a @bufbuild/protobuf FileRegistry: with it, any server's
// messages can be read and written as JSON without its .proto files.

/** The server answered a reflection request with an error (say, an unknown symbol). */
export class ReflectionError extends Error {
  constructor(
    readonly code: status,
    readonly details: string,
  ) {
    super(`${status[code] ?? code}: ${details}`);
    this.name = "ReflectionError";
  }
}

type Request = Partial<ServerReflectionRequest>;

/** One ServerReflectionInfo stream: requests are answered in order. */
class ReflectionStream {
  private readonly pending: Array<{ resolve: (r: ServerReflectionResponse) => void; reject: (e: Error) => void }> = [];
  private failure: Error | undefined;

  constructor(private readonly call: ClientDuplexStream<ServerReflectionRequest, ServerReflectionResponse>) {
    call.on("data", (response: ServerReflectionResponse) => this.pending.shift()?.resolve(response));
    const fail = (err: Error) => {
      this.failure ??= err;
      for (const waiter of this.pending.splice(0)) waiter.reject(err);
    };
    call.on("error", fail);
    call.on("end", () => fail(new Error("the server ended the reflection stream")));
  }

  ask(request: Request): Promise<ServerReflectionResponse> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.call.write({ host: "", ...request });
    });
  }

  close(): void {
    this.call.end();
  }
}

export class ReflectionClient {
  private readonly clients: Array<ServerReflectionClient | ServerReflectionAlphaClient>;
  private stream: Promise<ReflectionStream> | undefined;

  /** Every request must be answered within `deadlineMs` of opening the stream. */
  constructor(
    address: string,
    private readonly deadlineMs = 10_000,
    security: ChannelSecurity = {},
  ) {
    const channel = channelCredentials(security.tls);
    const options = tokenOptions(security.token);
    this.clients = [new ServerReflectionClient(address, channel, options), new ServerReflectionAlphaClient(address, channel, options)];
  }

  /** The full names of the services the server has, as it lists them. */
  async listServices(): Promise<string[]> {
    const response = await this.ask({ listServices: "" });
    return (response.listServicesResponse?.service ?? []).map((service) => service.name);
  }

  /**
   * A registry with the file that declares `symbol` (a service, method or
   * type) and everything it imports, asking again for any import the server
   * skipped.
   */
  async registryFor(symbols: string[]): Promise<FileRegistry> {
    const files = new Map<string, FileDescriptorProto>();
    const add = (response: ServerReflectionResponse) => {
      for (const bytes of response.fileDescriptorResponse?.fileDescriptorProto ?? []) {
        const file = fromBinary(FileDescriptorProtoSchema, bytes);
        files.set(file.name, file);
      }
    };
    for (const symbol of symbols) add(await this.ask({ fileContainingSymbol: symbol }));
    for (;;) {
      const missing = [...files.values()].flatMap((file) => file.dependency).filter((name) => !files.has(name));
      if (missing.length === 0) break;
      for (const name of new Set(missing)) add(await this.ask({ fileByFilename: name }));
    }
    return createFileRegistry(create(FileDescriptorSetSchema, { file: importsFirst(files) }));
  }

  close(): void {
    void this.stream?.then((s) => s.close(), () => {});
    for (const client of this.clients) client.close();
  }

  private async ask(request: Request): Promise<ServerReflectionResponse> {
    const stream = await (this.stream ??= this.open());
    const response = await stream.ask(request);
    if (response.errorResponse) throw new ReflectionError(response.errorResponse.errorCode, response.errorResponse.errorMessage);
    return response;
  }

  /**
   * A stream on v1, or on v1alpha for servers that only have that (older
   * grpc-go, grpc-java): the messages are the same, only the path differs.
   */
  private async open(): Promise<ReflectionStream> {
    let unimplemented: Partial<ServiceError> | undefined;
    for (const client of this.clients) {
      const stream = new ReflectionStream(client.serverReflectionInfo(new Metadata(), { deadline: Date.now() + this.deadlineMs }));
      try {
        await stream.ask({ listServices: "" }); // UNIMPLEMENTED shows only once something is asked
        return stream;
      } catch (err) {
        if ((err as Partial<ServiceError>).code !== status.UNIMPLEMENTED) throw err;
        unimplemented = err as Partial<ServiceError>;
      }
    }
    throw new ReflectionError(status.UNIMPLEMENTED, `the server has no gRPC reflection, neither v1 nor v1alpha (${unimplemented?.details})`);
  }
}

/**
 * The files with every file after those it imports: createFileRegistry reads
 * a FileDescriptorSet in order, and servers send the asked-for file first.
 */
function importsFirst(files: Map<string, FileDescriptorProto>): FileDescriptorProto[] {
  const ordered: FileDescriptorProto[] = [];
  const placed = new Set<string>();
  const place = (file: FileDescriptorProto) => {
    if (placed.has(file.name)) return;
    placed.add(file.name); // before the imports: a cycle (invalid anyway) cannot loop
    for (const name of file.dependency) {
      const dependency = files.get(name);
      if (dependency) place(dependency);
    }
    ordered.push(file);
  };
  for (const file of files.values()) place(file);
  return ordered;
}
