import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { waitUntil } from "@apiary/kit/wait";

export function writeCg(path: string, value: string): void {
	try {
		writeFileSync(path, value);
	} catch (err) {
		throw new Error(`cannot write ${JSON.stringify(value)} to ${path}: ${(err as Error).message}`, { cause: err });
	}
}

/** A best-effort write (freeze, thaw, optional knobs): false when the kernel refused it. */
export function tryWrite(path: string, value: string): boolean {
	try {
		writeFileSync(path, value);
		return true;
	} catch {
		// The caller has a fallback for a file this kernel lacks or refuses.
		return false;
	}
}

/** Lets a frozen cgroup's processes run again. */
export type Thaw = () => void;

/**
 * Freezes a cgroup through its driver's files: `freeze` asks, `frozen` says
 * when every process has stopped (outside any system call), `thaw` lets them
 * go. Resolves to the thaw once frozen; null, thawed again, when the kernel
 * refused or the freeze took over `timeoutMs` (a process in D state).
 */
export async function freezeCg(freeze: () => boolean, frozen: () => boolean, thaw: Thaw, timeoutMs: number): Promise<Thaw | null> {
	if (!freeze()) return null;
	if (await waitUntil(frozen, { timeoutMs, intervalMs: 2 })) return thaw;
	thaw();
	return null;
}

/** The text of a cgroup file, or "" when it cannot be read (the cgroup went). */
export function readCgOrEmpty(path: string): string {
	try {
		return readFileSync(path, "latin1");
	} catch {
		// Gone with its cgroup: nothing to report.
		return "";
	}
}

export function mkdirCg(path: string): void {
	if (!existsSync(path)) mkdirSync(path, { recursive: true });
}

/** The dir that holds the workers' cgroups: others may pass through it (to their own) but not list it. */
export function mkdirWorkersCg(path: string): void {
	mkdirCg(path);
	chmodSync(path, 0o711);
}

/**
 * A worker's own cgroup dirs, readable by its group alone (runtimes read their
 * limits: the JVM, Go, Node size themselves by them) and writable by none of
 * its users: root keeps the dirs, the kernel's files stay root's 0644 inside.
 */
export function shareWithGroup(dirs: string[], gid: number): void {
	for (const d of dirs) {
		chownSync(d, 0, gid);
		chmodSync(d, 0o750);
	}
}

export function readPids(procsFile: string): number[] {
	try {
		return readFileSync(procsFile, "latin1")
			.split("\n")
			.filter((l) => l !== "")
			.map(Number);
	} catch {
		// No cgroup.procs: the cgroup is gone, so it holds no process.
		return [];
	}
}

/** Subdirectories (child cgroups) of a cgroup dir. */
export function childCgroups(dir: string): string[] {
	try {
		return readdirSync(dir, { withFileTypes: true })
			.filter((d) => d.isDirectory())
			.map((d) => d.name);
	} catch {
		// No such dir (not created yet, or removed): no children.
		return [];
	}
}

/** rmdir a cgroup, retrying while the kernel still tears down its last tasks (EBUSY). */
export async function removeCg(path: string, timeoutMs = 5000): Promise<void> {
	const deadline = performance.now() + timeoutMs; // monotonic: a clock step cannot cut the retries short
	for (;;) {
		try {
			// Nested cgroups a worker made itself go first (deepest first).
			for (const child of childCgroups(path)) await removeCg(`${path}/${child}`, timeoutMs);
			rmdirSync(path);
			return;
		} catch (err) {
			const code = (err as NodeJS.ErrnoException).code;
			if (code === "ENOENT") return;
			if (code !== "EBUSY" || performance.now() > deadline) throw new Error(`cannot remove cgroup ${path}: ${(err as Error).message}`, { cause: err });
			await sleep(10);
		}
	}
}

/** Signals a process (a negative pid: its group); false when it was already gone. */
export function signalQuietly(pid: number, signal: NodeJS.Signals): boolean {
	try {
		process.kill(pid, signal);
		return true;
	} catch {
		// ESRCH: it already exited, which is what a stop wants anyway.
		return false;
	}
}

/** SIGKILL a process (a negative pid: its group); false when it was already gone. */
export const kill9 = (pid: number): boolean => signalQuietly(pid, "SIGKILL");

/** SIGKILL every pid listed, ignoring ones already gone. */
export function killPids(pids: number[]): void {
	for (const pid of pids) kill9(pid);
}
