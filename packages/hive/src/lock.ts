import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { procStartTicks } from "./procfs.ts";

/** Another live hive holds what this one asked for (its state dir or cgroup root). */
export class LockedError extends Error {
	override name = "LockedError";
}

/**
 * An exclusive lock as a file holding the owner's pid and start time,
 * created with O_EXCL. A lock whose owner is gone (or whose pid was reused by
 * another process) is stale and taken over. Returns the release function.
 */
export function acquireLock(path: string, what: string, proc: string): () => void {
	mkdirSync(dirname(path), { recursive: true });
	const me = `${process.pid} ${procStartTicks(proc, process.pid) ?? 0}`;
	for (let attempt = 0; attempt < 2; attempt++) {
		let fd: number;
		try {
			fd = openSync(path, "wx", 0o644);
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw new Error(`cannot lock ${what} at ${path}: ${(err as Error).message}`, { cause: err });
			const [pid, ticks] = readOwner(path);
			const alive = pid !== null && pid !== process.pid && procStartTicks(proc, pid) !== null && (ticks === null || procStartTicks(proc, pid) === ticks);
			if (alive) throw new LockedError(`${what} is in use by another hive (pid ${pid}); give this one its own (lock ${path})`);
			rmSync(path, { force: true }); // stale: its owner is gone
			continue;
		}
		try {
			writeSync(fd, me);
		} catch {
			// A full disk: the lock file exists but is empty. This hive holds it;
			// another would take it over as stale, as it would a dead owner's.
		} finally {
			closeSync(fd);
		}
		return () => {
			// Only our own lock: a stale-lock takeover by someone else must not be undone.
			if (readOwner(path)[0] === process.pid) rmSync(path, { force: true });
		};
	}
	throw new LockedError(`${what}: could not take the lock at ${path}`);
}

function readOwner(path: string): [number | null, number | null] {
	try {
		const [pid, ticks] = readFileSync(path, "latin1").trim().split(/\s+/).map(Number);
		return [Number.isInteger(pid) && pid! > 0 ? pid! : null, Number.isInteger(ticks) && ticks! > 0 ? ticks! : null];
	} catch {
		// Gone between the EEXIST and the read, or half-written: treated as stale.
		return [null, null];
	}
}
