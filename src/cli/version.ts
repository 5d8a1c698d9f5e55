// Kept equal to package.json's version by a test (test/cli/version.test.ts):
// reading package.json at run time would break inside a bundled executable.
export const VERSION = "0.1.0";
