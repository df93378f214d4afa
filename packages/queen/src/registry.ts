import { randomBytes } from "node:crypto";
import {
	type Claim,
	type ClaimBody,
	type ExitRecord,
	type GpuInfo,
	type GpuView,
	type HeartbeatMessage,
	type HelloMessage,
	type HiveState,
	type HiveView,
	type QueenWorkerView,
	unpackStats,
	type WorkerEventMessage,
	type WorkerInfo,
	type WorkerTick,
} from "@apiary/protocol";
import { type Clock, systemClock } from "@apiary/kit/clock";
import { HttpError } from "@apiary/kit/errors";
import type { EventLog } from "./events.ts";
import type { Store } from "./store.ts";


export interface RegistryOptions {
	staleAfterMs: number;
	evictAfterMs: number;
	/** A GPU with this much memory in use or more is not free. */
	busyMemoryMiB: number;
	clock?: Clock;
}

interface HiveRec {
	id: string;
	instanceId: string;
	state: HiveState;
	version: string;
	host: HelloMessage["host"];
	driver: HelloMessage["driver"];
	lastSeen: number | null;
	lastSeenAt: string | null;
	connected: boolean;
	/** When the row was last written (monotonic), to write last_seen_at only now and then. */
	savedMono?: number;
}

interface WorkerRec {
	view: QueenWorkerView;
	/** sampledAt of the last stats published, to publish each sample once. */
	sampledAt: number | null;
}

/** A request the registry refuses: 404 no such thing, 409 it does not fit (fastify renders the label). */
export class RegistryError extends HttpError {
	override name = "RegistryError";
}

const key = (hiveId: string, id: string) => `${hiveId}/${id}`;

/**
 * A heartbeat that changes nothing but the hive's last-seen time rewrites
 * its row at most this often: liveness runs on the in-memory clock, and after
 * a queen restart every hive is `unknown` anyway, so the stored time only
 * tells an operator roughly when it was last heard from.
 */
const LAST_SEEN_WRITE_MS = 10_000;

/**
 * The fleet as the queen knows it: hot state in memory, every change written
 * through to SQLite and logged as an event in the same transaction.
 */
export class Registry {
	readonly store: Store;
	readonly events: EventLog;
	readonly o: Required<RegistryOptions>;
	private readonly hives = new Map<string, HiveRec>();
	private readonly workers = new Map<string, WorkerRec>();
	/** The same records by hive, so per-hive questions do not scan the fleet. */
	private readonly byHive = new Map<string, Map<string, WorkerRec>>();
	private readonly gpus = new Map<string, { hiveId: string; info: GpuInfo }>();
	private readonly claims = new Map<string, Claim & { expiresMono: number }>();
	private readonly startedMono: number;

	constructor(store: Store, events: EventLog, o: RegistryOptions) {
		this.store = store;
		this.events = events;
		this.o = { ...o, clock: o.clock ?? systemClock };
		this.startedMono = this.o.clock.now();
		this.load();
	}

	private get now() {
		return this.o.clock.now();
	}

	/** After a restart: everything back from disk, every hive `unknown` until it reconnects. */
	private load(): void {
		for (const r of this.store.q("SELECT id, instance_id, state, last_seen_at, info FROM hives").all() as {
			id: string;
			instance_id: string;
			state: HiveState;
			last_seen_at: string | null;
			info: string;
		}[]) {
			const info = JSON.parse(r.info);
			this.hives.set(r.id, {
				id: r.id,
				instanceId: r.instance_id,
				state: r.state === "lost" || r.state === "left" ? r.state : "unknown",
				version: info.version,
				host: info.host,
				driver: info.driver,
				lastSeen: null,
				lastSeenAt: r.last_seen_at,
				connected: false,
			});
		}
		for (const r of this.store.q("SELECT hive_id, id, info FROM workers").all() as { hive_id: string; id: string; info: string }[]) {
			this.putWorker(r.hive_id, r.id, { view: JSON.parse(r.info), sampledAt: null });
		}
		for (const r of this.store.q("SELECT hive_id, uuid, info FROM gpus").all() as { hive_id: string; uuid: string; info: string }[]) {
			this.gpus.set(key(r.hive_id, r.uuid), { hiveId: r.hive_id, info: JSON.parse(r.info) });
		}
		const wall = this.o.clock.wall();
		for (const r of this.store.q("SELECT id, holder, gpus, created_at, expires_at FROM claims").all() as {
			id: string;
			holder: string;
			gpus: string;
			created_at: string;
			expires_at: string;
		}[]) {
			this.claims.set(r.id, {
				id: r.id,
				holder: r.holder,
				gpus: JSON.parse(r.gpus),
				createdAt: r.created_at,
				expiresAt: r.expires_at,
				expiresMono: this.now + (Date.parse(r.expires_at) - wall),
			});
		}
		this.store.tx(() => this.store.run("UPDATE hives SET state = 'unknown' WHERE state NOT IN ('lost', 'left')"));
	}

	/** Run a change in one transaction and publish its events after commit. */
	private change<T>(fn: () => T): T {
		try {
			const out = this.store.tx(() => {
				const r = fn();
				this.events.persist();
				return r;
			});
			this.events.flush();
			return out;
		} catch (err) {
			this.events.discard();
			throw err;
		}
	}

	private putWorker(hiveId: string, id: string, rec: WorkerRec): void {
		this.workers.set(key(hiveId, id), rec);
		let m = this.byHive.get(hiveId);
		if (!m) {
			m = new Map();
			this.byHive.set(hiveId, m);
		}
		m.set(id, rec);
	}

	private hiveWorkers(hiveId: string): Iterable<WorkerRec> {
		return this.byHive.get(hiveId)?.values() ?? [];
	}

	private saveHive(h: HiveRec): void {
		h.savedMono = this.now;
		this.store.run("INSERT INTO hives (id, instance_id, state, last_seen_at, info) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET instance_id = excluded.instance_id, state = excluded.state, last_seen_at = excluded.last_seen_at, info = excluded.info", h.id, h.instanceId, h.state, h.lastSeenAt, JSON.stringify({ version: h.version, host: h.host, driver: h.driver }));
	}

	private saveWorker(v: QueenWorkerView): void {
		this.store.run("INSERT INTO workers (hive_id, id, state, info) VALUES (?, ?, ?, ?) ON CONFLICT(hive_id, id) DO UPDATE SET state = excluded.state, info = excluded.info", v.hiveId, v.id, v.state, JSON.stringify(v));
	}

	private touch(h: HiveRec): void {
		h.lastSeen = this.now;
		h.lastSeenAt = new Date(this.o.clock.wall()).toISOString();
	}

	// ---- ingest -------------------------------------------------------------------------

	hello(m: HelloMessage): void {
		this.change(() => {
			const prev = this.hives.get(m.hiveId);
			const h: HiveRec = {
				id: m.hiveId,
				instanceId: m.instanceId,
				state: "ready",
				version: m.version,
				host: m.host,
				driver: m.driver,
				lastSeen: null,
				lastSeenAt: null,
				connected: true,
			};
			this.touch(h);
			this.hives.set(m.hiveId, h);
			this.saveHive(h);
			if (!prev) this.events.append("hive.joined", { hive: this.hiveView(h) }, h.id);
			else if (prev.instanceId !== m.instanceId) {
				this.events.append("hive.restarted", { hiveId: h.id, previousInstanceId: prev.instanceId, instanceId: m.instanceId, hive: this.hiveView(h) }, h.id);
			} else this.events.append("hive.joined", { hive: this.hiveView(h), reconnected: true, previousState: prev.state }, h.id);
			this.applyGpus(h.id, m.gpus);
		});
	}

	/** Reconcile the hive's whole snapshot. Returns nothing; the caller acks by seq after commit. */
	heartbeat(hiveId: string, m: HeartbeatMessage, fresh: boolean): void {
		const h = this.hives.get(hiveId);
		if (!h) throw new RegistryError(409, "heartbeat before hello");
		this.change(() => {
			const wasNotReady = h.state !== "ready";
			this.touch(h);
			h.state = "ready";
			h.connected = true;
			if (wasNotReady || this.now - (h.savedMono ?? Number.NEGATIVE_INFINITY) >= LAST_SEEN_WRITE_MS) this.saveHive(h);
			if (wasNotReady) this.events.append("hive.joined", { hive: this.hiveView(h), reconnected: true }, h.id);
			const known = this.byHive.get(hiveId);
			for (const w of m.snapshot.workers) {
				if ("s" in w) this.applyTick(hiveId, w, known?.get(w.id));
				else this.applyWorker(hiveId, w);
			}
			// The first snapshot of a (re)started hive is complete: a worker the queen
			// thought running that is not in it is gone.
			if (fresh) {
				const seen = new Set(m.snapshot.workers.map((w) => w.id));
				for (const rec of this.hiveWorkers(hiveId)) {
					const v = rec.view;
					if (v.state === "running" && !seen.has(v.id)) this.evict(v, "absent from the hive's snapshot after it reconnected");
				}
			}
			this.applyGpus(hiveId, m.snapshot.gpu.gpus);
		});
	}

	workerEvent(hiveId: string, m: WorkerEventMessage): void {
		const h = this.hives.get(hiveId);
		if (!h) throw new RegistryError(409, "event before hello");
		this.change(() => {
			this.touch(h);
			this.applyWorker(hiveId, m.worker);
		});
	}

	bye(hiveId: string): void {
		const h = this.hives.get(hiveId);
		if (!h) return;
		this.change(() => {
			h.state = "left";
			h.connected = false;
			this.saveHive(h);
			this.events.append("hive.left", { hiveId }, hiveId);
			for (const rec of this.hiveWorkers(hiveId)) {
				if (rec.view.state === "running") this.evict(rec.view, "its hive left");
			}
		});
	}

	disconnected(hiveId: string): void {
		const h = this.hives.get(hiveId);
		if (h) h.connected = false;
	}

	private applyWorker(hiveId: string, w: WorkerInfo): void {
		const k = key(hiveId, w.id);
		const rec = this.workers.get(k);
		const { env: _env, state, ...rest } = w;
		if (state === "exited" && w.exit) {
			const inserted = this.store.run("INSERT OR IGNORE INTO exits (hive_id, worker_id, started_at, record) VALUES (?, ?, ?, ?)", hiveId, w.id, w.startedAt, JSON.stringify(w.exit));
			if (rec?.view.state === "exited" && rec.view.startedAt === w.startedAt) return;
			const view: QueenWorkerView = { ...rest, hiveId, state: "exited", exit: w.exit };
			this.putWorker(hiveId, w.id, { view, sampledAt: w.stats?.sampledAt ?? null });
			this.saveWorker(view);
			if (inserted.changes > 0 || rec?.view.state === "running") this.events.append("worker.exited", { hiveId, workerId: w.id, exit: w.exit, worker: view }, hiveId, w.id);
			if (rec?.view.state === "running") this.gpusChanged(hiveId, view.gpus);
			return;
		}
		const view: QueenWorkerView = { ...rest, hiveId, state: "running", exit: null };
		if (!rec || rec.view.state !== "running" || rec.view.startedAt !== w.startedAt) {
			this.putWorker(hiveId, w.id, { view, sampledAt: w.stats?.sampledAt ?? null });
			this.saveWorker(view);
			this.events.append("worker.spawned", { hiveId, worker: view }, hiveId, w.id);
			this.gpusChanged(hiveId, view.gpus);
			return;
		}
		rec.view = view;
		// Stats are hot state: kept in memory (and in the event log's in-memory
		// window), not rewritten into the workers table every tick (the next
		// heartbeat brings them back).
		if (w.stats && w.stats.sampledAt !== rec.sampledAt) {
			rec.sampledAt = w.stats.sampledAt;
			this.events.append("worker.updated", { hiveId, workerId: w.id, stats: w.stats }, hiveId, w.id);
		}
	}

	/** Stats of a worker described earlier on this connection (`rec`: its record, looked up by hive). */
	private applyTick(hiveId: string, t: WorkerTick, rec: WorkerRec | undefined): void {
		// Unknown (e.g. described before a queen restart that lost it): the hive
		// describes every worker in full again when it reconnects.
		if (!rec || rec.view.state !== "running" || rec.view.startedAt !== t.startedAt || !t.s) return;
		const stats = unpackStats(t.s);
		if (stats.sampledAt === rec.sampledAt) return;
		rec.sampledAt = stats.sampledAt;
		rec.view.stats = stats;
		rec.view.pid = t.pid;
		this.events.append("worker.updated", { hiveId, workerId: t.id, stats }, hiveId, t.id);
	}

	private evict(v: QueenWorkerView, reason: string): void {
		v.state = "evicted";
		this.saveWorker(v);
		this.events.append("worker.evicted", { hiveId: v.hiveId, workerId: v.id, reason }, v.hiveId, v.id);
		this.gpusChanged(v.hiveId, v.gpus);
	}

	/** A worker holding GPUs came or went: their free/held state changed. */
	private gpusChanged(hiveId: string, held: string[]): void {
		for (const id of held) {
			for (const g of this.gpus.values()) {
				if (g.hiveId === hiveId && (String(g.info.index) === id || g.info.uuid === id)) this.events.append("gpu.updated", { hiveId, gpu: this.gpuView(hiveId, g.info) }, hiveId);
			}
		}
	}

	private applyGpus(hiveId: string, gpus: GpuInfo[]): void {
		for (const g of gpus) {
			const k = key(hiveId, g.uuid);
			const prev = this.gpus.get(k)?.info;
			this.gpus.set(k, { hiveId, info: g });
			if (!prev || gpuChanged(prev, g)) {
				this.store.run("INSERT INTO gpus (hive_id, uuid, info) VALUES (?, ?, ?) ON CONFLICT(hive_id, uuid) DO UPDATE SET info = excluded.info", hiveId, g.uuid, JSON.stringify(g));
				this.events.append("gpu.updated", { hiveId, gpu: this.gpuView(hiveId, g) }, hiveId);
			}
		}
	}

	// ---- liveness and expiry, on the queen's clock ----------------------------------------------

	/** ready → stale → lost; lost evicts the hive's workers. Also expires claims. */
	checkLiveness(): void {
		const now = this.now;
		this.change(() => {
			for (const h of this.hives.values()) {
				if (h.state === "lost" || h.state === "left") continue;
				const since = h.lastSeen ?? this.startedMono;
				const age = now - since;
				if (age > this.o.evictAfterMs) {
					h.state = "lost";
					h.connected = false;
					this.saveHive(h);
					const evicted: string[] = [];
					for (const rec of this.hiveWorkers(h.id)) {
						if (rec.view.state === "running") {
							this.evict(rec.view, "its hive was lost");
							evicted.push(rec.view.id);
						}
					}
					this.events.append("hive.lost", { hiveId: h.id, lastSeenAt: h.lastSeenAt, evictedWorkers: evicted }, h.id);
				} else if (h.state === "ready" && age > this.o.staleAfterMs) {
					h.state = "stale";
					this.saveHive(h);
					this.events.append("hive.stale", { hiveId: h.id, lastSeenAt: h.lastSeenAt, lastSeenAgoMs: Math.round(age) }, h.id);
				}
			}
			for (const c of this.claims.values()) if (c.expiresMono <= now) this.dropClaim(c, "expired");
		});
	}

	// ---- claims -------------------------------------------------------------------------------

	claim(req: ClaimBody): Claim {
		return this.change(() => {
			const free = this.listGpus({ free: true, minMemoryMiB: req.minMemoryMiB });
			let pick: GpuView[] = [];
			if (req.sameHive) {
				const byHive = new Map<string, GpuView[]>();
				for (const g of free) byHive.set(g.hiveId, [...(byHive.get(g.hiveId) ?? []), g]);
				// Best fit: the hive with the fewest free GPUs that still has enough.
				const fits = [...byHive.values()].filter((l) => l.length >= req.count).sort((a, b) => a.length - b.length);
				pick = fits[0]?.slice(0, req.count) ?? [];
			} else pick = free.slice(0, req.count);
			if (pick.length < req.count) {
				throw new RegistryError(409, `not enough free GPUs: wanted ${req.count}${req.minMemoryMiB ? ` with ≥ ${req.minMemoryMiB} MiB free` : ""}${req.sameHive ? " on one hive" : ""}, ${req.sameHive ? "no hive has that many" : `${free.length} free`}`);
			}
			const wall = this.o.clock.wall();
			const c = {
				id: `c-${randomBytes(6).toString("hex")}`,
				holder: req.holder,
				gpus: pick.map((g) => ({ hiveId: g.hiveId, uuid: g.uuid, index: g.index })),
				createdAt: new Date(wall).toISOString(),
				expiresAt: new Date(wall + req.ttlSeconds * 1000).toISOString(),
				expiresMono: this.now + req.ttlSeconds * 1000,
			};
			this.claims.set(c.id, c);
			this.store.run("INSERT INTO claims (id, holder, gpus, created_at, expires_at) VALUES (?, ?, ?, ?, ?)", c.id, c.holder, JSON.stringify(c.gpus), c.createdAt, c.expiresAt);
			this.events.append("claim.created", { claim: publicClaim(c) });
			return publicClaim(c);
		});
	}

	release(id: string): Claim {
		const c = this.claims.get(id);
		if (!c) throw new RegistryError(404, `no claim ${id}`);
		this.change(() => this.dropClaim(c, "released"));
		return publicClaim(c);
	}

	private dropClaim(c: Claim & { expiresMono: number }, reason: string): void {
		this.claims.delete(c.id);
		this.store.run("DELETE FROM claims WHERE id = ?", c.id);
		this.events.append("claim.released", { claim: publicClaim(c), reason });
	}

	// ---- queries ------------------------------------------------------------------------------

	hiveView(h: HiveRec): HiveView {
		let workers = 0;
		for (const r of this.hiveWorkers(h.id)) if (r.view.state === "running") workers++;
		let gpus = 0;
		for (const g of this.gpus.values()) if (g.hiveId === h.id) gpus++;
		return {
			id: h.id,
			instanceId: h.instanceId,
			state: h.state,
			version: h.version,
			host: h.host,
			driver: h.driver,
			lastSeenAt: h.lastSeenAt,
			lastSeenAgoMs: h.lastSeen === null ? null : Math.round(this.now - h.lastSeen),
			connected: h.connected,
			workers,
			gpus,
		};
	}

	listHives(): HiveView[] {
		return [...this.hives.values()].sort((a, b) => a.id.localeCompare(b.id)).map((h) => this.hiveView(h));
	}

	getHive(id: string): HiveView | null {
		const h = this.hives.get(id);
		return h ? this.hiveView(h) : null;
	}

	listWorkers(f: { hive?: string; state?: string; label?: [string, string] } = {}): QueenWorkerView[] {
		return [...(f.hive ? this.hiveWorkers(f.hive) : this.workers.values())]
			.map((r) => r.view)
			.filter((v) => (!f.hive || v.hiveId === f.hive) && (!f.state || f.state === "all" || v.state === f.state) && (!f.label || v.labels[f.label[0]] === f.label[1]))
			.sort((a, b) => (a.hiveId === b.hiveId ? a.id.localeCompare(b.id) : a.hiveId.localeCompare(b.hiveId)));
	}

	getWorker(id: string, hive?: string): QueenWorkerView | null {
		const all = this.listWorkers({ hive }).filter((v) => v.id === id);
		return all.find((v) => v.state === "running") ?? all[0] ?? null;
	}

	exitsOf(hiveId: string, workerId: string): ExitRecord[] {
		return (this.store.q("SELECT record FROM exits WHERE hive_id = ? AND worker_id = ? ORDER BY started_at").all(hiveId, workerId) as { record: string }[]).map((r) => JSON.parse(r.record));
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
		const free =
			hive?.state === "ready" && !g.stale && heldBy.size === 0 && !claim && (g.memoryUsedMiB === null || g.memoryUsedMiB < this.o.busyMemoryMiB);
		return { ...g, hiveId, free, heldBy: [...heldBy], claimId: claim?.id ?? null };
	}

	/** Best fit first: the smallest free memory that still fits, then hive and index. */
	listGpus(f: { free?: boolean; minMemoryMiB?: number; name?: string; hive?: string } = {}): GpuView[] {
		const freeMem = (g: GpuView) => g.memoryFreeMiB ?? (g.memoryTotalMiB ?? 0) - (g.memoryUsedMiB ?? 0);
		return [...this.gpus.values()]
			.map(({ hiveId, info }) => this.gpuView(hiveId, info))
			.filter(
				(g) =>
					(f.free === undefined || g.free === f.free) &&
					(f.minMemoryMiB === undefined || freeMem(g) >= f.minMemoryMiB) &&
					(!f.name || g.name.toLowerCase().includes(f.name.toLowerCase())) &&
					(!f.hive || g.hiveId === f.hive),
			)
			.sort((a, b) => freeMem(a) - freeMem(b) || a.hiveId.localeCompare(b.hiveId) || a.index - b.index);
	}

	listClaims(): Claim[] {
		return [...this.claims.values()].map(publicClaim);
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

function publicClaim(c: Claim): Claim {
	return { id: c.id, holder: c.holder, gpus: c.gpus, createdAt: c.createdAt, expiresAt: c.expiresAt };
}

function gpuChanged(a: GpuInfo, b: GpuInfo): boolean {
	return (
		a.memoryUsedMiB !== b.memoryUsedMiB ||
		a.utilizationGpu !== b.utilizationGpu ||
		a.stale !== b.stale ||
		a.processes.length !== b.processes.length ||
		a.processes.some((p, i) => p.pid !== b.processes[i]?.pid || p.workerId !== b.processes[i]?.workerId)
	);
}
