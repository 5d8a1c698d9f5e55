// npm run chaos -- [--duration 60s] [--seed N] ...: the randomized campaign
// of docs/chaos.md. Exits 0 when the checker finds nothing, 1 when it does,
// 2 on bad usage.
import { parseDuration } from "../../src/cli/duration.ts";
import { DEFAULT_CAMPAIGN, randomSeed, runCampaign, type CampaignOptions } from "./campaign.ts";
import { formatReport } from "./report.ts";
import { SERVICE_RUNTIMES, type ServiceRuntime } from "./service-control.ts";

const USAGE = `usage: npm run chaos -- [--duration D] [--seed N] [--grpc N] [--python N] [--store N]
                       [--resources N] [--ttl D] [--max-wait D] [--runtime R] [--keep] [--json]

  --duration D   how long faults are injected (default 60s); a quiet period follows
  --seed N       the seed of every random choice (default: a new one, printed)
  --grpc N       participants using the TypeScript LockClient (default ${DEFAULT_CAMPAIGN.grpc})
  --python N     participants using the Python FileLock (default ${DEFAULT_CAMPAIGN.python})
  --store N      participants using LeaseFileStore directly (default ${DEFAULT_CAMPAIGN.store})
  --resources N  resources they contend on, 1 to 8 (default ${DEFAULT_CAMPAIGN.resources})
  --ttl D        every lease's ttl (default ${DEFAULT_CAMPAIGN.ttlMs / 1000}s)
  --max-wait D   longest wait of one acquisition (default ${DEFAULT_CAMPAIGN.maxWaitMs / 1000}s)
  --runtime R    what runs the service: node (default), binary (dist/mcp-lockd,
                 from npm run build:binary) or deno
  --keep         keep the temp dir (histories, logs, lock dir); it is always kept when the run is not clean
  --json         print the result as JSON instead of the table
`;

function parse(argv: string[]): (CampaignOptions & { json: boolean }) | string {
  const options: CampaignOptions & { json: boolean } = { ...DEFAULT_CAMPAIGN, seed: randomSeed(), json: false };
  const count = (value: string | undefined, flag: string, min: number, max: number) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag}: expected an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    return n;
  };
  try {
    for (let i = 0; i < argv.length; i++) {
      const flag = argv[i]!;
      const value = () => argv[++i];
      switch (flag) {
        case "--duration": options.durationMs = parseDuration(value() ?? "", flag); break;
        case "--seed": options.seed = count(value(), flag, 0, 2 ** 32 - 1); break;
        case "--grpc": options.grpc = count(value(), flag, 0, 16); break;
        case "--python": options.python = count(value(), flag, 0, 16); break;
        case "--store": options.store = count(value(), flag, 0, 16); break;
        case "--resources": options.resources = count(value(), flag, 1, 8); break;
        case "--ttl": options.ttlMs = parseDuration(value() ?? "", flag); break;
        case "--max-wait": options.maxWaitMs = parseDuration(value() ?? "", flag); break;
        case "--runtime": {
          const runtime = value() as ServiceRuntime;
          if (!SERVICE_RUNTIMES.includes(runtime)) throw new Error(`--runtime: expected one of ${SERVICE_RUNTIMES.join(", ")}`);
          options.runtime = runtime;
          break;
        }
        case "--keep": options.keep = true; break;
        case "--json": options.json = true; break;
        case "--help": case "-h": return USAGE;
        default: throw new Error(`unknown option ${flag}`);
      }
    }
    if (options.ttlMs < 1_000 || options.ttlMs > 60_000) throw new Error("--ttl: expected 1s to 60s");
    if (options.durationMs < 30_000) throw new Error("--duration: expected at least 30s (room for the long stops)");
    if (options.grpc + options.python + options.store < 2) throw new Error("at least two participants are needed to contend");
  } catch (err) {
    return `${(err as Error).message}\n\n${USAGE}`;
  }
  return options;
}

const parsed = parse(process.argv.slice(2));
if (typeof parsed === "string") {
  const help = process.argv.includes("--help") || process.argv.includes("-h");
  (help ? process.stdout : process.stderr).write(parsed);
  process.exit(help ? 0 : 2);
}
const result = await runCampaign(parsed);
process.stdout.write(parsed.json ? JSON.stringify(result, null, 2) + "\n" : formatReport(result));
process.exit(result.clean ? 0 : 1);
