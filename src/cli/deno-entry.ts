// Entry for Deno (npm run start:deno): Deno runs src/ as TypeScript directly.
// `process` is imported from node:process rather than taken as a global.
import process from "node:process";
import { main } from "./main.ts";

process.exitCode = await main(process.argv.slice(2));
