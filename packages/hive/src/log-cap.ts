import { appendFileSync, closeSync, fstatSync, ftruncateSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Worker logs are capped, keeping the newest output (logrotate's
 * copytruncate): when `<id>.log` passes half the cap, its newest half-cap
 * bytes are copied to `<id>.log.1` and it is truncated in place — the worker
 * keeps its O_APPEND descriptor and writes on from offset 0. A worker's two
 * files hold at most the cap, plus what it writes between two checks (the
 * check runs every CHECK_MS). The bytes dropped are counted per worker.
 *
 * copytruncate loses what is written between the last read and the
 * truncate. The hive freezes the worker's cgroup around a rotation, so
 * nothing is written then; where it cannot (no freezer), that window is
 * the two calls' instant — unless the hive is descheduled in it, as a
 * loaded CI host once did for ~0.35 s (12 lines lost).
 */
export const CHECK_MS = 200;

/** A freeze that takes longer is given up (a process stuck in the kernel): the rotation goes on unfrozen. */
export const FREEZE_MS = 500;

/** Whether `path` has passed half of `capBytes` (a rotation is due). */
export function overHalf(path: string, capBytes: number): boolean {
	try {
		return statSync(path).size > Math.floor(capBytes / 2);
	} catch {
		// No log yet (the worker wrote nothing): nothing to cap.
		return false;
	}
}

export interface RotateResult {
	/** Bytes of output dropped by this rotation. */
	dropped: number;
}

/** Rotates `path` when it passed half of `capBytes`; null when it did not. `beforeTruncate` lets a test stall where a write would be lost. */
export function rotateIfOver(path: string, capBytes: number, beforeTruncate?: () => void): RotateResult | null {
	const half = Math.floor(capBytes / 2);
	let size: number;
	try {
		size = statSync(path).size;
	} catch {
		// No log yet (the worker wrote nothing): nothing to cap.
		return null;
	}
	if (size <= half) return null;
	let before = 0;
	try {
		before = statSync(`${path}.1`).size;
	} catch {
		// The first rotation: no older output to drop.
	}
	const keep = Math.min(size, half);
	const dropped = before + size - keep;
	const buf = Buffer.allocUnsafe(keep);
	const fd = openSync(path, "r+");
	try {
		let got = 0;
		while (got < keep) {
			const n = readSync(fd, buf, got, keep - got, size - keep + got);
			if (n <= 0) break;
			got += n;
		}
		writeFileSync(`${path}.1`, buf.subarray(0, got));
		// What the worker wrote while we copied (it was not frozen) is newer
		// than .1 and older than anything after the truncate: it goes to the
		// end of .1. The truncate follows the last size check at once.
		for (let i = 0; i < 8; i++) {
			const now = fstatSync(fd).size;
			if (now <= size) break;
			const more = Buffer.allocUnsafe(now - size);
			const n = readSync(fd, more, 0, more.length, size);
			appendFileSync(`${path}.1`, more.subarray(0, n));
			size += n;
			if (n < more.length) break;
		}
		beforeTruncate?.();
		ftruncateSync(fd, 0);
	} finally {
		closeSync(fd);
	}
	// What was in .log.1 before, plus what of .log was not kept.
	return { dropped };
}

/**
 * Keeps the logs dir under `budgetBytes` by removing the logs of exited
 * workers, oldest first; running workers' logs are never removed (their
 * own cap bounds them). Returns the ids whose logs went.
 */
export function enforceBudget(dir: string, budgetBytes: number, running: (id: string) => boolean): string[] {
	const files = readdirSync(dir)
		.map((name) => {
			try {
				const st = statSync(join(dir, name));
				return { name, id: name.replace(/\.log(\.1)?$/, ""), size: st.size, mtime: st.mtimeMs };
			} catch {
				// Removed meanwhile: it costs nothing any more.
				return null;
			}
		})
		.filter((f): f is NonNullable<typeof f> => f !== null);
	let total = files.reduce((n, f) => n + f.size, 0);
	const removed = new Set<string>();
	for (const f of files.filter((x) => !running(x.id)).sort((a, b) => a.mtime - b.mtime)) {
		if (total <= budgetBytes) break;
		rmSync(join(dir, f.name), { force: true });
		total -= f.size;
		removed.add(f.id);
	}
	return [...removed];
}

/** The last `lines` lines of a file up to byte `upTo` (default: its end), at most `maxBytes` read. */
export function lastLines(path: string, lines: number, maxBytes: number, upTo?: number): Buffer {
	let fd: number;
	try {
		fd = openSync(path, "r");
	} catch {
		// No such log (yet): no lines.
		return Buffer.alloc(0);
	}
	try {
		const size = Math.min(upTo ?? Number.POSITIVE_INFINITY, statSync(path).size);
		const len = Math.min(size, maxBytes);
		const buf = Buffer.allocUnsafe(len);
		const n = readSync(fd, buf, 0, len, size - len);
		return lastLinesOf(buf.subarray(0, n), lines);
	} finally {
		closeSync(fd);
	}
}

/** The last n lines of a buffer (a final newline is not a line break). */
export function lastLinesOf(b: Buffer, n: number): Buffer {
	if (n === 0) return b.subarray(b.length);
	let end = b.length;
	if (end > 0 && b[end - 1] === 10) end--;
	let seen = 0;
	for (let i = end - 1; i >= 0; i--) if (b[i] === 10 && ++seen === n) return b.subarray(i + 1);
	return b;
}
