import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Actor, PlacementBody, QueenWorkerView, RunBody, RunView, ShardView } from "@apiary/protocol";
import { HttpError } from "@apiary/kit/errors";
import type { HiveCommander } from "../hive-commands.ts";
import { PlacementError, type Placer, requestHash } from "../placement/placer.ts";
import type { Registry } from "../registry.ts";
import { afterAttempt, attemptId, ended, newAttempt, outcome, shardEnv } from "./shards.ts";

// Sharded runs on the queen: each shard a worker placed as POST /v1/workers
// places one (first come first served, GPUs on one hive, never one GPU
// twice: the placer's rules), at most maxParallel at once, its end read from
// the registry's events, lost shards started again elsewhere, failed ones
// with retryFailed, fail-fast. The run is kept whole in the store after
// every change, so a restarted queen carries on with it (its waiting shards
// are placed again; its running ones are followed as any worker is). On a
// shared database each run is one queen's (the one that started it); when
// that queen is gone another takes it over the same way, and a cancel sent to
// any other queen is forwarded to it, as commands for a hive are.

/** Without waitMs, a shard waits this long for capacity (shards queue behind each other and other work). */
const DEFAULT_WAIT_MS = 3_600_000;
/** A placement in doubt (the hive's answer lost) is asked again this often until the hive says. */
const IN_DOUBT_RETRY_MS = 1000;
/** A placement that failed on the way (not answered) is asked again for this long: the store's own retry budget. */
const STORE_RETRY_MS = 30_000;

export class RunError extends HttpError {
	override name = "RunError";
}

interface Live {
	run: RunView;
	cancelled: boolean;
	/** Stopping (a cancel, fail-fast, a shard that cannot be placed): nothing more is started. */
	stopping?: boolean;
	/** Shards being placed now: their placement's abort. */
	placing: Map<number, AbortController>;
	by?: Actor;
	auth?: string;
}

export interface RunsOptions {
	log?: (msg: string, extra?: object) => void;
	/** Several queens: where the live queen that carries a run on answers (null: none does, or this one). */
	runQueenUrl?: (runId: string) => Promise<string | null>;
	/** Sends a request to another queen, with the caller's credential. */
	forward?: (base: string, method: string, path: string, auth: string | undefined) => Promise<{ status: number; body: unknown }>;
}

export class Runs {
	private readonly live = new Map<string, Live>();
	/** Worker id → its run and shard. */
	private readonly byWorker = new Map<string, { runId: string; index: number }>();
	private readonly unsubscribe: () => void;

	private readonly registry: Registry;
	private readonly placer: Placer;
	private readonly commands: HiveCommander;
	private readonly log: (msg: string, extra?: object) => void;
	private readonly o: RunsOptions;

	constructor(registry: Registry, placer: Placer, commands: HiveCommander, o: RunsOptions = {}) {
		this.registry = registry;
		this.placer = placer;
		this.commands = commands;
		this.o = o;
		this.log = o.log ?? (() => {});
		this.unsubscribe = registry.events.watch((batch) => {
			for (const e of batch) {
				if ((e.type !== "worker.exited" && e.type !== "worker.evicted") || !e.workerId) continue;
				const at = this.byWorker.get(e.workerId);
				// After this flush (a change made from inside it would nest in it).
				if (at) setImmediate(() => this.attemptEnded(at.runId, at.index, e.workerId!, e.hiveId));
			}
		});
	}

	private adopting: Promise<void> | null = null;

	/** Carries on with the unfinished runs no live queen does: this queen's own after a restart, a gone queen's. */
	adopt(): Promise<void> {
		this.adopting ??= this.adoptNow().finally(() => {
			this.adopting = null;
		});
		return this.adopting;
	}

	private async adoptNow(): Promise<void> {
		// Taken for gone while it lived (cut off from the database longer than its renewals allow): another
		// queen carries those runs on now, and this one lets go of them rather than writing them twice.
		const table = this.registry.store.shardRuns;
		if (table.takenOver && this.live.size > 0) {
			for (const id of await table.takenOver([...this.live.keys()])) this.letGo(id);
		}
		for (const run of await table.adopt()) {
			if (this.live.has(run.id)) continue;
			// Workers this queen has not heard of (placed or ended while no queen watched, or its view behind): the database's record.
			const stored = new Map<string, QueenWorkerView>();
			for (const s of run.shards) {
				const a = s.attempts.at(-1);
				if (s.state === "running" && a && !this.registry.getWorker(a.workerId, a.hiveId ?? undefined)) {
					const w = await this.stored(a.workerId, a.hiveId);
					if (w) stored.set(a.workerId, w);
				}
			}
			if (this.live.has(run.id)) continue;
			// Being stopped when its queen stopped: a shard cancelled (a cancel, unless a message says why: fail-fast, could not place).
			const stopping = run.shards.some((s) => s.state === "cancelled");
			const l: Live = { run, cancelled: stopping && run.message === null, stopping, placing: new Map() };
			this.live.set(run.id, l);
			// Settled once every shard is read (a settle starts waiting shards, which this loop must not see again).
			const settle: (() => void)[] = [];
			for (const s of run.shards) {
				const a = s.attempts.at(-1);
				if (s.state !== "running" || !a) continue;
				const w = this.registry.getWorker(a.workerId, a.hiveId ?? undefined) ?? stored.get(a.workerId) ?? null;
				if (!w && a.hiveId === null) {
					// It was being placed when its queen stopped, and never started: placed again (the same
					// workerId and placement key, so a placement that did happen is answered, not made twice).
					s.attempts.pop();
					s.state = "waiting";
					continue;
				}
				if (w && a.hiveId === null) {
					// Placed, and its queen stopped before the run said so.
					a.hiveId = w.hiveId;
					a.startedAt = w.startedAt;
				}
				this.byWorker.set(a.workerId, { runId: run.id, index: s.index });
				if (!w) {
					// Started, and no queen knows of it now: lost.
					a.result ??= "lost";
					settle.push(() => this.settle(l, s, a));
				} else if (w.state !== "running") settle.push(() => this.attemptEnded(run.id, s.index, a.workerId, w.hiveId, w)); // ended while no queen watched
			}
			if (stopping) {
				// Being stopped: what was waiting (or being placed, above) will never start, and what runs is asked
				// again to stop (its first stop may not have been sent before its queen went).
				for (const s of run.shards) {
					if (s.state === "waiting") s.state = "cancelled";
					else if (s.state === "running") this.stopShard(l, s, true);
				}
			}
			for (const f of settle) f();
			this.log("carrying on with a sharded run", { id: run.id, shards: run.shards.length });
			this.registry.saveRun(run);
			this.pump(l);
		}
	}

	/** A worker from the database (one hive's, or the only one of that id), or null. */
	private async stored(workerId: string, hiveId: string | null): Promise<QueenWorkerView | null> {
		const found = await this.registry.store.workers.find(workerId, hiveId ?? undefined).catch(() => []);
		return found.length === 1 ? found[0]! : null;
	}

	/**
	 * A placement answered with a worker that may have ended before this queen followed it (a retry answered
	 * from the key, a worker that had the id already): its exit was logged before, and no event will come now.
	 */
	private async endedBefore(l: Live, s: ShardView, workerId: string, hiveId: string): Promise<void> {
		let w = this.registry.getWorker(workerId, hiveId);
		if (!w) {
			const found = await this.stored(workerId, hiveId);
			// What came meanwhile is in the registry: it is newer than the database's record.
			w = this.registry.getWorker(workerId, hiveId) ?? found;
		}
		if (w && w.state !== "running" && this.carries(l)) this.attemptEnded(l.run.id, s.index, workerId, hiveId, w);
	}

	/** Stops carrying a run on (another queen does now): its placements abandoned, nothing more written. */
	private letGo(id: string): void {
		const l = this.live.get(id);
		if (!l) return;
		this.live.delete(id);
		for (const [w, at] of this.byWorker) if (at.runId === id) this.byWorker.delete(w);
		for (const ac of l.placing.values()) ac.abort();
		this.log("a sharded run was taken over by another queen (this one was taken for gone): letting it go", { id });
	}

	/** Whether this queen still carries that run on (not let go since). */
	private carries(l: Live): boolean {
		return this.live.get(l.run.id) === l;
	}

	close(): void {
		this.unsubscribe();
		for (const l of this.live.values()) for (const ac of l.placing.values()) ac.abort();
	}

	async create(body: RunBody, by?: Actor, auth?: string): Promise<{ run: RunView; created: boolean }> {
		const key = body.idempotencyKey ?? null;
		if (key !== null) {
			const earlier = [...this.live.values()].find((l) => l.run.idempotencyKey === key)?.run ?? (await this.registry.store.shardRuns.byKey(key));
			if (earlier) {
				if (hash(earlier.body) !== hash(body))
					throw new RunError(422, `idempotencyKey ${JSON.stringify(key)} was used for a different run: a retry must send the same body`);
				return { run: earlier, created: false };
			}
		}
		const id = `r-${randomBytes(4).toString("hex")}`;
		const run: RunView = {
			id,
			state: "running",
			createdAt: new Date().toISOString(),
			finishedAt: null,
			idempotencyKey: key,
			body,
			exitCode: null,
			message: null,
			shards: Array.from({ length: body.shards }, (_, index): ShardView => ({ index, state: "waiting", attempts: [] })),
		};
		// Written now: another queen (or request) given the same key at once attaches instead of starting a second run.
		const held = await this.registry.store.shardRuns.reserve(run);
		if (held) {
			if (hash(held.body) !== hash(body))
				throw new RunError(422, `idempotencyKey ${JSON.stringify(key)} was used for a different run: a retry must send the same body`);
			return { run: held, created: false };
		}
		const l: Live = { run, cancelled: false, placing: new Map(), by, auth };
		this.live.set(id, l);
		this.registry.saveRun(run, { type: "run.started", data: { run } });
		this.pump(l);
		return { run, created: true };
	}

	async get(id: string): Promise<RunView> {
		const r = this.live.get(id)?.run ?? this.finished.get(id) ?? (await this.registry.store.shardRuns.find(id));
		if (!r) throw new RunError(404, `no run ${id}`);
		return r;
	}

	list(state?: string): Promise<RunView[]> {
		return this.registry.store.shardRuns.list(state);
	}

	/** Stops every running shard (gracefully) and cancels the waiting ones; on the queen that carries the run on. */
	async cancel(id: string, auth?: string): Promise<RunView> {
		let l = this.live.get(id);
		if (!l) {
			const r = await this.get(id);
			if (r.state !== "running") return r;
			const url = await this.o.runQueenUrl?.(id);
			if (url && this.o.forward) {
				const { status, body } = await this.o.forward(url, "DELETE", `/v1/runs/${encodeURIComponent(id)}`, auth);
				if (status === 200) return body as RunView;
				throw new RunError(
					status >= 400 && status < 600 ? status : 502,
					`run ${id} (through its queen at ${url}): ${(body as { message?: string })?.message ?? status}`,
				);
			}
			// Its queen is gone: this one takes it over now, and stops it.
			await this.adopt();
			l = this.live.get(id);
			if (!l) throw new RunError(409, `run ${id} is carried on by another queen, which could not be reached: try again`);
		}
		if (l.run.state === "running") {
			l.cancelled = true;
			this.stopAll(l, "cancelled");
		}
		return l.run;
	}

	/** Starts shards while fewer than maxParallel run. */
	private pump(l: Live): void {
		const { run } = l;
		if (run.state !== "running") return;
		if (l.stopping) {
			this.finishIfDone(l);
			return;
		}
		const max = run.body.maxParallel ?? run.body.shards;
		let active = run.shards.filter((s) => s.state === "running").length;
		for (const s of run.shards) {
			if (active >= max) break;
			if (s.state !== "waiting" || l.placing.has(s.index)) continue;
			active++;
			this.place(l, s).catch((err) => this.log("placing a shard failed", { run: run.id, shard: s.index, err: String(err) }));
		}
		this.finishIfDone(l);
	}

	private async place(l: Live, s: ShardView): Promise<void> {
		const { run } = l;
		const n = run.body.shards;
		const workerId = attemptId(run.id, s.index, s.attempts.length + 1);
		const { shards: _s, maxParallel: _m, failFast: _f, retries: _r, retryFailed: _rf, idempotencyKey: _k, ...rest } = run.body;
		const body: PlacementBody = {
			...rest,
			id: workerId,
			env: { ...(rest.env ?? {}), ...shardEnv(run.id, s.index, n) },
			labels: { ...(rest.labels ?? {}), run: run.id, shard: String(s.index) },
			waitMs: rest.waitMs ?? DEFAULT_WAIT_MS,
			idempotencyKey: workerId,
		};
		const ac = new AbortController();
		l.placing.set(s.index, ac);
		// Counted as running from now: maxParallel holds while it waits for capacity.
		s.state = "running";
		s.attempts.push(newAttempt(workerId));
		this.byWorker.set(workerId, { runId: run.id, index: s.index });
		try {
			let placed: { hiveId: string } | undefined;
			const deadline = Date.now() + (body.waitMs ?? DEFAULT_WAIT_MS);
			let failedSince: number | null = null;
			const firstFailure = (_err: unknown) => (failedSince ??= Date.now());
			while (!placed) {
				try {
					placed = await this.placer.place(body, ac.signal, l.auth, l.by);
				} catch (err) {
					if (!(err instanceof HttpError)) {
						// Not an answer but a failure on the way (the database slow or cut off for a moment): asked again
						// under the same key for as long as the queen's own commits are retried, then given up.
						if (Date.now() - firstFailure(err) < STORE_RETRY_MS && this.carries(l) && !ac.signal.aborted) {
							await sleep(IN_DOUBT_RETRY_MS, undefined, { signal: ac.signal }).catch(() => {});
							continue;
						}
						throw err;
					}
					if (!(err instanceof PlacementError)) throw err;
					// The id is this attempt's alone: a worker that has it is this attempt's, started by the queen that
					// carried the run before (its placement not recorded): followed, not placed twice.
					if (err.inUse?.id === workerId) placed = { hiveId: err.inUse.hiveId };
					// The hive's answer was lost, or it has not yet said: asked again under the same key, as a client is told to.
					else if (err.statusCode === 503 && Date.now() < deadline && this.carries(l) && !ac.signal.aborted)
						await sleep(IN_DOUBT_RETRY_MS, undefined, { signal: ac.signal }).catch(() => {});
					else throw err;
				}
			}
			if (!this.carries(l)) return;
			const a = s.attempts.at(-1)!;
			a.hiveId = placed.hiveId;
			// A worker that ended before its placement's answer came has its record already.
			if (a.result === null) {
				a.startedAt = new Date().toISOString();
				this.registry.saveRun(run, {
					type: "run.shard",
					data: { runId: run.id, index: s.index, event: "started", workerId, hiveId: placed.hiveId },
					hiveId: placed.hiveId,
					workerId,
				});
				await this.endedBefore(l, s, workerId, placed.hiveId);
			}
			// Stopped while it was being placed: stop it now.
			if (l.stopping || run.state !== "running") this.stopShard(l, s);
		} catch (err) {
			if (!this.carries(l)) return;
			const a = s.attempts.at(-1)!;
			// Its worker's end came while the placement's failure was on its way (the attempt is settled).
			if (a.workerId !== workerId || (a.result !== null && !this.byWorker.has(workerId))) return;
			a.result = "cancelled";
			s.state = "cancelled";
			this.byWorker.delete(workerId);
			if (!l.stopping) {
				// Could not be placed (no hive can ever take it, or the wait ran out): the run cannot pass.
				const why = err instanceof PlacementError || err instanceof HttpError ? err.message : String(err);
				run.message ??= `shard ${s.index + 1}/${n} could not be placed: ${why}`;
				this.stopAll(l, "cancelled");
			}
			this.registry.saveRun(run, { type: "run.shard", data: { runId: run.id, index: s.index, event: "cancelled", workerId, message: run.message } });
		} finally {
			l.placing.delete(s.index);
			this.finishIfDone(l);
		}
	}

	/** An attempt's worker has ended: as the registry says, or as known (the database's record). */
	private attemptEnded(runId: string, index: number, workerId: string, hiveId: string | null, known?: QueenWorkerView): void {
		const l = this.live.get(runId);
		if (!l) return;
		const s = l.run.shards[index]!;
		const a = s.attempts.find((x) => x.workerId === workerId);
		if (!a || !this.byWorker.has(workerId)) return;
		const w = this.registry.getWorker(workerId, hiveId ?? undefined) ?? known ?? null;
		if (!w || w.state === "running") return;
		Object.assign(a, ended(a, w));
		this.settle(l, s, a);
	}

	/** An attempt has ended: the shard's next state, a retry, fail-fast. */
	private settle(l: Live, s: ShardView, a: ShardView["attempts"][number]): void {
		const runId = l.run.id;
		const index = s.index;
		const workerId = a.workerId;
		this.byWorker.delete(workerId);
		const next = afterAttempt(s, l.run.body);
		s.state = a.result === "cancelled" || (next.again && l.stopping) ? "cancelled" : next.state;
		const event = next.again && s.state === "waiting" ? "retried" : "ended";
		this.registry.saveRun(l.run, {
			type: "run.shard",
			data: { runId, index, event, workerId, hiveId: a.hiveId, result: a.result, state: s.state, exitCode: a.exitCode },
			hiveId: a.hiveId,
			workerId,
		});
		if (l.run.body.failFast && s.state === "failed") {
			l.run.message ??= `fail-fast: shard ${index + 1}/${l.run.body.shards} failed`;
			this.stopAll(l, "cancelled");
		}
		this.pump(l);
	}

	/** Waiting shards cancelled, placements abandoned, running workers stopped gracefully. */
	private stopAll(l: Live, _why: "cancelled"): void {
		l.stopping = true;
		for (const s of l.run.shards) {
			if (s.state === "waiting") s.state = "cancelled";
			else if (s.state === "running") this.stopShard(l, s);
		}
		for (const ac of l.placing.values()) ac.abort();
		this.registry.saveRun(l.run);
		this.finishIfDone(l);
	}

	/** `again`: asked to stop even if it was before (a run adopted while being stopped). */
	private stopShard(l: Live, s: ShardView, again = false): void {
		const a = s.attempts.at(-1);
		if (!a || (a.result !== null && !(again && a.result === "cancelled"))) return;
		a.result = "cancelled";
		if (!a.hiveId) return; // still being placed: its abort ends it
		this.commands
			.command(a.hiveId, { op: "stop", workerId: a.workerId, ...(l.by ? { by: l.by } : {}) }, { timeoutMs: 60_000 })
			.then((r) => {
				if (r.status !== 200) this.log("stopping a shard failed", { run: l.run.id, worker: a.workerId, status: r.status, error: r.error });
			})
			.catch(() => {});
	}

	private finishIfDone(l: Live): void {
		const { run } = l;
		if (run.state !== "running" || !this.carries(l)) return;
		const o = outcome(run, l.cancelled);
		if (o.state === "running") return;
		run.state = o.state;
		run.exitCode = o.exitCode;
		run.finishedAt = new Date().toISOString();
		const summary = { passed: 0, failed: 0, flaky: 0, lost: 0, cancelled: 0 } as Record<string, number>;
		for (const s of run.shards) summary[s.state] = (summary[s.state] ?? 0) + 1;
		this.registry.saveRun(run, { type: "run.finished", data: { runId: run.id, state: run.state, exitCode: run.exitCode, message: run.message, summary } });
		this.live.delete(run.id);
		this.finished.set(run.id, run);
		// The newest finished runs stay in memory a while (a client reading the end); the store has them all.
		if (this.finished.size > 100) this.finished.delete(this.finished.keys().next().value!);
	}

	private readonly finished = new Map<string, RunView>();
}

const hash = (b: RunBody) => requestHash({ ...(b as unknown as PlacementBody), idempotencyKey: undefined });
