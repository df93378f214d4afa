import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

export function writeCg(path: string, value: string): void {
	try {
		writeFileSync(path, value);
	} catch (err) {
		throw new Error(`cannot write ${JSON.stringify(value)} to ${path}: ${(err as Error).message}`);
	}
}

export function mkdirCg(path: string): void {
	if (!existsSync(path)) mkdirSync(path, { recursive: true });
}

export function readPids(procsFile: string): number[] {
	try {
		return readFileSync(procsFile, "latin1")
			.split("\n")
			.filter((l) => l !== "")
			.map(Number);
	} catch {
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
		return [];
	}
}

/** rmdir a cgroup, retrying while the kernel still tears down its last tasks (EBUSY). */
export async function removeCg(path: string, timeoutMs = 5000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		try {
			// Nested cgroups a worker made itself go first (deepest first).
			for (const child of childCgroups(path)) await removeCg(`${path}/${child}`, timeoutMs);
			rmdirSync(path);
			return;
		} catch (err) {
			const code = (err as NodeJS.ErrnoException).code;
			if (code === "ENOENT") return;
			if (code !== "EBUSY" || Date.now() > deadline) throw new Error(`cannot remove cgroup ${path}: ${(err as Error).message}`);
			await sleep(10);
		}
	}
}

/** SIGKILL every pid listed, ignoring ones already gone. */
export function killPids(pids: number[]): void {
	for (const pid of pids) {
		try {
			process.kill(pid, "SIGKILL");
		} catch {}
	}
}
