import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Claim, PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import { type History, type Interval, type PlacementRecord, violations } from "./invariants.ts";
import { makeNet } from "./netns.ts";
import { startPostgres } from "./postgres.ts";
import { type Daemon, FAKE_SMI, json, loggedEvents, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "./procs.ts";
import { seeded } from "./slow-proxy.ts";

// The soak (issue #21): 3 queens on one PostgreSQL and 4 hives, each in a
// network namespace of its own, under placements (some retried on another
// queen with their key), claims and releases, kills, sharded runs and SSE
// subscribers that resume, while faults are injected at random: a hive cut
// off from some queens, a queen killed -9 and started again, a queen cut off
// from the database for a few seconds. Seeded (printed; --seed replays the
// same choices), then healed, settled, and judged by invariants.ts from what
// was recorded. `npm run soak -- --minutes 30`; the chaos tier runs 3.

export interface SoakReport {
	seed: number;
	seconds: number;
	ops: Record<string, number>;
	faults: Record<string, number>;
	workers: number;
	violations: string[];
}

const TOKEN = "soak-token";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function soak(o: { seconds: number; seed: number; log: (s: string) => void; logDir?: string }): Promise<SoakReport> {
	const random = seeded(o.seed);
	const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
	const ops: Record<string, number> = {};
	const faults: Record<string, number> = {};
	const count = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
	const dir = tempDir("soak");
	const tokenFile = join(dir, "token");
	writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
	const auth = { authorization: `Bearer ${TOKEN}` };
	const net = makeNet(["db", "q0", "q1", "q2", "h0", "h1", "h2", "h3"]);
	const roots = [0, 1, 2, 3].map(() => newCgroupRoot());
	const queens: Daemon[] = [];
	const hives: Daemon[] = [];
	/** Every daemon started, by name, for --logs (a queen killed and started again is a second entry). */
	const started: [string, Daemon][] = [];
	let db: Awaited<ReturnType<typeof startPostgres>> | null = null;
	const subscribers: { stop: () => void }[] = [];
	try {
		db = await startPostgres({ host: net.addr("db"), wrap: net.wrap("db") });
		const queenArgs = (i: number, port?: number) => ({
			db: db!.url,
			sqlite: true,
			host: net.addr(`q${i}`),
			wrap: net.wrap(`q${i}`),
			tokenFile,
			staleAfter: "2s",
			evictAfter: "120s",
			extra: ["--insecure-plaintext"],
			...(port ? { port } : {}),
		});
		const startQ = async (i: number, port?: number) => {
			const d = await startQueen(queenArgs(i, port));
			started.push([`q${i}`, d]);
			return d;
		};
		for (let i = 0; i < 3; i++) queens.push(await startQ(i));
		const urls = queens.map((q) => q.url);
		for (let i = 0; i < 4; i++) {
			hives.push(
				await startHive({
					// Each hive lists the queens from another first.
					queen: [0, 1, 2].map((k) => urls[(i + k) % 3]).join(","),
					name: `soak-h${i}`,
					stateDir: join(dir, `h${i}`),
					cgroupRoot: roots[i]!,
					interval: "500ms",
					nvidiaSmi: FAKE_SMI("a100x8-idle"),
					tokenFile,
					wrap: net.wrap(`h${i}`),
				}),
			);
			started.push([`h${i}`, hives[i]!]);
		}
		const q = <T>(i: number, path: string, init: RequestInit = {}) =>
			json<T>(`${urls[i]}${path}`, { ...init, headers: { ...auth, ...(init.headers ?? {}) }, signal: AbortSignal.timeout(15_000) }).catch((e) => ({
				status: 0,
				body: String(e) as unknown as T,
			}));
		const post = <T>(i: number, path: string, body: object) =>
			q<T>(i, path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
		for (let t = 0; ; t++) {
			const ready = ((await q<{ state: string }[]>(0, "/v1/hives")).body as { state: string }[]).filter?.((h) => h.state === "ready").length ?? 0;
			if (ready === 4) break;
			if (t > 300) throw new Error("the soak's hives never all came up");
			await sleep(100);
		}

		// Subscribers, one per queen, resuming with Last-Event-ID when cut or now and then.
		const streams: History["streams"] = [];
		for (let i = 0; i < 3; i++) {
			// The first takes every type, so its ids must be gapless; the others a filter, so only increasing.
			const every = i === 0;
			const rec = { subscriber: `q${i}`, ids: [] as (number | null)[], gapless: every };
			streams.push(rec);
			let last: number | null = null;
			let stopped = false;
			let ac = new AbortController();
			void (async () => {
				while (!stopped) {
					ac = new AbortController();
					try {
						const res = await fetch(`${urls[i]}/v1/events${every ? "" : "?types=hive.*,worker.spawned,worker.exited,worker.evicted,claim.*,run.*"}`, {
							headers: { ...auth, accept: "text/event-stream", ...(last !== null ? { "last-event-id": String(last) } : {}) },
							signal: ac.signal,
						});
						const reader = res.body!.getReader();
						let buf = "";
						for (;;) {
							const { value, done } = await reader.read();
							if (done) break;
							buf += Buffer.from(value).toString("utf8");
							for (let k = buf.indexOf("\n\n"); k >= 0; k = buf.indexOf("\n\n")) {
								const block = buf.slice(0, k);
								buf = buf.slice(k + 2);
								const type = /^event: (.*)$/m.exec(block)?.[1];
								const id = /^id: (\d+)$/m.exec(block)?.[1];
								if (!type || id === undefined) continue;
								// A sample carries the id of the event before it: not an event of its own.
								if (type === "worker.updated") continue;
								// A new start (or events dropped for a slow reader, said so): counted from its id.
								if (type === "snapshot" || type === "stream.reset" || type === "stream.lagged") rec.ids.push(null, Number(id));
								else rec.ids.push(Number(id));
								last = Number(id);
							}
						}
					} catch {
						// cut (a fault, or a resume on purpose): again from the last id
					}
					if (!stopped) await sleep(300);
				}
			})();
			subscribers.push({
				stop: () => {
					stopped = true;
					ac.abort();
				},
			});
			// A resume on purpose now and then.
			const t = setInterval(() => ac.abort(), 7000 + i * 1000);
			subscribers.push({ stop: () => clearInterval(t) });
		}

		const placements: PlacementRecord[] = [];
		const claims: Interval[] = [];
		const runs: string[] = [];
		const placed: string[] = [];
		const healers: Promise<void>[] = [];
		/** Queens killed and not yet started again (one at a time). */
		const down = new Set<number>();
		const deadline = performance.now() + o.seconds * 1000;
		let n = 0;
		let nextFault = performance.now() + 3000;
		const pending: Promise<unknown>[] = [];
		while (performance.now() < deadline) {
			n++;
			const at = pick([0, 1, 2]);
			const r = random();
			if (r < 0.55) {
				count(ops, "place");
				const rec: PlacementRecord = { key: `k${n}`, answers: [] };
				placements.push(rec);
				const body = {
					id: `s${o.seed}-${n}`,
					command: ["sleep", String(1 + Math.floor(random() * 4))],
					gpus: { count: 1 },
					idempotencyKey: rec.key,
					waitMs: 3000,
				};
				const retry = random() < 0.25 ? pick([0, 1, 2].filter((k) => k !== at)) : null;
				pending.push(
					(async () => {
						const a = await post<PlacementAnswer>(at, "/v1/workers", body);
						rec.answers.push({ status: a.status, workerId: a.status < 300 ? a.body.id : null, hiveId: a.status < 300 ? a.body.hiveId : null });
						if (a.status === 201) placed.push(body.id);
						if (retry !== null) {
							count(ops, "retry");
							const b = await post<PlacementAnswer>(retry, "/v1/workers", body);
							rec.answers.push({ status: b.status, workerId: b.status < 300 ? b.body.id : null, hiveId: b.status < 300 ? b.body.hiveId : null });
						}
					})(),
				);
			} else if (r < 0.75) {
				count(ops, "claim");
				const hold = 500 + random() * 1500;
				const release = pick([0, 1, 2]);
				pending.push(
					(async () => {
						const c = await post<Claim>(at, "/v1/claims", { count: 1, ttlSeconds: 3, holder: "soak" });
						if (c.status !== 201) return;
						const held: Interval[] = c.body.gpus.map((g) => ({
							holder: c.body.id,
							gpu: `${g.hiveId}/${g.uuid}`,
							from: Date.parse(c.body.createdAt),
							to: Date.parse(c.body.expiresAt),
						}));
						claims.push(...held);
						await sleep(hold);
						const d = await q<Claim>(release, `/v1/claims/${c.body.id}`, { method: "DELETE" });
						if (d.status === 200) {
							count(ops, "release");
							for (const h of held) h.to = Math.min(h.to!, Date.now());
						}
					})(),
				);
			} else if (r < 0.85 && placed.length > 0) {
				count(ops, "kill");
				const id = pick(placed);
				pending.push(q(at, `/v1/workers/${id}`, { method: "DELETE" }));
			} else {
				count(ops, "run");
				pending.push(
					(async () => {
						const a = await post<{ id: string }>(at, "/v1/runs", { command: ["sleep", "1"], shards: 2 });
						if (a.status === 201) runs.push(a.body.id);
					})(),
				);
			}
			if (performance.now() > nextFault) {
				nextFault = performance.now() + 6000 + random() * 6000;
				const kind = pick(["hive-cut", "queen-kill", "queen-db-cut"] as const);
				if (kind !== "queen-kill" || down.size === 0) count(faults, kind);
				if (kind === "hive-cut") {
					const h = pick([0, 1, 2, 3]);
					const cut = [0, 1, 2].filter(() => random() < 0.6);
					const ms = 3000 + random() * 5000;
					o.log(`fault: hive ${h} cut from queens ${cut.join(",") || "(none)"} for ${Math.round(ms)} ms`);
					for (const k of cut) net.partition(`h${h}`, `q${k}`);
					healers.push(sleep(ms).then(() => net.heal(`h${h}`)));
				} else if (kind === "queen-kill" && down.size === 0) {
					const k = pick([0, 1, 2]);
					down.add(k);
					o.log(`fault: queen ${k} killed -9`);
					const port = queens[k]!.port;
					await queens[k]!.stop("SIGKILL");
					healers.push(
						sleep(2000).then(async () => {
							// Started again as systemd's Restart=on-failure would: a start that fails (the database
							// not answering in time) is tried again after a second, at most 5 times.
							for (let attempt = 1; ; attempt++) {
								try {
									queens[k] = await startQ(k, port);
									break;
								} catch (err) {
									o.log(`queen ${k} did not start (attempt ${attempt}): ${String(err).slice(0, 300)}`);
									count(faults, "queen-start-failed");
									if (attempt === 5) throw err;
									await sleep(1000);
								}
							}
							down.delete(k);
						}),
					);
					// Awaited with the others at the end; until then a failure must not end the process unreported.
					healers.at(-1)!.catch(() => {});
				} else if (kind === "queen-db-cut") {
					const k = pick([0, 1, 2]);
					o.log(`fault: queen ${k} cut from the database for 4 s`);
					net.partition(`q${k}`, "db");
					healers.push(sleep(4000).then(() => net.heal(`q${k}`)));
				}
			}
			await sleep(150 + random() * 250);
		}
		await Promise.all(healers);
		await Promise.allSettled(pending);
		// Settled: every partition healed, every queen up (one that gave up on its database is started again), sleeps ended.
		for (const r of ["h0", "h1", "h2", "h3", "q0", "q1", "q2"]) net.heal(r);
		for (let k = 0; k < 3; k++) if (queens[k]!.proc.exitCode !== null) queens[k] = await startQ(k, queens[k]!.port);
		for (let t = 0; ; t++) {
			const hs = (await q<{ state: string }[]>(0, "/v1/hives")).body as { state: string }[];
			if (Array.isArray(hs) && hs.filter((h) => h.state === "ready").length === 4) break;
			if (t > 600) throw new Error("the hives did not all come back after the faults healed");
			await sleep(100);
		}
		await sleep(8000);
		for (const s of subscribers) s.stop();

		// The whole log replayed (about 7,000 events a second here): a longer run's takes longer.
		const readMs = Math.max(3000, o.seconds * 20);
		const workers = ((await q<QueenWorkerView[]>(0, "/v1/workers?state=all&limit=10000")).body as QueenWorkerView[]) ?? [];
		const exitEvents = new Map<string, number>();
		for (const e of await loggedEvents(urls[0]!, "worker.exited", readMs, auth)) {
			const k = `${e.hiveId}/${e.workerId}`;
			exitEvents.set(k, (exitEvents.get(k) ?? 0) + 1);
		}
		// The soak's claims as the queens logged them (a release whose answer a fault cut off still happened):
		// from claim.created to claim.released, by the queens' clocks.
		const mine = new Set(claims.map((c) => c.holder));
		const claimed = new Map<string, Interval[]>();
		const ended2: string[] = [];
		for (const e of await loggedEvents(urls[0]!, "claim.*", readMs, auth)) {
			const c = (e.data as { claim?: Claim }).claim;
			if (!c || !mine.has(c.id)) continue;
			const at = Date.parse((e as unknown as { at: string }).at);
			if (e.type === "claim.created")
				claimed.set(
					c.id,
					c.gpus.map((g) => ({ holder: c.id, gpu: `${g.hiveId}/${g.uuid}`, from: at, to: null })),
				);
			else {
				// Released once: a second end logged for it (two queens each deciding it) is a broken promise of its own.
				if ((claimed.get(c.id) ?? []).some((i) => i.to !== null)) ended2.push(`claim ${c.id}: ended twice in the log (${e.type})`);
				for (const i of claimed.get(c.id) ?? []) i.to ??= at;
			}
		}
		const holds: Interval[] = [...claimed.values()].flat();
		for (const w of workers)
			for (const g of w.gpus)
				holds.push({
					holder: w.id,
					gpu: `${w.hiveId}/${g}`,
					from: Date.parse(w.startedAt),
					to: w.exit ? Date.parse(w.exit.endedAt ?? w.exit.endedBefore ?? "") : null,
				});
		const history: History = {
			holds,
			placements,
			workers: workers.map((w) => ({
				hiveId: w.hiveId,
				id: w.id,
				state: w.state,
				pid: w.pid ?? null,
				exitEvents: exitEvents.get(`${w.hiveId}/${w.id}`) ?? 0,
				exited: w.exit !== null,
			})),
			streams,
			alive: (pid) => {
				try {
					process.kill(pid, 0);
					return true;
				} catch {
					return false;
				}
			},
		};
		const found = [...violations(history), ...ended2];
		if (o.logDir) {
			// What the verdict was drawn from, and every lifecycle event, for finding out why a rule broke.
			mkdirSync(o.logDir, { recursive: true });
			const events = await loggedEvents(urls[0]!, "hive.*,worker.spawned,worker.exited,worker.evicted,claim.*,placement.*,run.*", readMs, auth);
			writeFileSync(join(o.logDir, "history.json"), JSON.stringify({ holds, placements, workers: history.workers, events }, null, 1));
		}
		// Runs: none left running once settled.
		for (const id of runs) {
			const v = await q<{ state: string }>(0, `/v1/runs/${id}`);
			if (v.status === 200 && (v.body as { state: string }).state === "running") found.push(`run ${id} still running after the faults healed`);
		}
		return { seed: o.seed, seconds: o.seconds, ops, faults, workers: workers.length, violations: found };
	} finally {
		for (const s of subscribers) s.stop();
		for (const h of hives) await h.stop().catch(() => {});
		for (const x of queens) await x.stop().catch(() => {});
		if (o.logDir) {
			mkdirSync(o.logDir, { recursive: true });
			for (const [i, [name, d]] of started.entries()) writeFileSync(join(o.logDir, `${String(i).padStart(2, "0")}-${name}.log`), `${d.out()}${d.err()}`);
		}
		for (const r of roots) await removeCgroupRoot(r).catch(() => {});
		await db?.stop();
		net.destroy();
		removeDir(dir);
	}
}
