import type { ServiceDefinition } from "@grpc/grpc-js";

/**
 * A response already in protobuf bytes (a cached listing assembled from
 * per-entry bytes, see LockListing): the service's serializer sends it as it
 * is. Handlers return it through preEncoded(), typed as the message it encodes.
 */
class PreEncoded {
  constructor(readonly bytes: Buffer) {}
}

/** `bytes` (the encoding of a T) where a handler must return a T. */
export function preEncoded<T>(bytes: Buffer): T {
  return new PreEncoded(bytes) as unknown as T;
}

/** The same service with response serializers that pass pre-encoded responses through. */
export function withPreEncodedResponses<S extends ServiceDefinition>(definition: S): S {
  const passing: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    passing[name] = {
      ...method,
      responseSerialize: (value: unknown) => (value instanceof PreEncoded ? value.bytes : method.responseSerialize(value)),
    };
  }
  return passing as S;
}
