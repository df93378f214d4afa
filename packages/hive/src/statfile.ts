import { closeSync, openSync, readSync } from "node:fs";
import { integer } from "./cgroup/parse.ts";

// Files under /sys/fs/cgroup and /proc regenerate their content on every read
// at offset 0, so one fd held open and re-read with a positional read returns
// fresh values at about a third of the cost of open+read+close per tick.

/**
 * The buffer every StatFile reads into. fill() leaves a file's bytes here
 * until the next read of any file: parse them (parse.ts scanners) before
 * reading another.
 */
export const statBuf = Buffer.allocUnsafe(64 * 1024);
const buf = statBuf;

const gone = (err: unknown) => {
	const code = (err as NodeJS.ErrnoException).code;
	return code === "ENOENT" || code === "ENODEV" || code === "ESRCH";
};

export class StatFile {
	readonly path: string;
	private fd: number | null = null;
	constructor(path: string) {
		this.path = path;
	}

	/** Reads the file's current content into statBuf: its length, or -1 when the file does not exist (anymore). */
	fill(): number {
		try {
			if (this.fd === null) this.fd = openSync(this.path, "r");
			return readSync(this.fd, buf, 0, buf.length, 0);
		} catch (err) {
			this.close();
			if (gone(err)) return -1;
			throw err;
		}
	}

	/** The file's current content, or null when it does not exist (anymore). */
	read(): string | null {
		const n = this.fill();
		return n < 0 ? null : buf.toString("latin1", 0, n);
	}

	/**
	 * A file holding one decimal number (memory.current, pids.max …), parsed
	 * straight from the read buffer: "max" is null (no limit), a missing file is
	 * undefined, anything else is an error naming the file.
	 */
	readNumber(): number | null | undefined {
		const n = this.fill();
		if (n < 0) return undefined;
		let end = n;
		if (end > 0 && buf[end - 1] === 10) end--;
		const v = integer(buf, 0, end);
		if (!Number.isNaN(v)) return v;
		if (end === 3 && buf[0] === 109 && buf[1] === 97 && buf[2] === 120) return null; // "max"
		throw new Error(`${this.path}: expected a number, got ${JSON.stringify(buf.toString("latin1", 0, Math.min(n, 40)))}`);
	}

	/** Bytes read, without decoding: the floor that read() is measured against. */
	readRaw(): number {
		if (this.fd === null) this.fd = openSync(this.path, "r");
		return readSync(this.fd, buf, 0, buf.length, 0);
	}

	close(): void {
		if (this.fd !== null) {
			try {
				closeSync(this.fd);
			} catch {
				// EBADF/EIO on close of a read-only fd loses nothing: no data was pending.
			}
			this.fd = null;
		}
	}
}

/** One-shot read; null when absent. */
export function readOptional(path: string): string | null {
	const f = new StatFile(path);
	try {
		return f.read();
	} finally {
		f.close();
	}
}
