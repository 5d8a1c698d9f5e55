import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
type Validator = ((data: unknown) => boolean) & { errors?: unknown };
let validator: Validator | undefined;

/** docs/lock-file.schema.json compiled (strict, with formats): ajv's errors as JSON, or undefined when `document` matches. */
export async function leaseFileSchemaErrors(document: unknown): Promise<string | undefined> {
  if (!validator) {
    const schema = JSON.parse(await readFile(new URL("../../../docs/lock-file.schema.json", import.meta.url), "utf8"));
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    addFormats(ajv);
    validator = ajv.compile(schema);
  }
  return validator(document) ? undefined : JSON.stringify(validator.errors);
}

/** Validates a lease file's JSON against docs/lock-file.schema.json; throws with ajv's errors. */
export async function assertValidLeaseFile(path: string): Promise<Record<string, unknown>> {
  const document = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
  const errors = await leaseFileSchemaErrors(document);
  if (errors !== undefined) throw new Error(`${path} does not match docs/lock-file.schema.json: ${errors}`);
  return document;
}

/** Validates every lease file currently in a lock dir; returns how many there were. */
export async function assertValidLockDir(dir: string): Promise<number> {
  const leases = (await readdir(dir)).filter((name) => name.endsWith(".lock") && !name.startsWith("."));
  for (const name of leases) await assertValidLeaseFile(join(dir, name));
  return leases.length;
}
