import type { SecureContextOptions } from "node:tls";
import type { AccessPolicy } from "../auth/access-policy.ts";
import { parseAuthFile } from "../auth/auth-file.ts";
import { ReloadableServerCredentials } from "../grpc/reloadable-server-credentials.ts";
import { secureContextOf, tlsFilePaths, type TlsFiles } from "../tls/tls-settings.ts";
import { ReloadingFiles } from "./reloading-files.ts";
export interface SecurityFiles {
  tls?: {
    files: ReloadingFiles<SecureContextOptions>;
    credentials: ReloadableServerCredentials;
    onChange(listener: (context: SecureContextOptions) => void): void;
  };
  auth?: ReloadingFiles<AccessPolicy>;
  reload(): Promise<void>;
  close(): void;
}

/**
 * The certificates and the auth file, read once (a bad one fails the start)
 * and then reloaded when their files change or reload() is called (SIGHUP).
 * New certificates go to the gRPC credentials and to each onChange listener
 * (the HTTP server).
 */
export async function openSecurityFiles(
  tlsFiles: TlsFiles | undefined,
  authFile: string | undefined,
  log: (message: string) => void,
): Promise<SecurityFiles> {
  const listeners: Array<(context: SecureContextOptions) => void> = [];
  let tls: SecurityFiles["tls"];
  if (tlsFiles) {
    let credentials: ReloadableServerCredentials | undefined;
    const files = await ReloadingFiles.open(tlsFilePaths(tlsFiles), {
      what: "TLS certificates",
      parse: (contents) => secureContextOf(tlsFiles, contents),
      onChange: (context) => {
        credentials?.update(context);
        for (const listener of listeners) listener(context);
      },
      log,
    });
    credentials = new ReloadableServerCredentials(files.value, tlsFiles.clientCertAuth);
    tls = { files, credentials, onChange: (listener) => listeners.push(listener) };
  }
  let auth: ReloadingFiles<AccessPolicy> | undefined;
  try {
    auth =
      authFile === undefined
        ? undefined
        : await ReloadingFiles.open([authFile], {
            what: `auth file ${authFile}`,
            parse: ([text]) => parseAuthFile(text!.toString("utf8")),
            log,
          });
  } catch (err) {
    tls?.files.close();
    throw new Error(`--auth-file ${authFile}: ${(err as Error).message}`);
  }
  if (auth) log(`authorization on: ${auth.value.principals.length} principal(s) from ${authFile}`);
  return {
    tls,
    auth,
    reload: async () => {
      await Promise.all([tls?.files.reload(), auth?.reload()]);
    },
    close: () => {
      tls?.files.close();
      auth?.close();
    },
  };
}
