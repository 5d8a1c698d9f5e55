import type { Duration } from "../gen/google/protobuf/duration.ts";

// Milliseconds in protobuf's Duration/Timestamp shape ({seconds, nanos}),
// shared by the service's adapter and the client.

export function msToDuration(ms: number): Duration {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
