import {
	type Claim,
	type Drain,
	type ExitRecord,
	type GpuInfo,
	type GpuView,
	type HiveView,
	type PackedStats,
	type QueenEvent,
	type QueenWorkerView,
	unpackStats,
	type WorkerStats,
} from "@apiary/protocol";
import { type Clock, systemClock } from "@apiary/kit/clock";
import type { EventLog } from "./events.ts";
import { Advisor } from "./advise/advisor.ts";
import type { Candidate } from "./placement/choose.ts";
import { byBestFit, freeMemoryMiB, isGpuFree } from "./gpu-pick.ts";
import type { LatestSample } from "./latest-sample.ts";
import type { QueenStore } from "./store/store.ts";
import { claimView, gpuView, type HiveRec, hiveView } from "./views.ts";

export interface RegistryOptions {
	staleAfterMs: number;
	evictAfterMs: number;
	/** A GPU with this much memory in use or more is not free. */
	busyMemoryMiB: number;
	/** Labels that, with the profile, group runs for right-sizing (default: suite). */
	adviseLabels?: string[];
	clock?: Clock;
	log?: (msg: string, extra?: object) => void;
	/**
	 * How often checkLiveness is called. Given, a check later than twice this
	 * is the queen's own stall (its event loop blocked: CPU starved, a long
	 * GC, a backlog), and that time is not counted as any hive's silence.
	 */
	livenessEveryMs?: number;
	/**
	 * The share (0–1) of the time since its last call that the queen's event
	 * loop was busy. Saturated (≥ BUSY_FORGIVE), the queen may not have read
	 * what its hives' sockets hold (Node shows no socket's unread bytes: this
	 * is the backlog's measure), so a connected hive's silence meanwhile is
	 * not counted against it.
	 */
	busy?: () => number;
}

export interface WorkerRec {
	view: QueenWorkerView;
	/** sampledAt of the last stats published, to publish each sample once. */
	sampledAt: number | null;
	/**
	 * Its latest sample from a heartbeat tick, overwritten in place by the
	 * next (then `view.stats` is null and the stats are unpacked from this
	 * when read).
	 */
	stats?: LatestSample | null;
	/** Id and time of its latest `worker.updated`: a resume is sent each worker's latest sample after its cursor. */
	sampleId?: number;
	sampleAt?: string;
}

/** Its latest stats, unpacked. */
const statsOf = (r: WorkerRec): WorkerStats | null => (r.stats ? unpackStats(r.stats.packed()) : r.view.stats);

/** The worker as served: its latest stats unpacked. */
export const workerView = (r: WorkerRec): QueenWorkerView => (r.stats ? { ...r.view, stats: statsOf(r) } : r.view);

/** A `worker.updated` event's stats, kept packed until the event is serialized (with nobody subscribed, never). */
export class PackedSample {
	readonly s: PackedStats;
	constructor(s: PackedStats) {
		this.s = s;
	}
	toJSON(): WorkerStats {
		return unpackStats(this.s);
	}
}

export type ClaimRec = Claim & { expiresMono: number };

export const key = (hiveId: string, id: string) => `${hiveId}/${id}`;

/**
 * The fleet as the queen holds it in memory, loaded from the store at start,
 * and every read-side question about it. Registry (registry.ts) makes the
 * changes.
 */
export class FleetState {
	readonly store: QueenStore;
	readonly events: EventLog;
	readonly o: Required<Omit<RegistryOptions, "livenessEveryMs" | "busy">> & Pick<RegistryOptions, "livenessEveryMs" | "busy">;
	/** Right-sizing: the run history and its recommendations. */
	readonly advisor: Advisor;
	protected readonly hives = new Map<string, HiveRec>();
	protected readonly workers = new Map<string, WorkerRec>();
	/** The same records by hive, so per-hive questions do not scan the fleet. */
	protected readonly byHive = new Map<string, Map<string, WorkerRec>>();
	/**
	 * The hives holding a record of each worker id: a question by id alone (is
	 * this id running anywhere, which hives report it) does not scan the
	 * fleet. Each placement asked it of every worker, sorted: seconds a
	 * placement with 250,000 workers known (bench row 17).
	 */
	private readonly hivesById = new Map<string, Set<string>>();
	protected readonly gpus = new Map<string, { hiveId: string; info: GpuInfo }>();
	/**
	 * Each hive's GPU keys ever set: a superset of those in `gpus` (only
	 * added to, so a rolled-back change never hides one), checked against
	 * `gpus` when used. A hive's complete report looks at its own GPUs
	 * through it, not the fleet's: that scan, once per heartbeat, was a fifth
	 * of a queen's CPU with 3,000 hives (bench row 17).
	 */
	protected readonly gpuKeysOf = new Map<string, Set<string>>();
	protected setGpu(k: string, g: { hiveId: string; info: GpuInfo }): void {
		this.gpus.set(k, g);
		const ks = this.gpuKeysOf.get(g.hiveId);
		if (ks) ks.add(k);
		else this.gpuKeysOf.set(g.hiveId, new Set([k]));
	}
	/** The hive's GPUs now, through its keys: not a scan of the fleet's (per hive view, that was quadratic in a listing). */
	protected *gpusOf(hiveId: string): Iterable<{ hiveId: string; info: GpuInfo }> {
		for (const k of this.gpuKeysOf.get(hiveId) ?? []) {
			const g = this.gpus.get(k);
			if (g && g.hiveId === hiveId) yield g;
		}
	}
	protected readonly claims = new Map<string, Claim & { expiresMono: number }>();
	protected readonly startedMono: number;

	constructor(store: QueenStore, events: EventLog, o: RegistryOptions) {
		this.store = store;
		this.events = events;
		this.o = { ...o, clock: o.clock ?? systemClock, adviseLabels: o.adviseLabels ?? ["suite"], log: o.log ?? (() => {}) };
		this.advisor = new Advisor(store.runs, { keyLabels: this.o.adviseLabels, log: this.o.log });
		this.startedMono = this.o.clock.now();
		this.load();
	}

	protected get now() {
		return this.o.clock.now();
	}

	/** After a restart: everything back from disk, every hive `unknown` until it reconnects. */
	private load(): void {
		for (const r of this.store.hives.all()) {
			// Nobody is connected after a restart: unknown until the hive says hello (unless other queens serve it).
			const state = this.store.shared || r.state === "lost" || r.state === "left" ? r.state : "unknown";
			this.hives.set(r.id, { ...r, state, lastSeen: null, connected: false });
		}
		for (const v of this.store.workers.all()) this.putWorker(v.hiveId, v.id, { view: v, sampledAt: null });
		for (const { hiveId, info } of this.store.gpus.all()) this.setGpu(key(hiveId, info.uuid), { hiveId, info });
		const wall = this.o.clock.wall();
		for (const c of this.store.claims.all()) this.claims.set(c.id, { ...c, expiresMono: this.now + (Date.parse(c.expiresAt) - wall) });
		this.store.tx(() => this.store.hives.markAllUnknown());
	}

	/**
	 * Memory changes of the transaction in progress (registry.change), each
	 * undone in reverse if its commit fails: memory never says what the
	 * database refused to store (a full disk).
	 */
	protected undo: (() => void)[] | null = null;

	/** Undoes later changes to `target`'s own fields if the transaction fails. */
	protected journal<T extends object>(target: T): void {
		if (!this.undo) return;
		const copy = { ...target };
		this.undo.push(() => Object.assign(target, copy));
	}

	/** Undoes a later set or delete of `k` in `map` if the transaction fails. */
	protected journalKey<K, V>(map: Map<K, V>, k: K): void {
		if (!this.undo) return;
		const had = map.has(k);
		const prev = map.get(k);
		this.undo.push(() => (had ? map.set(k, prev as V) : map.delete(k)));
	}

	protected putWorker(hiveId: string, id: string, rec: WorkerRec): void {
		const prev = this.workers.get(key(hiveId, id));
		this.undo?.push(() => (prev ? this.putWorker(hiveId, id, prev) : this.removeWorker(hiveId, id)));
		this.workers.set(key(hiveId, id), rec);
		let m = this.byHive.get(hiveId);
		if (!m) {
			m = new Map();
			this.byHive.set(hiveId, m);
		}
		m.set(id, rec);
		let hs = this.hivesById.get(id);
		if (!hs) {
			hs = new Set();
			this.hivesById.set(id, hs);
		}
		hs.add(hiveId);
	}

	protected removeWorker(hiveId: string, id: string): void {
		const prev = this.workers.get(key(hiveId, id));
		if (prev) this.undo?.push(() => this.putWorker(hiveId, id, prev));
		this.forget(hiveId, id);
	}

	/** Every record of a hive's workers gone from memory (not undone: its rows were replaced by another queen's). */
	protected dropHiveWorkers(hiveId: string): void {
		for (const id of [...(this.byHive.get(hiveId)?.keys() ?? [])]) this.forget(hiveId, id);
		this.byHive.delete(hiveId);
	}

	private forget(hiveId: string, id: string): void {
		this.workers.delete(key(hiveId, id));
		this.byHive.get(hiveId)?.delete(id);
		const hs = this.hivesById.get(id);
		hs?.delete(hiveId);
		if (hs?.size === 0) this.hivesById.delete(id);
	}

	/**
	 * Exited and evicted workers leave memory past a retention: beyond the
	 * newest `keep` per hive, or ended more than `maxAgeMs` ago. Their records
	 * stay in the database (read from there on a lookup) until its own, longer
	 * retention. Returns how many left.
	 */
	pruneExited(keep: number, maxAgeMs: number): number {
		const cutoff = this.o.clock.wall() - maxAgeMs;
		const endOf = (r: WorkerRec) => {
			const e = r.view.exit;
			const t = Date.parse(e?.endedAt ?? e?.endedBefore ?? r.view.startedAt);
			return Number.isNaN(t) ? 0 : t;
		};
		let pruned = 0;
		for (const [hiveId, m] of this.byHive) {
			const done = [...m.values()].filter((r) => r.view.state !== "running");
			const drop = new Set(done.filter((r) => endOf(r) < cutoff));
			const left = done.filter((r) => !drop.has(r));
			if (left.length > keep) for (const r of left.sort((a, b) => endOf(a) - endOf(b)).slice(0, left.length - keep)) drop.add(r);
			for (const r of drop) this.removeWorker(hiveId, r.view.id);
			pruned += drop.size;
		}
		return pruned;
	}

	protected hiveWorkers(hiveId: string): Iterable<WorkerRec> {
		return this.byHive.get(hiveId)?.values() ?? [];
	}

	// ---- queries ------------------------------------------------------------------------------

	hiveView(h: HiveRec): HiveView {
		let workers = 0;
		for (const r of this.hiveWorkers(h.id)) if (r.view.state === "running") workers++;
		let gpus = 0;
		for (const _ of this.gpusOf(h.id)) gpus++;
		return hiveView(h, { workers, gpus }, this.now, this.store.shared ? this.o.clock.wall() : undefined);
	}

	/** Every hive as placement weighs it: state, labels, size and what its running workers' limits commit. */
	/** Hives as placement weighs them; `only`: just these (each costs a walk of its workers). */
	candidates(connected: (hiveId: string) => boolean, only?: (hiveId: string) => boolean): Candidate[] {
		return [...this.hives.values()]
			.filter((h) => !only || only(h.id))
			.map((h) => {
				let cpu = 0;
				let mem = 0;
				for (const r of this.hiveWorkers(h.id)) {
					if (r.view.state !== "running") continue;
					cpu += r.view.limits.cpu ?? 0;
					mem += r.view.limits.memoryBytes ?? 0;
				}
				return {
					id: h.id,
					state: h.state,
					connected: connected(h.id),
					remoteSpawn: h.remoteSpawn !== false,
					drain: h.drain ?? null,
					labels: h.labels,
					cores: h.host.cores,
					memoryBytes: h.host.memoryBytes,
					committedCpu: cpu,
					committedMemoryBytes: mem,
				};
			});
	}

	/** The ids of a hive's running workers. */
	runningOn(hiveId: string): string[] {
		const out: string[] = [];
		for (const r of this.hiveWorkers(hiveId)) if (r.view.state === "running") out.push(r.view.id);
		return out;
	}

	/** Hives being drained, with their drains. */
	draining(): { id: string; drain: Drain }[] {
		const out: { id: string; drain: Drain }[] = [];
		for (const h of this.hives.values()) if (h.drain?.state === "draining") out.push({ id: h.id, drain: h.drain });
		return out;
	}

	getClaim(id: string): Claim | null {
		const c = this.claims.get(id);
		return c ? claimView(c) : null;
	}

	listHives(): HiveView[] {
		return [...this.hives.values()].sort((a, b) => a.id.localeCompare(b.id)).map((h) => this.hiveView(h));
	}

	getHive(id: string): HiveView | null {
		const h = this.hives.get(id);
		return h ? this.hiveView(h) : null;
	}

	listWorkers(f: { hive?: string; state?: string; label?: [string, string] } = {}): QueenWorkerView[] {
		return this.pageWorkers(f).items;
	}

	/**
	 * Workers in (hive, id) order, a page at a time: after `cursor` (the last
	 * (hive, id) of the previous page), at most `limit`, and the cursor of the
	 * next page when there is one. `recent`: exited ones, newest end first.
	 */
	pageWorkers(f: { hive?: string; state?: string; label?: [string, string]; limit?: number; after?: [string, string]; recent?: boolean }): {
		items: QueenWorkerView[];
		next: [string, string] | null;
	} {
		const [ah, ai] = f.after ?? ["", ""];
		const recs = [...(f.hive ? this.hiveWorkers(f.hive) : this.workers.values())].filter(
			(r) =>
				(!f.hive || r.view.hiveId === f.hive) &&
				(!f.state || f.state === "all" || r.view.state === f.state) &&
				(!f.label || r.view.labels[f.label[0]] === f.label[1]) &&
				(!f.after || r.view.hiveId > ah || (r.view.hiveId === ah && r.view.id > ai)),
		);
		const ended = (r: WorkerRec) => r.view.exit?.endedAt ?? r.view.exit?.endedBefore ?? r.view.startedAt;
		if (f.recent) recs.sort((a, b) => ended(b).localeCompare(ended(a)));
		else recs.sort((a, b) => (a.view.hiveId === b.view.hiveId ? (a.view.id < b.view.id ? -1 : 1) : a.view.hiveId < b.view.hiveId ? -1 : 1));
		const limit = f.limit ?? recs.length;
		const page = recs.slice(0, limit);
		const last = page.at(-1);
		return { items: page.map(workerView), next: !f.recent && recs.length > limit && last ? [last.view.hiveId, last.view.id] : null };
	}

	/**
	 * Hives and workers by state, and the hives out of rotation, in one pass
	 * with nothing copied: /metrics' gauges. Views of every hive and a copy of
	 * every worker were ~1 s of a scrape at 5,000 hives.
	 */
	counts(): { hives: Map<string, number>; workers: Map<string, number>; drains: { id: string; state: string }[] } {
		const hives = new Map<string, number>();
		const drains: { id: string; state: string }[] = [];
		for (const h of this.hives.values()) {
			hives.set(h.state, (hives.get(h.state) ?? 0) + 1);
			if (h.drain) drains.push({ id: h.id, state: h.drain.state });
		}
		const workers = new Map<string, number>();
		for (const r of this.workers.values()) workers.set(r.view.state, (workers.get(r.view.state) ?? 0) + 1);
		return { hives, workers, drains };
	}

	/** Whether this queen holds the hive (no view built). */
	hasHive(id: string): boolean {
		return this.hives.has(id);
	}

	/** How many hives this queen knows (the health check's count: no views built). */
	hiveCount(): number {
		return this.hives.size;
	}

	/** The hives that report a worker with this id (a worker is (hive, id): two hives may use one id). */
	hivesOfWorker(id: string): string[] {
		return [...(this.hivesById.get(id) ?? [])].sort();
	}

	/** The worker with this id (on this hive): one running if any, else the first hive's record. */
	getWorker(id: string, hive?: string): QueenWorkerView | null {
		const all: WorkerRec[] = [];
		for (const h of hive === undefined ? this.hivesOfWorker(id) : [hive]) {
			const r = this.byHive.get(h)?.get(id);
			if (r) all.push(r);
		}
		const r = all.find((x) => x.view.state === "running") ?? all[0];
		return r ? workerView(r) : null;
	}

	exitsOf(hiveId: string, workerId: string): Promise<ExitRecord[]> {
		return this.store.exits.of(hiveId, workerId);
	}

	gpuView(hiveId: string, g: GpuInfo): GpuView {
		const heldBy = new Set<string>();
		for (const r of this.hiveWorkers(hiveId)) {
			const v = r.view;
			if (v.state !== "running") continue;
			if (v.gpus.includes(String(g.index)) || v.gpus.includes(g.uuid)) heldBy.add(v.id);
		}
		for (const p of g.processes) if (p.workerId) heldBy.add(p.workerId);
		const claim = [...this.claims.values()].find((c) => c.gpus.some((x) => x.hiveId === hiveId && x.uuid === g.uuid));
		const hive = this.hives.get(hiveId);
		const free = isGpuFree(g, {
			hiveState: hive?.awaitingSnapshot ? "unknown" : hive?.state,
			cordoned: !!hive?.drain,
			heldBy: heldBy.size,
			claimed: !!claim,
			busyMemoryMiB: this.o.busyMemoryMiB,
		});
		return gpuView(hiveId, g, { heldBy, claimId: claim?.id ?? null, free });
	}

	/**
	 * Every GPU, and every MIG instance of a GPU in MIG mode as its own entry
	 * (placeable by its uuid); the MIG-mode GPU itself is not free (CUDA sees
	 * only its instances).
	 */
	private allGpuViews(only?: (hiveId: string) => boolean): GpuView[] {
		const out: GpuView[] = [];
		for (const { hiveId, info } of this.gpus.values()) {
			if (only && !only(hiveId)) continue;
			if (info.migMode !== "Enabled" || !info.mig?.length) {
				out.push(this.gpuView(hiveId, info));
				continue;
			}
			out.push({ ...this.gpuView(hiveId, info), free: false });
			for (const m of info.mig) {
				const inst: GpuInfo = {
					...info,
					uuid: m.uuid,
					name: `${info.name} MIG ${m.profile}`,
					memoryTotalMiB: m.memoryMiB,
					memoryUsedMiB: null,
					memoryFreeMiB: m.memoryMiB,
					utilizationGpu: null,
					utilizationMemory: null,
					processes: [],
					mig: undefined,
				};
				out.push({ ...this.gpuView(hiveId, inst), migParent: info.uuid });
			}
		}
		return out;
	}

	/**
	 * The fixed facts of every GPU and MIG instance (hive, name, total memory,
	 * MIG parent): what a request could ever use, without listGpus' who holds
	 * it now (which walks each hive's workers and the claims per GPU).
	 */
	gpuKinds(): { hiveId: string; name: string; memoryTotalMiB: number | null; migParent: string | null }[] {
		const out: { hiveId: string; name: string; memoryTotalMiB: number | null; migParent: string | null }[] = [];
		for (const { hiveId, info } of this.gpus.values()) {
			if (info.migMode !== "Enabled" || !info.mig?.length) {
				out.push({ hiveId, name: info.name, memoryTotalMiB: info.memoryTotalMiB, migParent: null });
				continue;
			}
			out.push({ hiveId, name: info.name, memoryTotalMiB: info.memoryTotalMiB, migParent: null });
			for (const m of info.mig) out.push({ hiveId, name: `${info.name} MIG ${m.profile}`, memoryTotalMiB: m.memoryMiB, migParent: info.uuid });
		}
		return out;
	}

	/** Each hive's id and labels (placement constraints), cheaply. */
	hiveLabels(): { id: string; labels: Record<string, string> }[] {
		return [...this.hives.values()].map((h) => ({ id: h.id, labels: h.labels }));
	}

	/** Best fit first: the smallest free memory that still fits, then hive and index. */
	listGpus(f: { free?: boolean; minMemoryMiB?: number; name?: string; hive?: string; hives?: (hiveId: string) => boolean } = {}): GpuView[] {
		const hive = f.hive;
		return this.allGpuViews(hive !== undefined ? (h) => h === hive : f.hives)
			.filter(
				(g) =>
					(f.free === undefined || g.free === f.free) &&
					(f.minMemoryMiB === undefined || freeMemoryMiB(g) >= f.minMemoryMiB) &&
					(!f.name || g.name.toLowerCase().includes(f.name.toLowerCase())) &&
					(!f.hive || g.hiveId === f.hive),
			)
			.sort(byBestFit);
	}

	listClaims(): Claim[] {
		return [...this.claims.values()].map(claimView);
	}

	/**
	 * Each worker's latest sample published after event `id`, as its
	 * `worker.updated`, oldest first: what a resume from `id` is sent besides
	 * the lifecycle events (coalesced per worker, latest wins, as a live
	 * subscriber's queue does). Numbered at commit, a sample carries the id of
	 * the event before it, so one carrying `id` itself may be after the cursor
	 * too: sent again rather than missed.
	 */
	samplesAfter(id: number): QueenEvent[] {
		const out: QueenEvent[] = [];
		const from = this.events.numberedAtCommit ? id : id + 1;
		for (const r of this.workers.values()) {
			if (r.sampleId === undefined || r.sampleId < from) continue;
			const { hiveId, id: workerId } = r.view;
			const stats = statsOf(r);
			if (stats) out.push({ id: r.sampleId, type: "worker.updated", at: r.sampleAt!, hiveId, workerId, data: { hiveId, workerId, stats } });
		}
		return out.sort((a, b) => a.id - b.id);
	}

	/** The whole current state, for a fresh SSE subscriber. */
	snapshot() {
		return {
			hives: this.listHives(),
			workers: this.listWorkers({ state: "running" }),
			gpus: this.listGpus(),
			claims: this.listClaims(),
			lastEventId: this.events.lastId,
		};
	}
}
