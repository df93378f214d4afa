import { closeSync, openSync, readSync } from "node:fs";

// Files under /sys/fs/cgroup and /proc regenerate their content on every read
// at offset 0, so one fd held open and re-read with a positional read returns
// fresh values at about a third of the cost of open+read+close per tick.

const buf = Buffer.allocUnsafe(64 * 1024);

export class StatFile {
	readonly path: string;
	private fd: number | null = null;
	constructor(path: string) {
		this.path = path;
	}

	/** The file's current content, or null when it does not exist (anymore). */
	read(): string | null {
		try {
			if (this.fd === null) this.fd = openSync(this.path, "r");
			const n = readSync(this.fd, buf, 0, buf.length, 0);
			return buf.toString("latin1", 0, n);
		} catch (err) {
			this.close();
			const code = (err as NodeJS.ErrnoException).code;
			if (code === "ENOENT" || code === "ENODEV" || code === "ESRCH") return null;
			throw err;
		}
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
			} catch {}
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
