// Helpers shared by the bench sections: the run's context (flags, results),
// percentiles, tinybench readings and per-process CPU and memory from /proc.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import type { Bench } from "tinybench";
import { parseProcStat } from "../packages/hive/src/proc.ts";

/** The run's flags and the figures each section records under its name. */
export const ctx = { quick: false, gate: false, results: {} as Record<string, unknown> };

/** A size for the run: --quick (does it still run), --gate (the perf tier's reduced run: enough for a stable ratio), or the full bench. */
export const sized = <T>(quick: T, gate: T, full: T): T => (ctx.quick ? quick : ctx.gate ? gate : full);

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const pct = (xs: number[], p: number) => {
	const s = [...xs].sort((a, b) => a - b);
	return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : Number.NaN;
};
export const r3 = (n: number) => Math.round(n * 1000) / 1000;
type Lat = { latency: { mean: number; p99: number } };
export const stat = (b: Bench, i: number) => (b.tasks[i]!.result as unknown as Lat).latency;
export const log = (s: string) => process.stdout.write(`${s}\n`);
/** Resident memory in bytes; 0 once the process is gone (a zombie has no VmRSS). */
export const rssOf = (pid: number) => {
	const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
	return m ? Number(m[1]) * 1024 : 0;
};
/** CPU seconds of a process: total, and user space alone (the kernel's share is receiving and sending bytes). */
export const cpuOf = (pid: number) => {
	const s = parseProcStat(readFileSync(`/proc/${pid}/stat`, "latin1"));
	return { total: (s.utimeTicks + s.stimeTicks) / 100, user: s.utimeTicks / 100 };
};
export const cpuSecondsOf = (pid: number) => cpuOf(pid).total;
/** CPU time of this process's waited-for children (cutime + cstime), seconds. */
export const childrenCpuSeconds = () => {
	const rest = readFileSync("/proc/self/stat", "latin1").split(") ")[1]!.split(" ");
	return (Number(rest[13]) + Number(rest[14])) / 100;
};

/** The transport floor server (bench/ws-floor.ts) as a child process; `paceMs` is the interval its welcome tells. */
export async function launchFloor(paceMs = 0): Promise<{ url: string; pid: number; stop(): void }> {
	const proc = spawn(process.execPath, [new URL("./ws-floor.ts", import.meta.url).pathname], {
		stdio: ["ignore", "pipe", "inherit"],
		env: { ...process.env, WS_FLOOR_PACE_MS: String(paceMs) },
	});
	const url = await new Promise<string>((resolve, reject) => {
		let out = "";
		proc.stdout!.on("data", (d) => {
			out += d;
			const m = /listening on (\S+)/.exec(out);
			if (m) resolve(m[1]!);
		});
		proc.once("exit", (code) => reject(new Error(`ws-floor exited ${code}`)));
	});
	return { url, pid: proc.pid!, stop: () => proc.kill("SIGTERM") };
}
