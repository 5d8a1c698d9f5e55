// docs/lock-file.schema.json and the checksum check of test/helpers/lease-file-schema.ts on
// version 3 lease files: a file written by the Python participant (a real process) validates, and
// the schema and the checksum between them turn away what docs/protocol.md calls unreadable.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { makeTempDir } from "../helpers/temp-dir.ts";
import { runProcess } from "../helpers/run-process.ts";
import { PYTHON } from "../helpers/python.ts";
import { PYTHON_PACKAGE_DIR } from "../clients/python-lease-driver.ts";
import { assertValidLeaseFile, leaseFileChecksumError, leaseFileSchemaErrors, sealedLeaseText } from "../helpers/lease-file-schema.ts";

const document = (fields: Record<string, unknown> = {}) => ({
  version: 3,
  resource: "r",
  holder: "hand-made",
  acquired_at: "2026-01-09T14:30:00.000Z",
  renewed_at: "2026-01-09T14:30:00.000Z",
  ttl: 30,
  expires_at: "2026-01-09T14:30:30.000Z",
  fencing_token: 7,
  pid: 4242,
  hostname: "elsewhere",
  ...fields,
});

const v3Bytes = (fields: Record<string, unknown> = {}) => Buffer.from(sealedLeaseText(document(fields)));
const parse = (bytes: Buffer) => JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;

test("a version 3 file written by the python participant matches the schema and its checksum", async () => {
  const dir = await makeTempDir();
  try {
    const script = "import sys; from mcp_lockd import file_protocol as fp; fp.acquire(sys.argv[1], 'r', 'py h\u00f6lder', 30, metadata={'k': 'v'})";
    const run = await runProcess(PYTHON, ["-c", script, dir.path], {
      env: { ...process.env, PYTHONPATH: PYTHON_PACKAGE_DIR, PYTHONDONTWRITEBYTECODE: "1" },
    });
    assert.equal(run.code, 0, run.stderr);
    const written = await assertValidLeaseFile(join(dir.path, "r.lock"));
    assert.equal(written.version, 3);
    assert.equal(written.holder, "py h\u00f6lder");
    assert.equal(Object.keys(written).at(-1), "checksum");
    // A byte changed anywhere before the checksum (a torn write): the schema still passes, the checksum does not.
    const bytes = await readFile(join(dir.path, "r.lock"));
    const torn = Buffer.from(bytes);
    const at = torn.indexOf("py h");
    torn[at] = "P".charCodeAt(0);
    assert.equal(await leaseFileSchemaErrors(parse(torn)), undefined);
    assert.match(leaseFileChecksumError(torn, parse(torn)) ?? "", /not the SHA-256/);
  } finally {
    await dir.remove();
  }
});

test("the schema: version 3 requires a 64-hex checksum; versions 1 and 2 need none and ignore one", async () => {
  assert.equal(await leaseFileSchemaErrors(parse(v3Bytes())), undefined);
  assert.equal(leaseFileChecksumError(v3Bytes(), parse(v3Bytes())), undefined);
  assert.match((await leaseFileSchemaErrors(document())) ?? "", /checksum/); // version 3 without one
  assert.match((await leaseFileSchemaErrors(document({ checksum: "A".repeat(64) }))) ?? "", /pattern/);
  assert.match((await leaseFileSchemaErrors(document({ checksum: "a".repeat(63) }))) ?? "", /pattern/);
  for (const version of [1, 2]) {
    assert.equal(await leaseFileSchemaErrors(document({ version })), undefined);
    assert.equal(await leaseFileSchemaErrors(document({ version, checksum: "nope" })), undefined);
    const bytes = Buffer.from(JSON.stringify(document({ version })));
    assert.equal(leaseFileChecksumError(bytes, parse(bytes)), undefined);
  }
  assert.ok((await leaseFileSchemaErrors(document({ version: 4, checksum: "a".repeat(64) }))) !== undefined);
});

test("the checksum check: last member, exact form, hash of the bytes before it", () => {
  const good = v3Bytes();
  const text = good.toString("utf8");
  const hash = /"checksum":"([0-9a-f]{64})"/.exec(text)![1]!;
  const prefix = text.slice(0, text.indexOf(',"checksum"'));
  const cases: Record<string, string> = {
    "not last": `${prefix},"checksum":"${hash}","x":1}\n`,
    spaced: `${prefix}, "checksum": "${hash}"}\n`,
    "another hash": `${prefix},"checksum":"${"0".repeat(64)}"}\n`,
    "changed before it": `${prefix.replace('"ttl":30', '"ttl":31')},"checksum":"${hash}"}\n`,
  };
  for (const [name, bad] of Object.entries(cases)) {
    const bytes = Buffer.from(bad);
    assert.ok(leaseFileChecksumError(bytes, parse(bytes)) !== undefined, name);
  }
  // Trailing JSON whitespace is allowed, none at all too.
  for (const tail of ["", "\r\n", " \t\n"]) {
    const bytes = Buffer.from(text.slice(0, -1) + tail);
    assert.equal(leaseFileChecksumError(bytes, parse(bytes)), undefined, JSON.stringify(tail));
  }
});
