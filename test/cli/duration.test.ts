// Durations on the command line: units, combinations, bare seconds, and the
// short form used in tables and messages.
import { test } from "node:test";
import assert from "node:assert/strict";
import { DurationSyntaxError, formatDuration, parseDuration } from "../../src/cli/duration.ts";

test("parseDuration: units, combinations and bare numbers (seconds)", () => {
  const cases: Array<[string, number]> = [
    ["500ms", 500],
    ["30s", 30_000],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1m30s", 90_000],
    ["1h2m3s4ms", 3_723_004],
    ["1.5s", 1_500],
    [".5s", 500],
    ["30", 30_000],
    ["0.25", 250],
    ["0", 0],
    ["0s", 0],
    [" 10s ", 10_000],
  ];
  for (const [text, ms] of cases) assert.equal(parseDuration(text, "--ttl"), ms, text);
});

test("parseDuration: malformed input names the flag and the accepted forms", () => {
  for (const text of ["", "abc", "-5s", "5 s", "5sec", "s", "1d", "5m-1s", "1e3", "ms", "1..5s", "NaN", "Infinity"]) {
    assert.throws(
      () => parseDuration(text, "--wait"),
      (err: unknown) => err instanceof DurationSyntaxError && /--wait/.test(err.message) && /500ms, 30s, 5m, 1h/.test(err.message),
      JSON.stringify(text),
    );
  }
});

test("formatDuration: short and readable", () => {
  const cases: Array<[number, string]> = [
    [0, "0ms"],
    [850, "850ms"],
    [1_000, "1s"],
    [59_999, "59s"],
    [60_000, "1m00s"],
    [245_000, "4m05s"],
    [3_600_000, "1h00m"],
    [7_380_000, "2h03m"],
    [100 * 3_600_000, "4d04h"],
    [-12_000, "-12s"],
  ];
  for (const [ms, text] of cases) assert.equal(formatDuration(ms), text, String(ms));
});
