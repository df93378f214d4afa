import { createHash, randomBytes } from "node:crypto";
import { HttpError } from "@apiary/kit/errors";
import { type Actor, type PendingPlacements, type PlacementAnswer, type PlacementBody, resolveLimits, type SpawnBody } from "@apiary/protocol";
import type { Registry } from "../registry.ts";
import type { HiveCommander } from "../hive-commands.ts";
import type { CommandReply } from "../socket.ts";
import { choose, describeWant, type Want } from "./choose.ts";
import { FleetWaiters, union } from "./fleet-waiters.ts";
import { type HiveSet, WaitQueue, type Waiter } from "./waiters.ts";

// Placement: find → reserve → run, over the socket each hive keeps open.
// GPUs are reserved by a claim before the hive is asked (two placements can
// never get one GPU); the claim made for a worker goes when it exits. Waiters
// queue first come first served: only the head is placed, so they run in
// arrival order among those that compete for the same hives (a waiter holds
// back later requests only on the hives it could use: a queue per pool, not
// one line across unrelated hardware), on every queen of a fleet alike
// (fleet-waiters.ts). A retry with the same idempotency key gets the same worker.
// Over 400 lines as one class: the keys, the wait queue, claims in use and
// spawns in doubt all decide on the same reservation, under one lock; the
// parts that stand alone (choosing, the queues) are modules of their own.

/** Claims made for placed workers outlive any run; the worker's exit releases them. */
const CLAIM_TTL_S = 7 * 24 * 3600;
const SPAWN_TIMEOUT_MS = 30_000;
/** Idempotency keys are remembered this long. */
const KEY_TTL_MS = 24 * 3_600_000;
const MAX_WAITERS = 10_000;
const MAX_KEYS = 100_000;

export class PlacementError extends HttpError {
	override name = "PlacementError";
	/** A spawn whose answer was lost: what was asked, so a retry can find the worker. */
	doubt?: PlacementAnswer;
	/** The id asked for is a worker's already, on this hive (a caller that owns its ids, such as a run, follows it). */
	inUse?: { hiveId: string; id: string };
}

interface Grant {
	hiveId: string;
	gpus: string[];
	claimId: string | null;
	/** The claim was made for this worker (released if the spawn fails). */
	ours: boolean;
}

/** A spawn whose answer was lost with its hive: its claim is kept until the hive says whether it started. */
interface InDoubt {
	hiveId: string;
	id: string;
	at: number;
	/** The claim was made for it (released if it never started). */
	ours: boolean;
}

/** The caller, for the spawn: its credential (relayed to another queen as it is) and who it is. */
interface SpawnAs {
	auth?: string;
	by?: Actor;
}

/** An idempotency key as this queen knows it: its request's hash and its answer (or, lost, the spawn in doubt). */
interface KeyEntry {
	at: number;
	hash: string;
	answer: Promise<PlacementAnswer>;
	doubt?: PlacementAnswer;
}

/** The request a key stands for, whatever the order of its fields: a retry must be the same request. */
export function requestHash(body: PlacementBody): string {
	const { idempotencyKey: _k, ...rest } = body;
	const canon = (v: unknown): unknown =>
		Array.isArray(v)
			? v.map(canon)
			: v !== null && typeof v === "object"
				? Object.fromEntries(
						Object.keys(v)
							.sort()
							.filter((k) => (v as Record<string, unknown>)[k] !== undefined)
							.map((k) => [k, canon((v as Record<string, unknown>)[k])]),
					)
				: v;
	return createHash("sha256")
		.update(JSON.stringify(canon(rest)))
		.digest("hex");
}

const reused = (key: string) =>
	new PlacementError(
		422,
		`idempotencyKey ${JSON.stringify(key)} was used for a different request: a retry must send the same body (use a new key for a new request)`,
	);

export class Placer {
	private readonly registry: Registry;
	private readonly sockets: HiveCommander;
	private readonly queue: WaitQueue<Grant>;
	/** The other queens' waiters (several queens): earlier ones hold their hives back here too. */
	private readonly fleet: FleetWaiters;
	/** GPUs seen, so a new one (or one gone) counts as a change of the fleet for the waiters. */
	private readonly knownGpus = new Set<string>();
	private readonly keys = new Map<string, KeyEntry>();
	/** CPU and memory promised to placements not yet seen running, by hive. */
	private readonly inFlight = new Map<string, { cpu: number; memoryBytes: number }[]>();
	private readonly inDoubt: InDoubt[] = [];
	/** Claims with a worker placed on them, by claim id. */
	private readonly claimUse = new Map<string, { hiveId: string; id: string; at: number }>();
	private pumping = false;
	private readonly timer: NodeJS.Timeout;
	private readonly unsubscribe: () => void;
	private sweeping = false;

	constructor(registry: Registry, sockets: HiveCommander) {
		this.registry = registry;
		this.sockets = sockets;
		this.queue = new WaitQueue<Grant>((want) => this.eligible(want));
		this.fleet = new FleetWaiters(registry.store.waiters, (want) => this.eligible(want));
		// Capacity comes back with exits, releases, hives joining and GPU changes.
		this.unsubscribe = registry.events.watch((batch) => {
			let pump = false;
			for (const e of batch) {
				if (e.type === "worker.updated" || e.type === "placement.failed") continue;
				pump = true;
				// Which hives could serve whom changes only with the hives and their GPU inventory.
				if (e.type === "hive.joined" || e.type === "hive.restarted" || e.type === "hive.left" || e.type === "hive.lost") this.fleetChanged();
				else if (e.type === "gpu.updated") {
					const d = e.data as { gpu?: { uuid?: string }; gone?: boolean };
					const uuid = d.gpu?.uuid;
					if (uuid && (d.gone ? this.knownGpus.delete(uuid) : !this.knownGpus.has(uuid))) {
						if (!d.gone) this.knownGpus.add(uuid);
						this.fleetChanged();
					}
				}
			}
			if (pump) this.pump();
		});
		let ticks = 0;
		let sweepTicks = 0;
		this.timer = setInterval(() => {
			this.expire();
			this.settleInDoubt();
			// Several queens: another's waiter that left frees what it held back here; no event says so.
			if (this.fleet.on && this.queue.size > 0 && ++ticks % 4 === 0) this.pump();
			// Several queens: this queen's rows in the fleet's line that no waiter holds go, every 5 s.
			if (this.fleet.on && ++sweepTicks % 20 === 0 && !this.sweeping) {
				this.sweeping = true;
				this.fleet
					.sweep([...this.queue.values()].map((w) => w.fleetSeq))
					.then((n) => {
						if (n > 0) this.registry.o.log?.("removed waiter rows no placement held", { rows: n });
					})
					.catch(() => {})
					.finally(() => {
						this.sweeping = false;
					});
			}
		}, 250);
		this.timer.unref();
	}

	private fleetChanged(): void {
		this.queue.fleetChanged();
		this.fleet.fleetChanged();
	}

	close(): void {
		clearInterval(this.timer);
		this.unsubscribe();
		for (const w of [...this.queue.values()]) {
			this.queue.remove(w);
			w.resolve(null, "the queen is stopping");
		}
	}

	pending(): PendingPlacements {
		const now = performance.now();
		return { pending: [...this.queue.values()].map((w) => ({ id: w.id, waitingMs: Math.round(now - w.since), want: describeWant(w.want) })) };
	}

	/** Places a worker and starts it; answers once the hive has started it. */
	async place(body: PlacementBody, signal?: AbortSignal, auth?: string, by?: Actor): Promise<PlacementAnswer> {
		// Who placed it rides in the spawn (the worker's record and events say so); not part of the request a key stands for.
		const spawnAs = by ? { auth, by } : { auth };
		const key = body.idempotencyKey;
		if (key === undefined) return this.placeOnce(body, signal, spawnAs);
		const hash = requestHash(body);
		const seen = this.keys.get(key);
		if (seen && seen.hash !== hash) throw reused(key);
		// Several queens: a key another queen answered (or lost the answer of) is found in the database.
		const shared = this.registry.store.placementAnswer;
		if (shared && !seen) {
			const earlier = await shared.call(this.registry.store, key);
			if (earlier) {
				if (earlier.bodyHash !== null && earlier.bodyHash !== hash) throw reused(key);
				if (earlier.doubtAt === null) return earlier.answer;
				const d = earlier.answer;
				if (this.registry.getWorker(d.id, d.hiveId)) return d;
				// The hive has come back since without it: it never started; placed again, under the id first given.
				const h = this.registry.getHive(d.hiveId);
				if (!(h?.state === "ready" && h.lastSeenAt && Date.parse(h.lastSeenAt) > earlier.doubtAt + 1000))
					throw new PlacementError(503, `hive ${d.hiveId} has not yet said whether worker ${d.id} started; retry shortly`);
				body = { ...body, id: d.id };
			}
		}
		return this.placeKeyed(key, hash, body, signal, spawnAs);
	}

	private placeKeyed(key: string, hash: string, body: PlacementBody, signal: AbortSignal | undefined, as: SpawnAs): Promise<PlacementAnswer> {
		const now = Date.now();
		for (const [k, v] of this.keys) if (now - v.at > KEY_TTL_MS) this.keys.delete(k);
		const seen = this.keys.get(key);
		if (seen?.doubt) {
			// The first answer was lost with its hive: the registry now says whether the worker started.
			const d = seen.doubt;
			if (this.registry.getWorker(d.id, d.hiveId)) return Promise.resolve(d);
			if (this.inDoubt.some((x) => x.id === d.id && x.hiveId === d.hiveId))
				return Promise.reject(new PlacementError(503, `hive ${d.hiveId} has not yet said whether worker ${d.id} started; retry shortly`));
			this.keys.delete(key); // it did not: place it again
		} else if (seen) return seen.answer;
		const answer = this.placeOnce(body, signal, as);
		const entry: KeyEntry = { at: now, hash, answer };
		this.keys.set(key, entry);
		// Bounded whatever the request rate: past the cap the oldest keys go first (Map keeps insertion order).
		if (this.keys.size > MAX_KEYS) this.keys.delete(this.keys.keys().next().value!);
		// A failure that changed nothing may be retried under the same key; a lost answer is looked into on the retry.
		// Kept for every queen: the answer, or (several queens) the doubt, so a retry anywhere finds out.
		const save = (a: PlacementAnswer, doubtAt: number | null) =>
			this.registry.store.tx(() => this.registry.store.savePlacement?.(key, { answer: a, bodyHash: hash, doubtAt }));
		answer.then(
			(a) => save(a, null),
			(err) => {
				if (err instanceof PlacementError && err.doubt) {
					entry.doubt = err.doubt;
					save(err.doubt, Date.now());
				} else this.keys.delete(key);
			},
		);
		return answer;
	}

	private async placeOnce(body: PlacementBody, signal: AbortSignal | undefined, as: SpawnAs): Promise<PlacementAnswer> {
		const { hive, constraints, gpus, claimId, holder, waitMs, idempotencyKey: _k, ...spawn } = body;
		if (claimId !== undefined && gpus !== undefined) throw new PlacementError(400, "body: give gpus or claimId, not both");
		if ((claimId === undefined) !== (holder === undefined))
			throw new PlacementError(400, "body.holder goes with body.claimId: the claim's holder places on it");
		const id = spawn.id ?? `w-${randomBytes(4).toString("hex")}`;
		const found = this.registry.getWorker(id);
		const running = found?.state === "running" ? found : null;
		if (running) {
			const e = new PlacementError(409, `id ${id} is already in use by a running worker on hive ${running.hiveId}`);
			e.inUse = { hiveId: running.hiveId, id };
			throw e;
		}
		const limits = resolveLimits(spawn.profile ?? null, { cpu: spawn.cpu, memoryBytes: spawn.memoryBytes, pids: spawn.pids, timeoutMs: spawn.timeoutMs });
		const want: Want = { hive, constraints, gpus, cpu: limits.cpu, memoryBytes: limits.memoryBytes };
		let grant: Grant;
		if (claimId !== undefined) {
			grant = this.fromClaim(claimId, hive, holder!);
			// One live worker per claim: taken now, until its worker exits (or the spawn fails).
			this.claimUse.set(claimId, { hiveId: grant.hiveId, id, at: Date.now() });
			try {
				return await this.start(id, { ...spawn, id }, grant, want, as);
			} catch (err) {
				if (!(err instanceof PlacementError && err.doubt)) this.claimUse.delete(claimId);
				throw err;
			}
		} else {
			// Waiters came first: the hives they could use are theirs to take.
			// Several queens: reserved one at a time fleet-wide (held only for the claim, not the spawn).
			// Several queens: every queen's waiters came first.
			const now = await this.registry.exclusive(async () => {
				if (this.fleet.on) await this.fleet.refresh();
				return this.tryGrant(id, want, union(this.queue.wantedBy(), this.fleet.ahead()));
			});
			if ("error" in now) {
				if (!waitMs) {
					const alone = this.tryGrant(id, want, null, true);
					return this.refuse(
						id,
						want,
						"error" in alone
							? alone.error
							: `${this.queue.size + this.fleet.size} placements wait ahead of this one for the same hives (first come, first served): pass waitMs to queue`,
					);
				}
				grant = await this.wait(id, want, waitMs, signal);
			} else grant = now;
		}
		return this.start(id, { ...spawn, id }, grant, want, as);
	}

	private fromClaim(claimId: string, hive: string | undefined, holder: string): Grant {
		const c = this.registry.getClaim(claimId);
		if (!c) throw new PlacementError(404, `claimId: no claim ${claimId}`);
		if (c.holder !== holder) throw new PlacementError(403, `claimId: claim ${claimId} is held by another holder; body.holder must name its holder`);
		const user = this.claimUser(claimId) ?? this.workerOnGpus(c.gpus);
		if (user)
			throw new PlacementError(409, `claimId: claim ${claimId}'s GPUs are in use by worker ${user.id} on hive ${user.hiveId} (one live worker per claim)`);
		const hives = new Set(c.gpus.map((g) => g.hiveId));
		if (hives.size !== 1) throw new PlacementError(409, `claimId: claim ${claimId} spans ${hives.size} hives; a worker runs on one`);
		const hiveId = [...hives][0]!;
		if (hive !== undefined && hive !== hiveId) throw new PlacementError(409, `claimId: claim ${claimId} is on hive ${hiveId}, not ${hive}`);
		return { hiveId, gpus: c.gpus.map((g) => g.uuid), claimId, ours: false };
	}

	/** The worker placed on a claim that still holds it: placed and not seen to end (forgotten once ended, or never seen in a minute). */
	private claimUser(claimId: string): { hiveId: string; id: string } | null {
		const u = this.claimUse.get(claimId);
		if (!u) return null;
		const w = this.registry.getWorker(u.id, u.hiveId);
		const live = w ? w.state === "running" : Date.now() - u.at < 60_000;
		if (!live) this.claimUse.delete(claimId);
		return live ? u : null;
	}

	/** A running worker on any of these GPUs (started by any queen or on its hive directly). */
	private workerOnGpus(gpus: { hiveId: string; uuid: string }[]): { hiveId: string; id: string } | null {
		for (const g of gpus) {
			const held = this.registry.listGpus({ hive: g.hiveId }).find((x) => x.uuid === g.uuid)?.heldBy ?? [];
			if (held.length > 0) return { hiveId: g.hiveId, id: held[0]! };
		}
		return null;
	}

	/** Hives that could ever serve a request (its hive or constraints, and GPUs of its kind in number), free or not. */
	private eligible(want: Want): Set<string> {
		const g = want.gpus;
		const kinds = new Map<string, number>();
		if (g)
			for (const x of this.registry.gpuKinds())
				if (
					(g.count === 1 || !x.migParent) &&
					(g.name === undefined || x.name.toLowerCase().includes(g.name.toLowerCase())) &&
					(g.minMemoryMiB === undefined || (x.memoryTotalMiB ?? 0) >= g.minMemoryMiB)
				)
					kinds.set(x.hiveId, (kinds.get(x.hiveId) ?? 0) + 1);
		const out = new Set<string>();
		for (const h of this.registry.hiveLabels()) {
			if (want.hive !== undefined && h.id !== want.hive) continue;
			if (want.constraints && !Object.entries(want.constraints).every(([k, v]) => h.labels[k] === v)) continue;
			if (g && (kinds.get(h.id) ?? 0) < g.count) continue;
			out.add(h.id);
		}
		return out;
	}

	/** One attempt: choose and reserve (not on `avoid`'s hives), or say why not; `dryRun` reserves nothing. */
	private tryGrant(id: string, want: Want, avoid: HiveSet | null = null, dryRun = false): Grant | { error: string } {
		// Hives earlier waiters hold are not weighed at all (each weighed hive costs a walk of its workers).
		const open = avoid ? (h: string) => !avoid.has(h) : undefined;
		const candidates = this.registry
			.candidates((h) => this.sockets.isConnected(h), open)
			.map((c) => {
				const extra = this.inFlight.get(c.id) ?? [];
				return {
					...c,
					committedCpu: c.committedCpu + extra.reduce((n, x) => n + x.cpu, 0),
					committedMemoryBytes: c.committedMemoryBytes + extra.reduce((n, x) => n + x.memoryBytes, 0),
				};
			});
		const choice = choose(candidates, want.gpus ? this.registry.listGpus({ free: true, hives: open }) : [], want);
		if ("error" in choice) return choice;
		if (dryRun) return { hiveId: choice.hiveId, gpus: choice.gpus.map((g) => g.uuid), claimId: null, ours: false };
		if (choice.gpus.length === 0) return { hiveId: choice.hiveId, gpus: [], claimId: null, ours: false };
		const uuids = choice.gpus.map((g) => g.uuid);
		try {
			const c = this.registry.claimForPlacement(choice.hiveId, id, uuids, CLAIM_TTL_S);
			return { hiveId: choice.hiveId, gpus: uuids, claimId: c.id, ours: true };
		} catch (err) {
			return { error: (err as Error).message };
		}
	}

	private refuse(id: string, want: Want, why: string): never {
		this.registry.placementFailed({ id, want: describeWant(want), reason: why });
		throw new PlacementError(409, why);
	}

	private async wait(id: string, want: Want, waitMs: number, signal?: AbortSignal): Promise<Grant> {
		if (this.queue.size >= MAX_WAITERS) throw new PlacementError(503, `${this.queue.size} placements are waiting already; try again later`);
		// Several queens: its place in the fleet's line first, so every queen leaves it what it could use.
		let fleetSeq: number | undefined;
		try {
			fleetSeq = await this.fleet.join(id, want);
		} catch (err) {
			throw new PlacementError(503, `could not queue it with the other queens: ${(err as Error).message}`);
		}
		const leave = () => void this.fleet.leave([fleetSeq]).catch(() => {});
		if (signal?.aborted) {
			leave();
			throw new PlacementError(499, "the client went away while waiting");
		}
		return new Promise<Grant>((resolve, reject) => {
			const w = this.queue.add({
				id,
				want,
				since: performance.now(),
				deadline: performance.now() + waitMs,
				fleetSeq,
				resolve: (grant, why) => {
					signal?.removeEventListener("abort", onAbort);
					if (grant) resolve(grant);
					else {
						leave();
						try {
							this.refuse(id, want, why ?? "gave up");
						} catch (err) {
							reject(err);
						}
					}
				},
			});
			// A waiter that gives up (its client went away) leaves the queue; what it held back may go now.
			const onAbort = () => {
				if (!this.queue.remove(w)) return;
				leave();
				reject(new PlacementError(499, "the client went away while waiting"));
				this.pump();
			};
			signal?.addEventListener("abort", onAbort);
			// Nothing changed for the waiters ahead of it: only the newcomer is tried (capacity may have come
			// back between its first try and now), never the whole queue.
			void this.registry
				.exclusive(async () => {
					if (this.fleet.on) await this.fleet.refresh();
					// Placed: out of the fleet's line before the lock goes, so no queen holds back for it.
					if (this.tryNewest(w)) await this.fleet.leave([w.fleetSeq]);
				})
				.catch(() => {});
		});
	}

	/** One waiter, newly queued: it may take what no other waiter (all earlier) could use. */
	private tryNewest(w: Waiter<Grant>): boolean {
		if (!this.queue.has(w)) return false; // placed by a pump meanwhile, or gone
		const g = this.tryGrant(w.id, w.want, union(this.queue.wantedBy(w), this.fleet.ahead(w.fleetSeq)));
		if ("error" in g) return false;
		this.queue.remove(w);
		w.resolve(g);
		return true;
	}

	/**
	 * Places waiters in arrival order: each may take what no earlier waiter
	 * still waiting could use, so a waiter is never overtaken on its own hives
	 * while other pools go on.
	 */
	private pump(): void {
		// Nobody waits here: nothing to place. Every event batch (each spawn and exit) called this, and each
		// call took the claims lock fleet-wide for ~0.1 s: at 5,000 hives the queens' empty pumps held it
		// all the time and a placement or claim waited past 15 s behind them (bench row 17).
		if (this.pumping || this.queue.size === 0) return;
		this.pumping = true;
		queueMicrotask(() => {
			this.pumping = false;
			if (this.queue.size === 0) return;
			void this.registry
				.exclusive(async () => {
					if (this.fleet.on) await this.fleet.refresh();
					await this.fleet.leave(this.pumpNow());
				})
				.catch(() => {});
		});
	}

	/** Returns the fleet places of those it placed. */
	private pumpNow(): (number | undefined)[] {
		const placed: (number | undefined)[] = [];
		const avoid = new Set<string>();
		const hives = this.registry.hiveLabels().length;
		const others = this.fleet.inOrder();
		let other = others.next();
		for (const w of this.queue.values()) {
			// Other queens' waiters ahead of this one hold their hives back first.
			for (; !other.done && other.value.seq < (w.fleetSeq ?? Number.POSITIVE_INFINITY); other = others.next()) for (const h of other.value.hives) avoid.add(h);
			// Every hive is some earlier waiter's: nobody behind can be placed (a long queue costs one pass, not one per waiter).
			if (avoid.size >= hives) break;
			const mine = this.queue.hivesOf(w);
			// Nothing it could use is free of earlier waiters (or it can use nothing yet): no attempt, which costs O(fleet).
			let open = false;
			for (const h of mine) {
				if (!avoid.has(h)) {
					open = true;
					break;
				}
			}
			if (!open) continue;
			const g = this.tryGrant(w.id, w.want, avoid);
			if ("error" in g) {
				for (const h of mine) avoid.add(h);
				continue;
			}
			this.queue.remove(w);
			placed.push(w.fleetSeq);
			w.resolve(g);
		}
		return placed;
	}

	private expire(): void {
		const now = performance.now();
		for (const w of this.queue.values()) {
			if (w.deadline > now) continue;
			this.queue.remove(w);
			// Only to say why: nothing is reserved for a waiter that gave up.
			const g = this.tryGrant(w.id, w.want, null, true);
			w.resolve(null, `${"error" in g ? g.error : "its turn had not come (earlier waiters hold those hives)"} (waited ${Math.round(now - w.since)} ms)`);
			this.pump();
		}
	}

	/** Asks the hive to start it; undoes the reservation when the hive refuses. */
	private async start(id: string, body: SpawnBody, g: Grant, want: Want, as: SpawnAs): Promise<PlacementAnswer> {
		const promise = { cpu: want.cpu ?? 0, memoryBytes: want.memoryBytes ?? 0 };
		const list = this.inFlight.get(g.hiveId) ?? [];
		list.push(promise);
		this.inFlight.set(g.hiveId, list);
		let r: CommandReply;
		try {
			const spawnBody: SpawnBody = { ...body, gpus: g.gpus, ...(as.by ? { placedBy: as.by } : {}) };
			r = await this.sockets.command(g.hiveId, { op: "spawn", body: spawnBody }, { timeoutMs: SPAWN_TIMEOUT_MS, auth: as.auth });
		} finally {
			list.splice(list.indexOf(promise), 1);
		}
		if (r.status === 201) return { hiveId: g.hiveId, id, gpus: g.gpus, claimId: g.claimId };
		if (r.status === 503 || r.status === 504) {
			// The hive may have started it: its next snapshot says; the claim waits for that.
			this.inDoubt.push({ hiveId: g.hiveId, id, at: Date.now(), ours: g.ours });
			const e = new PlacementError(503, `${r.error}; worker ${id} may have started: retry with the same idempotencyKey to find out`);
			e.doubt = { hiveId: g.hiveId, id, gpus: g.gpus, claimId: g.claimId };
			throw e;
		}
		if (g.ours) this.registry.releasePlacementClaim(g.hiveId, id);
		const e = new PlacementError(r.status, `hive ${g.hiveId}: ${r.error ?? `status ${r.status}`}`);
		// The one conflict a spawn has: a worker there has that id already (one this queen has not heard of yet).
		if (r.status === 409) e.inUse = { hiveId: g.hiveId, id };
		throw e;
	}

	/** In-doubt spawns: the worker showed up (its exit will release the claim), or the hive came back without it (release now). */
	private settleInDoubt(): void {
		for (let i = 0; i < this.inDoubt.length; i++) {
			const d = this.inDoubt[i]!;
			const w = this.registry.getWorker(d.id, d.hiveId);
			const h = this.registry.getHive(d.hiveId);
			let done = w !== null && w.startedAt !== undefined && Date.parse(w.startedAt) >= d.at - 60_000;
			if (!done && h && this.sockets.isConnected(d.hiveId) && h.lastSeenAt && Date.parse(h.lastSeenAt) > d.at + 1000) {
				if (d.ours) this.registry.releasePlacementClaim(d.hiveId, d.id);
				done = true;
			}
			if (!done && h && (h.state === "lost" || h.state === "left")) done = true; // eviction released it
			if (done) this.inDoubt.splice(i--, 1);
		}
	}
}
