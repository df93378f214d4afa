import type { CgroupDriverName } from "@apiary/protocol";
import type { SavedWorker } from "./worker-records.ts";

/** What a starting hive does with each worker a previous one left. */
export type ReadoptAction =
	| { kind: "exited"; id: string; rec: SavedWorker }
	| { kind: "adopt"; id: string; rec: SavedWorker; pid: number }
	| { kind: "lost"; id: string; rec: SavedWorker; pid: number | null; leftovers: boolean }
	/** A cgroup under the root with no record of this hive's: not made by it (or its record is gone), left alone. */
	| { kind: "foreign"; id: string };

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
 * it is still in the worker's cgroup. The record is the ownership marker:
 * the hive writes it before a worker runs, so a cgroup without one was not
 * made by this hive (someone else's process under its root, or a state dir
 * that was lost) and is reported and left alone, never adopted or killed.
 */
export function planReadoption(inp: ReadoptInputs): ReadoptAction[] {
	const out: ReadoptAction[] = [];
	for (const id of new Set([...inp.cgroups, ...inp.saved.keys()])) {
		const rec = inp.saved.get(id) ?? null;
		if (!rec) {
			out.push({ kind: "foreign", id });
			continue;
		}
		if (rec.state === "exited") {
			out.push({ kind: "exited", id, rec });
			continue;
		}
		const cgPids = inp.driver === "none" ? [] : inp.pidsOf(id);
		let pid = rec.pid;
		const ticks = pid === null ? null : inp.startTicksOf(pid);
		let alive = ticks !== null && (rec.startTicks == null || ticks === rec.startTicks);
		if (inp.driver !== "none") {
			if (pid !== null && !cgPids.includes(pid)) alive = false;
			// A record written before its process started (its pid never recorded): the cgroup's first process.
			if (rec.pid === null && cgPids.length > 0) {
				pid = cgPids[0]!;
				alive = true;
			}
		}
		if (alive && pid !== null) out.push({ kind: "adopt", id, rec, pid });
		else out.push({ kind: "lost", id, rec, pid, leftovers: cgPids.length > 0 });
	}
	return out;
}
