// What a client command reads and writes, so that parsing and output can be
// exercised without a process of their own. `run` also uses process signals
// and child processes directly.

export interface CommandIo {
  /** Resolves once the text is handed to the OS; rejects if it cannot be (EPIPE). */
  stdout(text: string): Promise<void>;
  stderr(text: string): void;
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadableStream;
  /** stderr is a terminal: waiting shows a live line. */
  stderrIsTTY: boolean;
  /** The terminal's width, when stderr is one. */
  columns: number | undefined;
  /** stdout is a terminal: `status --watch` draws a live table there. */
  stdoutIsTTY?: boolean;
}

export const processIo: CommandIo = {
  stdout: (text) =>
    new Promise<void>((resolve, reject) => {
      process.stdout.write(text, (err) => (err ? reject(err) : resolve()));
    }),
  stderr: (text) => void process.stderr.write(text),
  env: process.env,
  // A getter: touching process.stdin opens it (and may make the fd non-blocking,
  // which `run`'s command would inherit), so only the commands that read it do.
  get stdin() {
    return process.stdin;
  },
  get stderrIsTTY() {
    return process.stderr.isTTY === true;
  },
  get columns() {
    return process.stderr.isTTY ? process.stderr.columns : undefined;
  },
  get stdoutIsTTY() {
    return process.stdout.isTTY === true;
  },
};
