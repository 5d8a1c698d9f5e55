// `serve --store file|etcd` and the etcd flags: what the parser makes of
// them, and the usage errors (exit 64, the message naming the flags at fault)
// from the real command line. No etcd is needed: every case fails before
// anything connects.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseServeOptions } from "../../src/cli/serve-options.ts";
import { EXIT_USAGE } from "../../src/cli/exit-codes.ts";
import { CLI_PATH } from "../helpers/service-process.ts";
import { runProcess } from "../helpers/run-process.ts";

/** The test runner's environment without any MCP_LOCKD_* variable, plus `extra`. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith("MCP_LOCKD_")) env[key] = value;
  return { ...env, ...extra };
}

const ETCD = ["--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379,http://127.0.0.1:22379"];

test("--store file is the default and keeps the lock dir; --store etcd takes endpoints, prefix, TLS files and a token floor", () => {
  assert.equal(parseServeOptions([], {}).lockDir, "./.mcp-gateway");
  assert.equal(parseServeOptions([], {}).etcd, undefined);
  assert.equal(parseServeOptions(["--store", "file", "--lock-dir", "/x"], {}).lockDir, "/x");

  const etcd = parseServeOptions(ETCD, {});
  assert.equal(etcd.lockDir, undefined);
  assert.deepEqual(etcd.etcd, {
    endpoints: ["http://127.0.0.1:2379", "http://127.0.0.1:22379"],
    prefix: "/mcp-lockd/",
    cacertFile: undefined,
    certFile: undefined,
    keyFile: undefined,
    tokenFloor: 0,
  });
  const full = parseServeOptions(
    ["--store", "etcd", "--etcd-endpoints", "https://a:2379", "--etcd-prefix", "/team/locks/", "--etcd-cacert", "ca.pem", "--etcd-cert", "c.pem", "--etcd-key", "k.pem", "--etcd-token-floor", "4096"],
    {},
  );
  assert.deepEqual(full.etcd, { endpoints: ["https://a:2379"], prefix: "/team/locks/", cacertFile: "ca.pem", certFile: "c.pem", keyFile: "k.pem", tokenFloor: 4096 });
});

test("--fsync places the file store's fsyncs: auto by default, pool or loop on request, from the flag or MCP_LOCKD_FSYNC", () => {
  assert.equal(parseServeOptions([], {}).fsync, "auto");
  assert.equal(parseServeOptions(["--fsync", "loop"], {}).fsync, "loop");
  assert.equal(parseServeOptions(["--fsync", "pool"], {}).fsync, "pool");
  assert.equal(parseServeOptions([], { MCP_LOCKD_FSYNC: "loop" }).fsync, "loop");
  assert.equal(parseServeOptions(["--fsync", "pool"], { MCP_LOCKD_FSYNC: "loop" }).fsync, "pool", "the flag beats the variable");
  assert.equal(parseServeOptions(ETCD, {}).fsync, undefined);
});

test("the environment configures the etcd store too, and flags win over it", () => {
  const env = {
    MCP_LOCKD_STORE: "etcd",
    MCP_LOCKD_ETCD_ENDPOINTS: "127.0.0.1:2379",
    MCP_LOCKD_ETCD_PREFIX: "/env/",
    MCP_LOCKD_ETCD_TOKEN_FLOOR: "7",
  };
  assert.deepEqual(parseServeOptions([], env).etcd, { endpoints: ["127.0.0.1:2379"], prefix: "/env/", cacertFile: undefined, certFile: undefined, keyFile: undefined, tokenFloor: 7 });
  assert.equal(parseServeOptions(["--etcd-prefix", "/flag/"], env).etcd?.prefix, "/flag/");
  assert.equal(parseServeOptions(["--store", "file"], { MCP_LOCKD_STORE: "etcd" }).lockDir, "./.mcp-gateway", "--store beats MCP_LOCKD_STORE");
});

/** [arguments, environment, what the message must say]: each one a usage error. */
const USAGE_ERRORS: Array<[string[], Record<string, string>, RegExp[]]> = [
  [["--store", "consul"], {}, [/--store/, /"consul"/, /file, etcd/]],
  [[], { MCP_LOCKD_STORE: "zookeeper" }, [/--store/, /"zookeeper"/]],
  [["--store", "etcd"], {}, [/--store etcd needs --etcd-endpoints/]],
  [[...ETCD, "--lock-dir", "/tmp/x"], {}, [/--lock-dir/, /--store file/, /--store etcd/]],
  [ETCD, { MCP_LOCKD_DIR: "/tmp/x" }, [/MCP_LOCKD_DIR/, /--store file/]],
  [["--etcd-endpoints", "http://127.0.0.1:2379"], {}, [/--etcd-endpoints is for --store etcd/]],
  [["--store", "file", "--etcd-prefix", "/p/"], {}, [/--etcd-prefix is for --store etcd/]],
  [["--lock-dir", "/tmp/x", "--etcd-token-floor", "3"], {}, [/--etcd-token-floor is for --store etcd/]],
  [[], { MCP_LOCKD_ETCD_ENDPOINTS: "http://127.0.0.1:2379" }, [/MCP_LOCKD_ETCD_ENDPOINTS is for --store etcd/]],
  [["--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379,127.0.0.1"], {}, [/etcd endpoint "127\.0\.0\.1"/, /HOST:PORT/]],
  [["--store", "etcd", "--etcd-endpoints", "http://127.0.0.1:2379,,http://127.0.0.1:2380"], {}, [/etcd endpoint ""/]],
  [["--store", "etcd", "--etcd-endpoints", "http://a:1,https://b:2"], {}, [/mix http:\/\/ and https:\/\//]],
  [["--store", "etcd", "--etcd-endpoints", "http://a:1,a:1"], {}, [/listed twice/]],
  [[...ETCD, "--etcd-cacert", "ca.pem"], {}, [/TLS options given with http:\/\//]],
  [["--fsync", "sometimes"], {}, [/--fsync/, /"sometimes"/, /auto, pool, loop/]],
  [[...ETCD, "--fsync", "loop"], {}, [/--fsync is for --store file/]],
  [ETCD, { MCP_LOCKD_FSYNC: "auto" }, [/MCP_LOCKD_FSYNC is for --store file/]],
  [["--store", "etcd", "--etcd-endpoints", "https://a:1", "--etcd-cert", "c.pem"], {}, [/certificate needs its key/]],
  [[...ETCD, "--etcd-prefix", "/no-slash"], {}, [/--etcd-prefix/, /"\/no-slash"/, /end with "\/"/]],
  [[...ETCD, "--etcd-token-floor=-1"], {}, [/--etcd-token-floor/, /"-1"/, /whole number/]],
  [[...ETCD, "--etcd-token-floor", "1e3"], {}, [/--etcd-token-floor/]],
];

test("bad store settings are refused by the parser, naming the flag or entry", () => {
  for (const [args, env, patterns] of USAGE_ERRORS) {
    assert.throws(
      () => parseServeOptions(args, env),
      (err: Error) => {
        for (const pattern of patterns) assert.match(err.message, pattern, `${args.join(" ")} ${JSON.stringify(env)}`);
        return true;
      },
      `${args.join(" ")} ${JSON.stringify(env)} must be refused`,
    );
  }
});

test("mcp-lockd serve exits 64 on each of them, saying why, and serves nothing", async () => {
  // A few representative cases through the real command line (each is a process start).
  const cases = [USAGE_ERRORS[3]!, USAGE_ERRORS[5]!, USAGE_ERRORS[9]!, USAGE_ERRORS[2]!];
  for (const [args, env, patterns] of cases) {
    const { code, stdout, stderr } = await runProcess(process.execPath, [CLI_PATH, "serve", ...args], { env: cleanEnv(env), timeoutMs: 15_000 });
    assert.equal(code, EXIT_USAGE, `serve ${args.join(" ")} exits 64 (stderr: ${stderr})`);
    assert.match(stderr, /^mcp-lockd serve: /);
    for (const pattern of patterns) assert.match(stderr, pattern);
    assert.doesNotMatch(stdout, /mcp-lockd serving/);
  }
});

test("--help names --store and every etcd flag with its variable", async () => {
  const { code, stdout } = await runProcess(process.execPath, [CLI_PATH, "--help"], { env: cleanEnv(), timeoutMs: 15_000 });
  assert.equal(code, 0);
  for (const name of ["--store file|etcd", "MCP_LOCKD_STORE", "--etcd-endpoints", "MCP_LOCKD_ETCD_ENDPOINTS", "--etcd-prefix", "/mcp-lockd/", "--etcd-cacert", "--etcd-cert", "--etcd-key", "--etcd-token-floor"]) {
    assert.ok(stdout.includes(name), `--help mentions ${name}`);
  }
});
