import { pacedLiveness } from "./heartbeat-pace.ts";
import { randomBytes } from "node:crypto";
import {
	type Claim,
	type ClaimBody,
	type GpuInfo,
	type HeartbeatMessage,
	checkPackedStats,
	packStats,
	type HelloMessage,
	type HiveView,
	type RunView,
	type PackedStats,
	type QueenEvent,
	type QueenWorkerView,
	type WorkerEventMessage,
	type WorkerInfo,
	type WorkerTick,
} from "@apiary/protocol";
import { HttpError } from "@apiary/kit/errors";
import { type ClaimRec, FleetState, key, PackedSample, type WorkerRec, workerView } from "./fleet-state.ts";
import { gpuChanged, healthChanged, pickGpus } from "./gpu-pick.ts";
import { LatestSample } from "./latest-sample.ts";
import { livenessTransition } from "./liveness.ts";
import { AUTO_PREFIX, type DrainAction, isAuto, nextDrain } from "./drain.ts";
import type { HiveSamples } from "./store/hives.ts";
import type { CommittedEvent, HiveRows } from "./store/pg/store.ts";
import { claimView, type HiveRec } from "./views.ts";

export type { RegistryOptions } from "./fleet-state.ts";

/** A request the registry refuses: 404 no such thing, 409 it does not fit (fastify renders the label). */
export class RegistryError extends HttpError {
	override name = "RegistryError";
}

/** The queen's store could not commit a change (503, 507 for a full disk); the change was not made. */
export class StoreError extends HttpError {
	override name = "StoreError";
}

/**
 * A heartbeat that changes nothing but the hive's last-seen time rewrites
 * its row at most this often: liveness runs on the in-memory clock, and after
 * a queen restart every hive is `unknown` anyway, so the stored time only
 * tells an operator roughly when it was last heard from.
 */
const LAST_SEEN_WRITE_MS = 10_000;
/**
 * Several queens: a hive's row is renewed this often, carrying its workers'
 * samples to the other queens and its last sight for the sweep once its queen
 * is gone. Every 5 s that was 12 row writes per hive a minute on its own, the
 * whole of the fleet's goal (issue #23); a live queen judges its hives itself.
 */
const SHARED_RENEW_MS = 10_000;
/** …so another queen's sweep allows this much more before a hive is stale. */
const SHARED_SLACK_MS = SHARED_RENEW_MS + 2_000;
/** Advisory locks several queens take: claims are decided one at a time fleet-wide; one queen sweeps at a time. */
/** Event-loop busy share past which the queen is taken as behind on its sockets (fleet-state.ts, `busy`). */
const BUSY_FORGIVE = 0.9;
export const CLAIMS_LOCK = 70_700_010;
export const SWEEP_LOCK = 70_700_011;

/**
 * The fleet as the queen knows it: hot state in memory, every change written
 * through to the store and logged as an event in the same transaction.
 * FleetState holds the records and answers the questions; this makes changes.
 */
export class Registry extends FleetState {
	/**
	 * The worker a request names. A worker is (hive, id): an id that more than
	 * one hive reports needs its hive, so a hive cannot take over another's
	 * worker by reporting the same id (409 naming the hives).
	 */
	findWorker(id: string, hive?: string): QueenWorkerView {
		if (hive === undefined) {
			const hives = this.hivesOfWorker(id);
			if (hives.length > 1) throw new RegistryError(409, `worker id ${id} is reported by ${hives.length} hives (${hives.join(", ")}): name one with ?hive=`);
		}
		const w = this.getWorker(id, hive);
		if (!w) throw new RegistryError(404, `no worker ${id}${hive ? ` on hive ${hive}` : ""}`);
		return w;
	}

	/** findWorker, and failing that the database: an exited worker memory no longer keeps (pruneExited) is still found. */
	async findWorkerAnywhere(id: string, hive?: string): Promise<QueenWorkerView> {
		try {
			return this.findWorker(id, hive);
		} catch (err) {
			if (!(err instanceof RegistryError) || err.statusCode !== 404) throw err;
			const stored = await this.store.workers.find(id, hive);
			if (stored.length > 1)
				throw new RegistryError(
					409,
					`worker id ${id} is reported by ${stored.length} hives (${stored
						.map((w) => w.hiveId)
						.sort()
						.join(", ")}): name one with ?hive=`,
				);
			if (stored.length === 0) throw err;
			return stored[0]!;
		}
	}

	/** Run a change in one transaction and publish its events after commit. */
	private change<T>(fn: () => T): T {
		const outer = this.undo === null;
		if (outer) this.undo = [];
		const commits = this.store.writeCommits;
		try {
			const out = this.store.tx(() => {
				const r = fn();
				this.events.persist();
				return r;
			});
			if (outer) {
				this.undo = null;
				if (commits === undefined || (this.store.writeCommits ?? 0) > commits) this.storeFailure = null;
			}
			this.events.flush();
			return out;
		} catch (err) {
			this.events.discard();
			if (!outer) throw err;
			// What the failed transaction changed in memory goes with it (claims: a client told that
			// its claim failed must not find it listed).
			// Detached first: undoing goes through the same setters, which must not journal again.
			const undo = this.undo!;
			this.undo = null;
			for (const u of undo.reverse()) u();
			// The database's own failures (a full disk, I/O) are the store's; anything else (bad input, a bug) is as thrown.
			if ((err as { code?: unknown })?.code === "ERR_SQLITE_ERROR") throw this.storeFailed(err);
			throw err;
		}
	}

	/** The store's last failure, until a transaction commits again (/healthz says it). */
	storeFailure: { error: string; since: string; status: number } | null = null;

	/** A store failure as the client gets it: the database's own error, 507 for a full disk. */
	private storeFailed(err: unknown): StoreError {
		const msg = (err as Error)?.message ?? String(err);
		const full = /full|ENOSPC|SQLITE_FULL/i.test(msg);
		const status = full ? 507 : 503;
		this.storeFailure = { error: msg, since: this.storeFailure?.since ?? new Date(this.o.clock.wall()).toISOString(), status };
		return new StoreError(status, `the queen's store failed: ${msg}${full ? " (its disk is full)" : ""}; nothing was changed`, { cause: err });
	}

	private saveHive(h: HiveRec): void {
		h.savedMono = this.now;
		if (!this.store.shared || h.state !== "ready") {
			this.store.hives.save(h);
			return;
		}
		// Several queens: its running workers' latest samples ride on its renewal (the other queens poll them).
		const samples: HiveSamples = [];
		for (const r of this.hiveWorkers(h.id)) {
			if (r.view.state !== "running") continue;
			const s = r.stats ? r.stats.packed() : r.view.stats ? packStats(r.view.stats) : null;
			if (s) samples.push({ id: r.view.id, startedAt: r.view.startedAt, s });
		}
		this.store.hives.save({ ...h, samples });
	}

	private saveWorker(r: WorkerRec): void {
		this.store.workers.save(workerView(r));
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
				labels: m.labels ?? {},
				remoteSpawn: m.remoteSpawn !== false,
				cordonOnUnhealthyGpu: m.cordonOnUnhealthyGpu === true,
				// Durable: a cordon or drain outlives the hive's restarts.
				drain: prev?.drain ?? null,
				lastSeen: null,
				lastSeenAt: null,
				connected: true,
				awaitingSnapshot: true,
			};
			this.touch(h);
			this.journalKey(this.hives, m.hiveId);
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
			this.journal(h);
			const wasNotReady = h.state !== "ready";
			h.storage = m.snapshot.storage ?? null;
			this.touch(h);
			h.state = "ready";
			h.connected = true;
			h.awaitingSnapshot = false;
			const every = this.store.shared ? SHARED_RENEW_MS : LAST_SEEN_WRITE_MS;
			if (wasNotReady || this.now - (h.savedMono ?? Number.NEGATIVE_INFINITY) >= every) this.saveHive(h);
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
					if (rec.view.state === "running" && !seen.has(rec.view.id)) this.evict(rec, "absent from the hive's snapshot after it reconnected");
				}
			}
			const gpu = m.snapshot.gpu;
			this.applyGpus(hiveId, gpu.gpus, gpu.state === "ok" || gpu.state === "absent");
		});
	}

	/**
	 * A message of this hive arrived (it is applied when its turn in the
	 * intake comes): the hive is not silent meanwhile. Memory only, and only
	 * for a hive connected here; its state changes when the message is applied.
	 */
	heard(hiveId: string): void {
		const h = this.hives.get(hiveId);
		if (h?.connected && h.lastSeen !== null) this.touch(h);
	}

	/** The heartbeat interval this hive was told (0: its own tick): its liveness is judged by it. Memory only. */
	setPace(hiveId: string, paceMs: number): void {
		const h = this.hives.get(hiveId);
		if (h) h.paceMs = paceMs;
	}

	workerEvent(hiveId: string, m: WorkerEventMessage): void {
		const h = this.hives.get(hiveId);
		if (!h) throw new RegistryError(409, "event before hello");
		this.change(() => {
			this.journal(h);
			this.touch(h);
			this.applyWorker(hiveId, m.worker);
		});
	}

	bye(hiveId: string): void {
		const h = this.hives.get(hiveId);
		if (!h) return;
		this.change(() => {
			this.journal(h);
			h.state = "left";
			h.connected = false;
			this.saveHive(h);
			this.events.append("hive.left", { hiveId }, hiveId);
			for (const rec of this.hiveWorkers(hiveId)) {
				if (rec.view.state === "running") this.evict(rec, "its hive left");
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
			const inserted = this.store.exits.insert(hiveId, w.id, w.startedAt, w.exit);
			// Each run once into right-sizing's history, in the same transaction as its exit record.
			if (inserted) {
				const host = this.hives.get(hiveId)?.host;
				this.advisor.record(w, w.exit, false, { hiveId, bounds: { memoryBytes: host?.memoryBytes ?? null, cores: host?.cores ?? null } });
			}
			if (rec?.view.state === "exited" && rec.view.startedAt === w.startedAt) return;
			const view: QueenWorkerView = { ...rest, hiveId, state: "exited", exit: w.exit };
			const exited = { view, sampledAt: w.stats?.sampledAt ?? null };
			this.putWorker(hiveId, w.id, exited);
			this.saveWorker(exited);
			if (inserted || rec?.view.state === "running") this.events.append("worker.exited", { hiveId, workerId: w.id, exit: w.exit, worker: view }, hiveId, w.id);
			if (rec?.view.state === "running") this.gpusChanged(hiveId, view.gpus);
			this.releasePlacementClaims(hiveId, w.id);
			return;
		}
		const view: QueenWorkerView = { ...rest, hiveId, state: "running", exit: null };
		if (!rec || rec.view.state !== "running" || rec.view.startedAt !== w.startedAt) {
			const spawned = { view, sampledAt: w.stats?.sampledAt ?? null };
			this.putWorker(hiveId, w.id, spawned);
			this.saveWorker(spawned);
			this.events.append("worker.spawned", { hiveId, worker: view }, hiveId, w.id);
			this.gpusChanged(hiveId, view.gpus);
			return;
		}
		this.journal(rec);
		rec.view = view;
		rec.stats = null;
		// Stats are hot state: each worker's latest kept in memory, not
		// rewritten into the workers table every tick (the next heartbeat
		// brings them back).
		if (w.stats && w.stats.sampledAt !== rec.sampledAt) {
			rec.sampledAt = w.stats.sampledAt;
			this.sampled(rec, this.events.append("worker.updated", { hiveId, workerId: w.id, stats: w.stats }, hiveId, w.id));
		}
	}

	/** Stats of a worker described earlier on this connection (`rec`: its record, looked up by hive). */
	private applyTick(hiveId: string, t: WorkerTick, rec: WorkerRec | undefined): void {
		// Unknown (e.g. described before a queen restart that lost it): the hive
		// describes every worker in full again when it reconnects.
		if (!rec || rec.view.state !== "running" || rec.view.startedAt !== t.startedAt || !t.s) return;
		if (this.takeSample(hiveId, rec, t.s)) rec.view.pid = t.pid;
	}

	/** A packed sample of a running worker: kept in place and published, unless it is the one it has. */
	private takeSample(hiveId: string, rec: WorkerRec, packed: PackedStats): boolean {
		const s = checkPackedStats(packed);
		const sampledAt = s[0] as number;
		if (sampledAt === rec.sampledAt) return false;
		rec.sampledAt = sampledAt;
		if (rec.stats) rec.stats.set(s);
		else rec.stats = new LatestSample(s);
		const workerId = rec.view.id;
		this.sampled(rec, this.events.append("worker.updated", { hiveId, workerId, stats: new PackedSample(s) }, hiveId, workerId));
		return true;
	}

	/** Its latest sample is `e` (the view's stats object, if any, is superseded by the packed one). */
	private sampled(rec: WorkerRec, e: QueenEvent): void {
		rec.sampleId = e.id;
		rec.sampleAt = e.at;
		if (rec.stats && rec.view.stats) rec.view.stats = null;
	}

	private evict(r: WorkerRec, reason: string): void {
		const v = r.view;
		this.journal(v);
		v.state = "evicted";
		this.saveWorker(r);
		this.events.append("worker.evicted", { hiveId: v.hiveId, workerId: v.id, startedAt: v.startedAt, reason }, v.hiveId, v.id);
		this.gpusChanged(v.hiveId, v.gpus);
		this.releasePlacementClaims(v.hiveId, v.id);
	}

	/** A worker holding GPUs came or went: their free/held state changed. */
	private gpusChanged(hiveId: string, held: string[]): void {
		for (const id of held) {
			for (const g of this.gpusOf(hiveId)) {
				if (String(g.info.index) === id || g.info.uuid === id || g.info.mig?.some((m) => m.uuid === id))
					this.events.append("gpu.updated", { hiveId, gpu: this.gpuView(hiveId, g.info) }, hiveId);
			}
		}
	}

	/**
	 * The hive's GPUs as it reports them. `complete`: the report is its whole
	 * inventory (a heartbeat whose GPU reading is current, or says it has none),
	 * so a GPU it no longer lists is gone: out of the free pool and the
	 * claimable set, with an event that names any claim or worker holding it.
	 * A stale or failing reading (nvidia-smi hung) removes nothing.
	 */
	private applyGpus(hiveId: string, gpus: GpuInfo[], complete = false): void {
		if (complete) {
			const listed = new Set(gpus.map((g) => g.uuid));
			for (const k of this.gpuKeysOf.get(hiveId) ?? []) {
				const g = this.gpus.get(k);
				if (!g || g.hiveId !== hiveId || listed.has(g.info.uuid)) continue;
				const view = this.gpuView(hiveId, g.info);
				this.journalKey(this.gpus, k);
				this.gpus.delete(k);
				this.store.gpus.remove(hiveId, g.info.uuid);
				this.events.append("gpu.updated", { hiveId, gpu: { ...view, free: false }, gone: true, claimId: view.claimId, heldBy: view.heldBy }, hiveId);
			}
		}
		for (const sent of gpus) {
			const k = key(hiveId, sent.uuid);
			const prev = this.gpus.get(k)?.info;
			// A heartbeat leaves out signals unchanged since the hive last sent them (queen-link.ts): the last ones stand.
			const g = sent.signals === undefined && prev?.signals !== undefined ? { ...sent, signals: prev.signals } : sent;
			this.journalKey(this.gpus, k);
			this.setGpu(k, { hiveId, info: g });
			if (!prev || gpuChanged(prev, g)) {
				this.store.gpus.save(hiveId, g);
				this.events.append("gpu.updated", { hiveId, gpu: this.gpuView(hiveId, g) }, hiveId);
			}
			if ((prev && healthChanged(prev, g)) || (!prev && g.health != null && g.health !== "healthy"))
				this.events.append(
					"gpu.health",
					{ hiveId, uuid: g.uuid, index: g.index, health: g.health ?? null, previous: prev?.health ?? null, healthReasons: g.healthReasons ?? [] },
					hiveId,
				);
		}
		this.autoCordon(hiveId);
	}

	/**
	 * `hive start --cordon-on-unhealthy-gpu`: the hive is cordoned (reason
	 * `auto:`) while one of its GPUs is unhealthy, and that cordon is lifted
	 * when none is; a person's cordon or drain is never touched (drain.ts).
	 */
	private autoCordon(hiveId: string): void {
		const h = this.hives.get(hiveId);
		if (!h) return;
		if (!h.cordonOnUnhealthyGpu) {
			// Restarted without the flag: its own automatic cordon goes with it.
			if (isAuto(h.drain)) this.changeDrain(hiveId, { op: "uncordon", by: `hive ${hiveId}`, auto: true });
			return;
		}
		const sick: string[] = [];
		for (const { info } of this.gpusOf(hiveId))
			if (info.health === "unhealthy")
				sick.push(`GPU ${info.index} (${info.uuid}): ${(info.healthReasons ?? []).map((r) => r.code).join(", ") || "unhealthy"}`);
		if (sick.length > 0 && !h.drain)
			this.changeDrain(hiveId, { op: "cordon", reason: `${AUTO_PREFIX} unhealthy ${sick.join("; ")}`, by: `hive ${hiveId}`, auto: true });
		else if (sick.length === 0 && isAuto(h.drain)) this.changeDrain(hiveId, { op: "uncordon", by: `hive ${hiveId}`, auto: true });
	}

	// ---- liveness and expiry, on the queen's clock ----------------------------------------------

	/** ready → stale → lost; lost evicts the hive's workers. Also expires claims. */
	checkLiveness(): void {
		const now = this.now;
		this.forgiveStall(now);
		this.change(() => {
			for (const h of this.hives.values()) {
				// Several queens: only hives heard from here; the others' are swept on the database's clock.
				if (this.store.shared && h.lastSeen === null) continue;
				const age = now - (h.lastSeen ?? this.startedMono);
				// A hive this queen slowed down is judged by the interval it was told.
				this.transition(h, livenessTransition(h.state, age, pacedLiveness(this.o, h.paceMs ?? 0)), age);
			}
			for (const c of this.claims.values()) if (c.expiresMono <= now) this.dropClaim(c, "expired");
		});
	}

	private lastCheck: number | null = null;

	/**
	 * The queen's own slowness is not held against a hive: a check that came
	 * late by more than twice its period means the queen heard no one
	 * meanwhile, so every hive's last sight moves forward by the excess; and
	 * while its event loop was saturated (a backlog it had no time to read),
	 * a hive still connected is not silent for that whole time either.
	 */
	private forgiveStall(now: number): void {
		const every = this.o.livenessEveryMs;
		const last = this.lastCheck;
		this.lastCheck = now;
		const busy = this.o.busy?.() ?? 0;
		if (last === null) return;
		const stall = every ? now - last - 2 * every : 0;
		const saturated = busy >= BUSY_FORGIVE ? now - last : 0;
		const sayBusy = saturated > 0 && !this.saturatedSaid;
		this.saturatedSaid = saturated > 0;
		if (stall <= 0 && saturated <= 0) return;
		for (const h of this.hives.values()) {
			const excuse = Math.max(stall, h.connected ? saturated : 0);
			if (h.lastSeen !== null && excuse > 0) h.lastSeen = Math.min(now, h.lastSeen + excuse);
		}
		if (stall > 0) this.o.log?.("the queen itself stalled; that time is not counted as its hives' silence", { stallMs: Math.round(stall) });
		if (sayBusy) this.o.log?.("the queen is saturated; its connected hives' silence is not counted meanwhile", { busy: Math.round(busy * 100) / 100 });
	}

	/** Said once per saturated spell, not at every check. */
	private saturatedSaid = false;

	private transition(h: HiveRec, next: ReturnType<typeof livenessTransition>, age: number): void {
		if (next === "lost" || next === "stale") this.journal(h);
		if (next === "lost") {
			h.state = "lost";
			h.connected = false;
			this.saveHive(h);
			const evicted: string[] = [];
			for (const rec of this.hiveWorkers(h.id)) {
				if (rec.view.state === "running") {
					this.evict(rec, "its hive was lost");
					evicted.push(rec.view.id);
				}
			}
			this.events.append("hive.lost", { hiveId: h.id, lastSeenAt: h.lastSeenAt, evictedWorkers: evicted }, h.id);
		} else if (next === "stale") {
			h.state = "stale";
			this.saveHive(h);
			this.events.append("hive.stale", { hiveId: h.id, lastSeenAt: h.lastSeenAt, lastSeenAgoMs: Math.round(age) }, h.id);
		}
	}

	// ---- several queens on one database ----------------------------------------------------

	/**
	 * The sweep (one queen at a time): hives whose queen is gone, or that have
	 * none, by their age on the database's clock, past stale-after or
	 * evict-after plus the renewal period. A hive whose queen is alive is that
	 * queen's to judge: it knows the interval it told the hive and how far
	 * behind its own intake is, which a row's age does not say (the sweep made
	 * hives slowed to 5 s stale at 10 s while their queen took a join in;
	 * bench row 17). A hive connected here is this queen's own check's.
	 */
	sweep(ages: { id: string; state: string; ownerAlive: boolean; ageMs: number }[]): void {
		this.change(() => {
			for (const a of ages) {
				const h = this.hives.get(a.id);
				if (!h || h.connected || a.ownerAlive) continue;
				this.journal(h);
				h.state = a.state as HiveRec["state"];
				if (h.state !== "unknown") {
					// Its queen is gone: unknown (not stale, not lost) while it fails over to another; evict-after is the grace.
					h.state = "unknown";
					h.lastSeen = null;
					this.saveHive(h);
				}
				const age = a.ageMs - SHARED_SLACK_MS;
				this.transition(h, livenessTransition(h.state, age, this.o), age);
			}
		});
	}

	/**
	 * What other queens committed: their hives' rows replace what this queen
	 * held of them (a hive that moved to another queen is no longer this
	 * one's to check), and their claims come and go.
	 */
	applyRemote(
		rows: HiveRows,
		events: readonly CommittedEvent[],
		queenId: string,
		some: { hives: ReadonlyMap<string, ReadonlySet<string>>; workers: readonly QueenWorkerView[] } = { hives: new Map(), workers: [] },
	): void {
		// Workers read back one by one (remote-reads.ts): each replaces its record, one with no row is gone.
		const read = new Map(some.workers.map((v) => [key(v.hiveId, v.id), v]));
		for (const [hiveId, ids] of some.hives) {
			const h = this.hives.get(hiveId);
			// Connected here: first-hand, as below. Not held: a later read of the whole hive brings it.
			if (!h || h.connected) continue;
			for (const id of ids) {
				const v = read.get(key(hiveId, id));
				if (!v) this.removeWorker(hiveId, id);
				else this.putWorker(hiveId, id, this.remoteRec(v, this.workers.get(key(hiveId, id))));
			}
		}
		const loaded = new Set<string>();
		for (const r of rows.hives) {
			const prev = this.hives.get(r.id);
			const mine = r.owner === queenId && prev?.connected === true;
			if (mine) {
				// Connected here: its workers, GPUs and liveness are first-hand, newer than rows read a
				// moment ago (an exit applied meanwhile must not go back to running: a sharded run
				// waiting on it waited for ever). Only what other queens change in its row is taken.
				this.journal(prev);
				prev.drain = r.drain;
				continue;
			}
			loaded.add(r.id);
			this.hives.set(r.id, {
				...r,
				remoteSpawn: prev?.remoteSpawn,
				cordonOnUnhealthyGpu: prev?.cordonOnUnhealthyGpu,
				storage: prev?.storage,
				lastSeen: mine ? prev!.lastSeen : null,
				connected: mine,
				savedMono: prev?.savedMono,
			});
		}
		// Grouped once: a page of other queens' events can name thousands of hives (a join), and a scan of
		// every row per hive was the queen's largest cost of its own in the 10,000-hive run.
		const workersOf = Map.groupBy(rows.workers, (w) => w.hiveId);
		const gpusOf = Map.groupBy(rows.gpus, (g) => g.hiveId);
		for (const id of loaded) {
			const keep = new Map(this.byHive.get(id) ?? []);
			this.dropHiveWorkers(id);
			for (const k of this.gpuKeysOf.get(id) ?? []) if (this.gpus.get(k)?.hiveId === id) this.gpus.delete(k);
			for (const v of workersOf.get(id) ?? []) this.putWorker(id, v.id, this.remoteRec(v, keep.get(v.id)));
			for (const g of gpusOf.get(id) ?? []) this.setGpu(key(id, g.info.uuid), g);
		}
		const wall = this.o.clock.wall();
		for (const e of events) {
			if (e.origin === queenId) continue;
			const d = e.data as { claim?: Claim; worker?: QueenWorkerView; exit?: { startedAt: string } };
			if (e.type === "claim.created" && d.claim) this.claims.set(d.claim.id, { ...d.claim, expiresMono: this.now + (Date.parse(d.claim.expiresAt) - wall) });
			else if (e.type === "claim.released" && d.claim) this.claims.delete(d.claim.id);
			else if (e.type === "worker.exited" && d.worker?.exit) {
				this.store.exits.remember?.(d.worker.hiveId, d.worker.id, d.worker.startedAt);
				// Its run reached the shared history with the other queen's exit record: this queen's advisor learns it too.
				this.advisor.record(d.worker, d.worker.exit, true);
			}
		}
	}

	/** A worker's row as another queen committed it; the samples held of the same run are kept (rows carry none). */
	private remoteRec(v: QueenWorkerView, prev: WorkerRec | undefined): WorkerRec {
		const same = prev && prev.view.startedAt === v.startedAt && prev.view.state === v.state;
		return same ? { view: { ...v, stats: prev.view.stats }, sampledAt: prev.sampledAt, stats: prev.stats } : { view: v, sampledAt: null };
	}

	/** Several queens: another queen's hive's latest samples, published here as `worker.updated` (at most ~5 s old). */
	applySamples(rows: { id: string; owner: string | null; samples: HiveSamples; seenAgoMs?: number | null }[], queenId: string): void {
		this.change(() => {
			for (const row of rows) {
				const h = this.hives.get(row.id);
				if (row.owner === queenId || h?.connected) continue;
				// Another queen's hive: when it was last seen, as that queen's renewal says (at most a renewal old).
				if (h && row.seenAgoMs != null) h.lastSeenAt = new Date(this.o.clock.wall() - Math.max(0, row.seenAgoMs)).toISOString();
				const known = this.byHive.get(row.id);
				for (const t of row.samples) {
					const rec = known?.get(t.id);
					if (rec && rec.view.state === "running" && rec.view.startedAt === t.startedAt) this.takeSample(row.id, rec, t.s);
				}
			}
		});
	}

	/** Runs fn one at a time fleet-wide when several queens share the database (at once otherwise). */
	async exclusive<T>(fn: () => T): Promise<T> {
		if (!this.store.withLock) return fn();
		return (await this.store.withLock(CLAIMS_LOCK, fn)) as T;
	}

	// ---- cordon and drain ----------------------------------------------------------------------

	/**
	 * A cordon, drain or uncordon (a person's, or the hive's own automatic
	 * one), by the rules of drain.ts; answers the hive as it now is. A drain of
	 * a hive with nothing running is drained at once.
	 */
	changeDrain(hiveId: string, a: DrainAction): HiveView {
		const h = this.hives.get(hiveId);
		if (!h) throw new RegistryError(404, `no hive ${hiveId}`);
		this.change(() => {
			const step = (action: DrainAction) => {
				const next = nextDrain(h.drain ?? null, action, this.o.clock.wall());
				if (!next.event) return;
				this.journal(h);
				h.drain = next.drain;
				this.store.hives.setDrain(h.id, next.drain);
				this.events.append(next.event, { hiveId, drain: next.drain, hive: this.hiveView(h) }, hiveId);
			};
			step(a);
			if (h.drain?.state === "draining" && this.runningOn(hiveId).length === 0) step({ op: "drained" });
		});
		return this.hiveView(h);
	}

	// ---- sharded runs ---------------------------------------------------------------------------

	/** A sharded run changed: its row and the event that says so, in one transaction. */
	saveRun(run: RunView, event?: { type: "run.started" | "run.shard" | "run.finished"; data: unknown; hiveId?: string | null; workerId?: string | null }): void {
		this.change(() => {
			this.store.shardRuns.save(run);
			if (event) this.events.append(event.type, event.data, event.hiveId ?? null, event.workerId ?? null);
		});
	}

	// ---- claims -------------------------------------------------------------------------------

	claim(req: ClaimBody): Claim {
		return this.change(() => {
			const picked = pickGpus(this.listGpus({ free: true, minMemoryMiB: req.minMemoryMiB }), req);
			if ("error" in picked) throw new RegistryError(409, picked.error);
			const pick = picked.gpus;
			const wall = this.o.clock.wall();
			const c = {
				id: `c-${randomBytes(6).toString("hex")}`,
				holder: req.holder,
				gpus: pick.map((g) => ({ hiveId: g.hiveId, uuid: g.uuid, index: g.index })),
				createdAt: new Date(wall).toISOString(),
				expiresAt: new Date(wall + req.ttlSeconds * 1000).toISOString(),
				expiresMono: this.now + req.ttlSeconds * 1000,
			};
			this.setClaim(c);
			this.store.claims.insert(claimView(c));
			this.events.append("claim.created", { claim: claimView(c) });
			return claimView(c);
		});
	}

	/**
	 * A claim for a placement, on GPUs placement chose: checked free again
	 * inside the transaction, so two placements never get one GPU. Its
	 * holder names the worker; its exit releases it.
	 */
	claimForPlacement(hiveId: string, workerId: string, uuids: string[], ttlSeconds: number): Claim {
		return this.change(() => {
			const free = new Map(this.listGpus({ free: true, hive: hiveId }).map((g) => [g.uuid, g]));
			const pick = uuids.map((u) => free.get(u));
			if (pick.some((g) => g === undefined)) throw new RegistryError(409, `GPUs ${uuids.join(",")} on hive ${hiveId} are no longer all free`);
			const wall = this.o.clock.wall();
			const c = {
				id: `c-${randomBytes(6).toString("hex")}`,
				holder: placementHolder(hiveId, workerId),
				gpus: pick.map((g) => ({ hiveId, uuid: g!.uuid, index: g!.index })),
				createdAt: new Date(wall).toISOString(),
				expiresAt: new Date(wall + ttlSeconds * 1000).toISOString(),
				expiresMono: this.now + ttlSeconds * 1000,
			};
			this.setClaim(c);
			this.store.claims.insert(claimView(c));
			this.events.append("claim.created", { claim: claimView(c) });
			return claimView(c);
		});
	}

	/** A placement that could not be made, as an event for operators and schedulers. */
	placementFailed(data: { id: string; want: string; reason: string }): void {
		this.change(() => this.events.append("placement.failed", data, null, data.id));
	}

	release(id: string): Claim {
		const c = this.claims.get(id);
		if (!c) throw new RegistryError(404, `no claim ${id}`);
		this.change(() => this.dropClaim(c, "released"));
		return claimView(c);
	}

	/** A worker placed on claimed GPUs has ended: the claim made for it goes (one passed by a scheduler stays its holder's). */
	private releasePlacementClaims(hiveId: string, workerId: string): void {
		const holder = placementHolder(hiveId, workerId);
		for (const c of [...this.claims.values()]) if (c.holder === holder) this.dropClaim(c, "its worker ended");
	}

	/** Releases the claim made for a placement whose worker never started (inside its own transaction). */
	releasePlacementClaim(hiveId: string, workerId: string): void {
		this.change(() => this.releasePlacementClaims(hiveId, workerId));
	}

	private setClaim(c: ClaimRec): void {
		this.journalKey(this.claims, c.id);
		this.claims.set(c.id, c);
	}

	private dropClaim(c: ClaimRec, reason: string): void {
		this.journalKey(this.claims, c.id);
		this.claims.delete(c.id);
		this.store.claims.delete(c.id);
		this.events.append("claim.released", { claim: claimView(c), reason });
	}
}

/** The holder of a claim made for a placed worker. */
export const placementHolder = (hiveId: string, workerId: string) => `placement:${hiveId}/${workerId}`;
