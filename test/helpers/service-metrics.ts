/**
 * The value of an unlabelled metric (a gauge or counter) in the service's
 * GET /metrics at `httpAddress`; throws when the metric is missing.
 */
export async function metricValue(httpAddress: string, name: string): Promise<number> {
  const response = await fetch(`http://${httpAddress}/metrics`);
  const text = await response.text();
  if (!response.ok) throw new Error(`GET /metrics answered ${response.status}: ${text}`);
  const match = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  if (!match) throw new Error(`no ${name} in GET /metrics`);
  return Number(match[1]);
}

/** mcplockd_keepalive_streams: the KeepAlive streams the service has open now. */
export function keepAliveStreams(httpAddress: string): Promise<number> {
  return metricValue(httpAddress, "mcplockd_keepalive_streams");
}
