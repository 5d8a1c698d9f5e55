import type { ServiceDefinition } from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors.ts";

/**
 * What a request that is not valid protobuf for its method becomes. grpc-js
 * answers a deserializer's exception with INTERNAL ("Error deserializing
 * request"), a status the contract keeps for file-system errors; the call
 * adapter answers this marker with INVALID_ARGUMENT instead.
 */
export class UndecodableRequest {
  constructor(readonly reason: string) {}

  error(): InvalidArgumentError {
    return new InvalidArgumentError("request", `is not a valid protobuf message for this method (${this.reason})`);
  }
}

/** The same service with deserializers that return an UndecodableRequest instead of throwing. */
export function withTolerantDeserializers<S extends ServiceDefinition>(definition: S): S {
  const tolerant: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    tolerant[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new UndecodableRequest((err as Error).message.slice(0, 200));
        }
      },
    };
  }
  return tolerant as S;
}
