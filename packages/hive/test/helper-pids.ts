import { readdirSync, readFileSync } from "node:fs";

/** Pids of this process's spawn helpers (its children running spawn-helper.ts). */
export function helperPids(): number[] {
	return readdirSync("/proc")
		.filter((p) => /^\d+$/.test(p))
		.filter((p) => {
			try {
				const stat = readFileSync(`/proc/${p}/stat`, "latin1");
				const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
				return ppid === process.pid && readFileSync(`/proc/${p}/cmdline`, "latin1").includes("spawn-helper.ts");
			} catch {
				return false; // gone meanwhile
			}
		})
		.map(Number);
}
