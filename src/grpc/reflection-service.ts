import { createFileRegistry, fromBinary, toBinary, type DescFile, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { DESCRIPTOR_SET_BASE64 } from "../gen/descriptor-set.ts";
import type {
  ServerReflectionRequest,
  ServerReflectionResponse,
  ServerReflectionServer,
} from "../gen/grpc/reflection/v1/reflection.ts";
import { bidi } from "./call-adapter.ts";

// grpc.reflection.v1.ServerReflection (and v1alpha, the same messages under
// another package, which grpcurl and many clients still ask for first), over
// the FileDescriptorSet embedded at build time: nothing is read from disk, so
// it works in the single executable and under Deno, where @grpc/reflection
// (which loads its reflection.proto from __dirname) does not.

type Answer = Omit<ServerReflectionResponse, "validHost" | "originalRequest">;

/** The embedded descriptors: every .proto under proto/ and what they import. */
export function embeddedRegistry(): FileRegistry {
  return createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, "base64")));
}

/**
 * Answers reflection requests about `services` (the full names the server
 * registered) from `registry`. One instance serves every stream.
 */
export class ReflectionIndex {
  private readonly encoded = new Map<string, Buffer>();

  constructor(
    private readonly registry: FileRegistry,
    private readonly services: string[],
  ) {
    for (const name of services) {
      if (!registry.getService(name)) throw new Error(`reflection: no descriptor for the served service ${name}`);
    }
  }

  /**
   * The answer to one request. `sent` holds the files already sent on this
   * stream: the protocol lets the server skip those among the dependencies
   * (the asked-for file itself is always sent), as grpc-go does.
   */
  answer(request: ServerReflectionRequest, sent: Set<string>): Answer {
    if (request.listServices !== undefined) {
      return { listServicesResponse: { service: this.services.map((name) => ({ name })) } };
    }
    if (request.fileByFilename !== undefined) {
      const file = this.registry.getFile(request.fileByFilename);
      return file ? this.files(file, sent) : notFound(`file ${JSON.stringify(request.fileByFilename)} not found`);
    }
    if (request.fileContainingSymbol !== undefined) {
      const file = this.fileOfSymbol(request.fileContainingSymbol);
      return file ? this.files(file, sent) : notFound(`symbol ${JSON.stringify(request.fileContainingSymbol)} not found`);
    }
    if (request.fileContainingExtension !== undefined) {
      const { containingType, extensionNumber } = request.fileContainingExtension;
      const message = this.registry.getMessage(containingType);
      const extension = message && this.registry.getExtensionFor(message, extensionNumber);
      return extension
        ? this.files(extension.file, sent)
        : notFound(`extension ${extensionNumber} of ${JSON.stringify(containingType)} not found`);
    }
    if (request.allExtensionNumbersOfType !== undefined) {
      const typeName = request.allExtensionNumbersOfType;
      if (!this.registry.getMessage(typeName)) return notFound(`type ${JSON.stringify(typeName)} not found`);
      const numbers: number[] = [];
      for (const desc of this.registry) {
        if (desc.kind === "extension" && desc.extendee.typeName === typeName) numbers.push(desc.number);
      }
      return { allExtensionNumbersResponse: { baseTypeName: typeName, extensionNumber: numbers.sort((a, b) => a - b) } };
    }
    return { errorResponse: { errorCode: status.INVALID_ARGUMENT, errorMessage: "the request asks for nothing this server knows" } };
  }

  /**
   * The file that declares a fully qualified symbol: a type or service, or a
   * member of one (method, field, oneof, enum value). Enum values are scoped
   * like their enum, as in C++: `pkg.Msg.VALUE` and `pkg.VALUE`.
   */
  private fileOfSymbol(symbol: string): DescFile | undefined {
    const name = symbol.startsWith(".") ? symbol.slice(1) : symbol;
    const desc = this.registry.get(name);
    if (desc) return desc.file;
    const dot = name.lastIndexOf(".");
    const parentName = dot < 0 ? "" : name.slice(0, dot);
    const member = name.slice(dot + 1);
    const parent = this.registry.get(parentName);
    switch (parent?.kind) {
      case "service":
        return parent.methods.some((method) => method.name === member) ? parent.file : undefined;
      case "message": {
        const found =
          parent.fields.some((field) => field.name === member) ||
          parent.oneofs.some((oneof) => oneof.name === member) ||
          parent.nestedEnums.some((nested) => nested.values.some((value) => value.name === member));
        return found ? parent.file : undefined;
      }
      case undefined:
        // A package: a value of one of its top-level enums.
        for (const file of this.registry.files) {
          if (file.proto.package !== parentName) continue;
          if (file.enums.some((e) => e.values.some((value) => value.name === member))) return file;
        }
        return undefined;
      default:
        return undefined;
    }
  }

  /** The file, then every file it imports (transitively) not yet sent on this stream. */
  private files(file: DescFile, sent: Set<string>): Answer {
    const out: Buffer[] = [];
    const seen = new Set<string>();
    const visit = (f: DescFile, asked: boolean) => {
      if (seen.has(f.proto.name)) return;
      seen.add(f.proto.name);
      if (asked || !sent.has(f.proto.name)) out.push(this.encode(f));
      sent.add(f.proto.name);
      for (const dependency of f.dependencies) visit(dependency, false);
    };
    visit(file, true);
    return { fileDescriptorResponse: { fileDescriptorProto: out } };
  }

  private encode(file: DescFile): Buffer {
    let bytes = this.encoded.get(file.proto.name);
    if (!bytes) {
      bytes = Buffer.from(toBinary(FileDescriptorProtoSchema, file.proto));
      this.encoded.set(file.proto.name, bytes);
    }
    return bytes;
  }
}

function notFound(message: string): Answer {
  return { errorResponse: { errorCode: status.NOT_FOUND, errorMessage: message } };
}

/** The ServerReflection implementation; streams end when `shutdown` aborts. */
export function reflectionService(index: ReflectionIndex, shutdown: AbortSignal): ServerReflectionServer {
  async function* serverReflectionInfo(requests: AsyncIterable<ServerReflectionRequest>): AsyncIterable<ServerReflectionResponse> {
    const sent = new Set<string>();
    for await (const request of requests) {
      yield { validHost: request.host, originalRequest: request, ...index.answer(request, sent) };
    }
  }
  return { serverReflectionInfo: bidi(serverReflectionInfo, shutdown) };
}
