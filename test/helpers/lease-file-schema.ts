import { createHash } from "node:crypto";
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

// The end of a version 3 file (docs/protocol.md): the checksum member last, then JSON whitespace only.
const CHECKSUM_TAIL = /,"checksum":"([0-9a-f]{64})"\}[ \t\r\n]*$/;

/**
 * What the schema cannot check: for a version 3 file, that its raw bytes end with the checksum
 * member and that it is the SHA-256 of the bytes before its comma. Undefined when it holds (or the
 * file is version 1 or 2). Written here from the spec, independently of both writers.
 */
export function leaseFileChecksumError(bytes: Buffer, document: Record<string, unknown>): string | undefined {
  if (document.version !== 3) return undefined;
  // latin1 maps byte i to char i, so the match's index is a byte offset.
  const tail = CHECKSUM_TAIL.exec(bytes.toString("latin1"));
  if (!tail) return 'a version 3 file must end with ,"checksum":"<64 lowercase hex>"}';
  const actual = createHash("sha256").update(bytes.subarray(0, tail.index)).digest("hex");
  return actual === tail[1] ? undefined : `checksum ${tail[1]} is not the SHA-256 of the bytes before it (${actual})`;
}

/** A version 3 file's text for `document` as the spec's JavaScript form writes it: JSON.stringify, its "}" replaced by the checksum member, "\n". */
export function sealedLeaseText(document: Record<string, unknown>): string {
  const prefix = JSON.stringify(document).slice(0, -1);
  return `${prefix},"checksum":"${createHash("sha256").update(prefix, "utf8").digest("hex")}"}\n`;
}

/** Validates a lease file against docs/lock-file.schema.json, and a version 3 file's checksum; throws with the errors. */
export async function assertValidLeaseFile(path: string): Promise<Record<string, unknown>> {
  const bytes = await readFile(path);
  const document = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
  const errors = await leaseFileSchemaErrors(document);
  if (errors !== undefined) throw new Error(`${path} does not match docs/lock-file.schema.json: ${errors}`);
  const checksum = leaseFileChecksumError(bytes, document);
  if (checksum !== undefined) throw new Error(`${path}: ${checksum}`);
  return document;
}

/** Validates every lease file currently in a lock dir; returns how many there were. */
export async function assertValidLockDir(dir: string): Promise<number> {
  const leases = (await readdir(dir)).filter((name) => name.endsWith(".lock") && !name.startsWith("."));
  for (const name of leases) await assertValidLeaseFile(join(dir, name));
  return leases.length;
}
