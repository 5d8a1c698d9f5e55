import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";

/**
 * Adds `authorization: Bearer <token>` to every call of a channel. An
 * interceptor rather than call credentials, which grpc-js refuses to combine
 * with a plaintext channel (a service on loopback with --auth-file and no TLS).
 */
export function bearerTokenInterceptor(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set("authorization", value);
        next(metadata, listener);
      },
    });
}
