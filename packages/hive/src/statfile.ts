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

	/**
	 * A file holding one decimal number (memory.current, pids.max …), parsed
	 * straight from the read buffer: "max" is null (no limit), a missing file is
	 * undefined, anything else is an error naming the file.
	 */
	readNumber(): number | null | undefined {
		let n: number;
		try {
			if (this.fd === null) this.fd = openSync(this.path, "r");
			n = readSync(this.fd, buf, 0, buf.length, 0);
		} catch (err) {
			this.close();
			const code = (err as NodeJS.ErrnoException).code;
			if (code === "ENOENT" || code === "ENODEV" || code === "ESRCH") return undefined;
			throw err;
		}
		let v = 0;
		let i = 0;
		const neg = buf[0] === 45; // "-"
		if (neg) i++;
		const start = i;
		for (; i < n; i++) {
			const c = buf[i]!;
			if (c < 48 || c > 57) break;
			v = v * 10 + (c - 48);
		}
		if (i === start) {
			if (n >= 3 && buf[0] === 109 && buf[1] === 97 && buf[2] === 120) return null; // "max"
			throw new Error(`${this.path}: expected a number, got ${JSON.stringify(buf.toString("latin1", 0, Math.min(n, 40)))}`);
		}
		if (i < n && buf[i] !== 10) throw new Error(`${this.path}: expected a number, got ${JSON.stringify(buf.toString("latin1", 0, Math.min(n, 40)))}`);
		return neg ? -v : v;
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
