// The promises a fleet under faults must keep (issue #21), checked from what
// was recorded: every request and its answer, every event each subscriber
// saw, every worker the queens know at the end. Pure: the soak and the chaos
// tests record, this judges; tests/unit shows each rule failing.

export interface Interval {
	/** Who held it: a worker id or a claim id. */
	holder: string;
	/** hive/uuid */
	gpu: string;
	from: number;
	/** null: still held. */
	to: number | null;
}

export interface PlacementRecord {
	key: string;
	/** Each answer given for this key (a retry, perhaps on another queen): status and worker id. */
	answers: { status: number; workerId: string | null; hiveId: string | null }[];
}

export interface WorkerRecord {
	hiveId: string;
	id: string;
	state: string;
	pid: number | null;
	/** Exit events seen for it in the log. */
	exitEvents: number;
	/** Whether it has an exit record. */
	exited: boolean;
}

export interface StreamRecord {
	subscriber: string;
	/**
	 * Event ids as received, in order; a snapshot or stream.reset is recorded as null (a new start),
	 * followed by its own id. Samples (worker.updated, which carry the id of the event before them) are not recorded.
	 */
	ids: (number | null)[];
	/** Subscribed to every type: then each id is the one before it plus one, not only greater. */
	gapless?: boolean;
}

export interface History {
	holds: Interval[];
	placements: PlacementRecord[];
	workers: WorkerRecord[];
	streams: StreamRecord[];
	alive: (pid: number) => boolean;
}

const iso = (t: number) => new Date(t).toISOString().slice(11, 23);
const span = (i: Interval) => `(${iso(i.from)}–${i.to === null ? "still" : iso(i.to)})`;

/** Every broken promise, one line each; [] when all held. */
export function violations(h: History): string[] {
	const out: string[] = [];
	// No GPU held by two over overlapping times.
	const byGpu = new Map<string, Interval[]>();
	for (const i of h.holds) byGpu.set(i.gpu, [...(byGpu.get(i.gpu) ?? []), i]);
	for (const [gpu, list] of byGpu) {
		list.sort((a, b) => a.from - b.from);
		for (let i = 1; i < list.length; i++) {
			const prev = list[i - 1]!;
			const cur = list[i]!;
			if (prev.to === null || cur.from < prev.to) out.push(`GPU ${gpu} held by ${prev.holder} ${span(prev)} and ${cur.holder} ${span(cur)} at once`);
		}
	}
	// Every placement answered 201 has exactly one worker, and every retry of its key the same one.
	const workers = new Map<string, WorkerRecord[]>();
	for (const w of h.workers) workers.set(w.id, [...(workers.get(w.id) ?? []), w]);
	for (const p of h.placements) {
		const ok = p.answers.filter((a) => a.status === 201 || a.status === 200);
		const ids = new Set(ok.map((a) => `${a.hiveId}/${a.workerId}`));
		if (ids.size > 1) out.push(`placement ${p.key} answered with different workers: ${[...ids].join(", ")}`);
		for (const a of ok) {
			const n = (workers.get(a.workerId ?? "") ?? []).filter((w) => w.hiveId === a.hiveId).length;
			if (n !== 1) out.push(`placement ${p.key} answered ${a.status} for ${a.hiveId}/${a.workerId}, which the fleet knows ${n} times`);
		}
	}
	// Every exit record exactly once; no worker running whose process is gone.
	for (const w of h.workers) {
		if (w.exited && w.exitEvents !== 1) out.push(`worker ${w.hiveId}/${w.id}: ${w.exitEvents} worker.exited events for one exit record`);
		if (w.state === "running" && w.pid !== null && !h.alive(w.pid)) out.push(`worker ${w.hiveId}/${w.id} shown running, its process ${w.pid} gone`);
	}
	// Each subscriber's ids strictly increasing between resets, and gapless for one that takes every type.
	for (const s of h.streams) {
		let last = Number.NEGATIVE_INFINITY;
		for (const id of s.ids) {
			if (id === null) {
				last = Number.NEGATIVE_INFINITY;
				continue;
			}
			if (id <= last) out.push(`subscriber ${s.subscriber}: event ${id} after ${last}`);
			else if (s.gapless && last !== Number.NEGATIVE_INFINITY && id !== last + 1)
				out.push(`subscriber ${s.subscriber}: event ${id} after ${last}, ${id - last - 1} missing`);
			last = id;
		}
	}
	return out;
}
