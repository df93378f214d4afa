import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";

// Every process a test starts inherits this marker (hives pass their env on to
// workers and to nvidia-smi), so teardown can find anything a test leaked.
const MARKER = "APIARY_TEST_RUN";

export function setup(): void {
	process.env[MARKER] = randomBytes(6).toString("hex");
}

/** Cgroups named apiary-test-* left under any hierarchy (tests must remove theirs). */
export function leftoverCgroups(): string[] {
	const out: string[] = [];
	for (const h of readdirSync("/sys/fs/cgroup")) {
		const dir = h === "cgroup.procs" ? null : `/sys/fs/cgroup/${h}`;
		if (!dir) continue;
		try {
			for (const name of readdirSync(dir)) if (name.startsWith("apiary-test-")) out.push(`${dir}/${name}`);
		} catch {}
	}
	// pure v2 (VM): roots are directly under /sys/fs/cgroup
	try {
		for (const name of readdirSync("/sys/fs/cgroup")) if (name.startsWith("apiary-test-")) out.push(`/sys/fs/cgroup/${name}`);
	} catch {}
	return out;
}

/** Processes carrying this run's marker, other than the test runner's own. */
export function leftoverProcesses(run: string, exclude: Set<number>): string[] {
	const out: string[] = [];
	for (const p of readdirSync("/proc")) {
		const pid = Number(p);
		if (!pid || exclude.has(pid)) continue;
		try {
			const env = readFileSync(`/proc/${p}/environ`, "latin1");
			if (!env.includes(`${MARKER}=${run}`)) continue;
			const stat = readFileSync(`/proc/${p}/stat`, "latin1");
			if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) continue;
			out.push(`${pid} ${readFileSync(`/proc/${p}/cmdline`, "latin1").replaceAll("\0", " ").trim()}`);
		} catch {}
	}
	return out;
}

/** Pids of the test runner itself (main process and its pool workers), which carry the marker too. */
export function runnerPids(): Set<number> {
	const out = new Set<number>([process.pid, process.ppid]);
	for (const p of readdirSync("/proc")) {
		const pid = Number(p);
		if (!pid) continue;
		try {
			if (readFileSync(`/proc/${p}/cmdline`, "latin1").includes("vitest")) out.add(pid);
		} catch {}
	}
	return out;
}
