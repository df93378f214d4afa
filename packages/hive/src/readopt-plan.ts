import type { CgroupDriverName, WorkerInfo } from "@apiary/protocol";
import type { SavedWorker } from "./worker-records.ts";

/** What a starting hive does with each worker a previous one left. */
export type ReadoptAction =
	| { kind: "exited"; id: string; rec: SavedWorker }
	| { kind: "adopt"; id: string; rec: SavedWorker | null; pid: number }
	| { kind: "lost"; id: string; rec: SavedWorker | null; pid: number | null; leftovers: boolean };

export interface ReadoptInputs {
	saved: Map<string, SavedWorker>;
	/** Worker cgroups found under the root (none for the `none` driver). */
	cgroups: string[];
	driver: CgroupDriverName;
	/** Pids in a worker's cgroup. */
	pidsOf(id: string): number[];
	/** A live process's start time, null when gone. */
	startTicksOf(pid: number): number | null;
}

/**
 * Pure: for every worker in a record or a cgroup, whether it is still
 * running (re-adopt), ended while the hive was down (lost: its exit was not
 * seen), or had already exited (keep the record). A pid counts as the same
 * process only when its start time matches the record's and, with cgroups,
 * it is still in the worker's cgroup; a cgroup without a record (state dir
 * lost) is adopted by its first process.
 */
export function planReadoption(inp: ReadoptInputs): ReadoptAction[] {
	const out: ReadoptAction[] = [];
	for (const id of new Set([...inp.cgroups, ...inp.saved.keys()])) {
		const rec = inp.saved.get(id) ?? null;
		if (rec?.state === "exited") {
			out.push({ kind: "exited", id, rec });
			continue;
		}
		const cgPids = inp.driver === "none" ? [] : inp.pidsOf(id);
		let pid = rec?.pid ?? null;
		const ticks = pid === null ? null : inp.startTicksOf(pid);
		let alive = ticks !== null && (rec?.startTicks == null || ticks === rec.startTicks);
		if (inp.driver !== "none") {
			if (pid !== null && !cgPids.includes(pid)) alive = false;
			// No record, or one written before its process started (its pid never recorded): the cgroup's first process.
			if ((!rec || rec.pid === null) && cgPids.length > 0) {
				pid = cgPids[0]!;
				alive = true;
			}
		}
		if (alive && pid !== null) out.push({ kind: "adopt", id, rec, pid });
		else out.push({ kind: "lost", id, rec, pid, leftovers: cgPids.length > 0 });
	}
	return out;
}

/**
 * A worker found by its cgroup alone (its record was lost): only what procfs
 * tells of it. Its start was not seen, so it counts from when it was found.
 */
export function unrecordedWorker(id: string, pid: number | null, command: string[], cgroup: string | null, foundWall: number): WorkerInfo {
	return {
		id,
		command,
		profile: null,
		limits: { cpu: null, memoryBytes: null, pids: null, timeoutMs: null },
		labels: {},
		gpus: [],
		env: {},
		cwd: null,
		pid,
		state: "running",
		startedAt: new Date(foundWall).toISOString(),
		cgroup,
		adopted: true,
		stats: null,
		exit: null,
	};
}
