import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";
import { InvalidArgumentError } from "../core/errors.ts";
import { toServiceError } from "./status-map.ts";

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

/**
 * For handlers that do not go through call-adapter.ts (grpc.health.v1):
 * unary and server-streaming calls whose request is an UndecodableRequest
 * get INVALID_ARGUMENT before the handler sees them.
 */
export function refusingUndecodable<T extends UntypedServiceImplementation>(handlers: T): T {
  const wrapped: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(handlers)) {
    wrapped[name] = (call: { request?: unknown; emit(event: string, error: unknown): boolean }, callback?: (error: unknown) => void) => {
      if (call.request instanceof UndecodableRequest) {
        const error = toServiceError(call.request.error());
        return callback ? callback(error) : void call.emit("error", error);
      }
      return (handler as (call: unknown, callback?: unknown) => void)(call, callback);
    };
  }
  return wrapped as T;
}
