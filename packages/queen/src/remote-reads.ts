import type { QueenEvent } from "@apiary/protocol";

// Several queens: what a page of other queens' events makes this queen read
// back. A hive-level change (a hello, a restart, GPUs, state, drain) replaces
// what it holds of that hive: its row, all its workers, its GPUs. A change
// to some workers of a hive it already holds reads just those workers: at
// 5,000 hives, reading a hive's 50 workers (and its exited ones) back for
// each spawn or exit elsewhere was most of a queen's PostgreSQL parsing.

/** Events that change one worker's row and nothing else of its hive. */
const WORKER_ONLY = new Set<QueenEvent["type"]>(["worker.spawned", "worker.updated", "worker.exited", "worker.evicted"]);

export interface RemoteReads {
	/** Hives to read back whole. */
	whole: string[];
	/** Hives of which only these workers are read back. */
	some: Map<string, Set<string>>;
}

export function remoteReads(
	batch: readonly { type: QueenEvent["type"]; hiveId: string | null; workerId: string | null; origin?: string | null }[],
	queenId: string,
	held: (hiveId: string) => boolean,
): RemoteReads {
	const whole = new Set<string>();
	const some = new Map<string, Set<string>>();
	for (const e of batch) {
		if (e.origin === queenId || !e.hiveId || whole.has(e.hiveId)) continue;
		if (WORKER_ONLY.has(e.type) && e.workerId && held(e.hiveId)) {
			const ids = some.get(e.hiveId);
			if (ids) ids.add(e.workerId);
			else some.set(e.hiveId, new Set([e.workerId]));
		} else {
			whole.add(e.hiveId);
			some.delete(e.hiveId);
		}
	}
	return { whole: [...whole], some };
}
