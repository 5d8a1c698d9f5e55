// Entry of the single executable (npm run build:binary). esbuild bundles it as
// CommonJS, because a Node SEA runs its main script as CommonJS: so no
// top-level await here, unlike bin/mcp-lockd.js.
import { main } from "./main.ts";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`mcp-lockd: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  },
);
