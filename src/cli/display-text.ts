// Text from the service (holder names, metadata, error details) is shown on
// terminals. The service refuses control characters in holders, but lease
// files written by other processes are not checked as strictly: make sure no
// escape sequence from them reaches the terminal.

// C0 and C1 control characters, DEL, and the bidirectional overrides that can
// make a line read differently from what it contains.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control character replaced by "?". */
export function printable(text: string): string {
  return text.replace(UNSAFE, "?");
}

/** `text` made printable and quoted, for messages: "gateway". */
export function quoted(text: string): string {
  return `"${printable(text)}"`;
}
