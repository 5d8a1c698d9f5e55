// The Python package's own unit tests (clients/python/tests: the file
// protocol in temp dirs, lease.lost, the KeepAlive session against a scripted
// stream, status mapping, stale generated stubs, stdlib-only and relocated
// imports), run with Debian's /usr/bin/python3 so that `npm test` covers them.

import { test } from "node:test";
import assert from "node:assert/strict";
import { access } from "node:fs/promises";
import { runProcess } from "../helpers/run-process.ts";
import { INSTALL_HINT, PYTHON } from "../helpers/python.ts";
import { PYTHON_PACKAGE_DIR } from "./python-lease-driver.ts";

test("clients/python unit tests pass under /usr/bin/python3 -m unittest", async (t) => {
  await access(PYTHON).catch(() => assert.fail(`${PYTHON} is missing; install python3 and then: ${INSTALL_HINT}`));
  const probe = await runProcess(PYTHON, ["-c", "import grpc, grpc_tools.protoc, google.protobuf"]);
  assert.equal(probe.code, 0, `${PYTHON} cannot import grpc / grpc_tools; run: ${INSTALL_HINT}\n${probe.stderr}`);
  const result = await runProcess(PYTHON, ["-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v"], {
    cwd: PYTHON_PACKAGE_DIR,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
    timeoutMs: 180_000,
  });
  // unittest reports on stderr: "Ran N tests in Xs" then "OK" or "FAILED (...)".
  const ran = /^Ran (\d+) tests? in ([\d.]+)s$/m.exec(result.stderr);
  t.diagnostic(ran ? `${ran[1]} Python tests in ${ran[2]} s` : "no unittest summary");
  assert.equal(result.code, 0, `python -m unittest failed (exit ${result.signal ?? result.code}):\n${result.stderr}\n${result.stdout}`);
  assert.ok(ran && Number(ran[1]) >= 30, `expected the whole suite to run:\n${result.stderr}`);
  assert.match(result.stderr, /^OK$/m);
});
