import { join } from "node:path";
import { endedWorker, FakeHive, gpu, worker } from "@apiary/test-support/fake-hive";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { startSlowProxy } from "@apiary/test-support/slow-proxy";
import { json, removeDir, runCli, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startQueenDaemon } from "../../src/daemon.ts";
import type { CommitNumberedEventTable } from "../../src/store/events.ts";
import { PgStore } from "../../src/store/pg/store.ts";

// `queen start --db postgres://…` against a real server: what the queen's
// suites (run again on PostgreSQL in this tier) cannot see from outside.
describe("the queen on PostgreSQL", () => {
	let server: Postgres;
	let dir: string;
	const dbUrl = (name: string) => server.url.replace(/\/postgres$/, `/${name}`);
	const admin = async (name: string) => {
		const c = new pg.Client({ connectionString: dbUrl(name) });
		await c.connect();
		return c;
	};

	beforeAll(async () => {
		server = await startPostgres();
		dir = tempDir("pgstore");
		const c = await admin("postgres");
		for (const db of ["one", "acks", "twice", "final", "behind", "silent"]) await c.query(`CREATE DATABASE ${db}`);
		await c.end();
	}, 120_000);
	afterAll(async () => {
		await server?.stop();
		if (dir) removeDir(dir);
	});

	it("serves from the database; a second queen on it serves the same fleet, and when the first stops its hive is unknown there (not lost) until it reconnects", async () => {
		const first = await startQueen({ db: dbUrl("one"), sqlite: true, staleAfter: "3s", evictAfter: "60s" });
		const second = await startQueen({ db: dbUrl("one"), sqlite: true, staleAfter: "3s", evictAfter: "60s" });
		try {
			expect(first.out()).toContain(`db: ${dbUrl("one")}`);
			const fh = new FakeHive(first.url, "moving", { gpus: [gpu(0)] });
			await fh.opened();
			fh.hello();
			fh.heartbeat([worker("stays")]);
			await until(async () => (await json(`${second.url}/v1/hives/moving`)).body?.state === "ready", 5000, "ready on the second queen");
			expect((await json(`${second.url}/v1/workers/stays`)).body).toMatchObject({ hiveId: "moving", state: "running" });
			fh.close();
			await first.stop();
			await until(async () => (await json(`${second.url}/v1/hives/moving`)).body?.state === "unknown", 5000, "unknown once its queen is gone");
			const back = new FakeHive(second.url, "moving", { gpus: [gpu(0)] });
			await back.opened();
			back.hello();
			back.heartbeat([worker("stays")]);
			await until(async () => (await json(`${second.url}/v1/hives/moving`)).body?.state === "ready", 5000, "ready again");
			// Moved, not lost: no eviction, no hive.lost in the log.
			expect((await json(`${second.url}/v1/workers/stays`)).body).toMatchObject({ state: "running" });
			const c = await admin("one");
			try {
				expect((await c.query("SELECT count(*)::int AS n FROM events WHERE type IN ('hive.lost', 'worker.evicted')")).rows[0].n).toBe(0);
			} finally {
				await c.end();
			}
			back.close();
		} finally {
			await first.stop();
			await second.stop();
		}
	});

	it("acknowledges nothing before it is committed: a heartbeat's ack and a claim's answer wait while the database holds their rows locked", async () => {
		const queen = await startQueen({ db: dbUrl("acks"), sqlite: true, staleAfter: "30s", evictAfter: "60s" });
		const blocker = await admin("acks");
		try {
			const fh = new FakeHive(queen.url, "h", { gpus: [gpu(0), gpu(1)] });
			await fh.opened();
			fh.hello();
			const first = fh.heartbeat([worker("a")]);
			await until(() => fh.acks.includes(first), 5000, "first ack");
			// Another session holds the workers and claims tables: the queen's next commits wait behind it.
			await blocker.query("BEGIN");
			await blocker.query("LOCK TABLE workers, claims IN ACCESS EXCLUSIVE MODE");
			const seq = fh.heartbeat([worker("a"), worker("b")]);
			const claim = json(`${queen.url}/v1/claims`, {
				method: "POST",
				headers: { "content-type": "application/json" },
				body: JSON.stringify({ count: 1, ttlSeconds: 600, holder: "ci" }),
			});
			let answered = false;
			void claim.then(() => {
				answered = true;
			});
			await sleep(700);
			expect(fh.acks).not.toContain(seq);
			expect(answered).toBe(false);
			// The queen itself already knows (its memory is ahead of the commit, its answers to changes are not).
			expect((await json<{ id: string }[]>(`${queen.url}/v1/workers?hive=h`)).body.map((w) => w.id).sort()).toEqual(["a", "b"]);
			await blocker.query("ROLLBACK");
			await until(() => fh.acks.includes(seq), 5000, "ack after commit");
			const c = await claim;
			expect(c.status).toBe(201);
			const rows = await blocker.query<{ id: string }>("SELECT id FROM workers ORDER BY id");
			expect(rows.rows.map((r) => r.id)).toEqual(["a", "b"]);
			expect((await blocker.query("SELECT id FROM claims")).rows).toEqual([{ id: c.body.id }]);
			fh.close();
		} finally {
			await blocker.end();
			await queen.stop();
		}
	});

	it("a queen whose connections to the database went silent (open, answering nothing, as a network cut leaves them) reads the log again once new ones work: its view does not stay where the cut found it", async () => {
		const a = await startQueen({ db: dbUrl("silent"), sqlite: true, staleAfter: "3s", evictAfter: "60s" });
		const target = new URL(server.url);
		const proxy = await startSlowProxy({
			listenHost: "127.0.0.1",
			target: { host: target.hostname, port: Number(target.port) },
			latencyMs: 0,
			loss: 0,
			seed: 1,
		});
		const b = await startQueen({ db: dbUrl("silent").replace(target.host, `127.0.0.1:${proxy.port}`), sqlite: true, staleAfter: "3s", evictAfter: "60s" });
		const hives: FakeHive[] = [];
		const join = async (id: string) => {
			const h = new FakeHive(a.url, id);
			hives.push(h);
			await h.opened();
			h.hello();
			h.heartbeat([]);
		};
		const seenByB = async (id: string) => ((await json<{ id: string }[]>(`${b.url}/v1/hives`)).body ?? []).some((h) => h.id === id);
		try {
			await join("before");
			await until(() => seenByB("before"), 10_000, "the second queen reads the first's log");
			// Every connection the second queen holds goes silent, its event tail's among them (it polls every second).
			proxy.silence();
			await join("after");
			// Its reads on the silent connections time out; new connections carry them: it sees the hive that joined meanwhile.
			await until(() => seenByB("after"), 45_000, "the second queen catches up on new connections");
		} finally {
			for (const h of hives) h.close();
			await b.stop();
			await a.stop();
			await proxy.close();
		}
	}, 90_000);

	it("a queen that fell behind the log (it could not read it a while) catches up before it judges a hive's first snapshot: an exit another queen logged is not an absent worker evicted", async () => {
		const a = await startQueen({ db: dbUrl("behind"), sqlite: true, staleAfter: "3s", evictAfter: "60s" });
		const c = await admin("behind");
		// The second queen logs in as a role of its own, so that its reads alone can be refused a while.
		await c.query(
			"CREATE ROLE lagging LOGIN; GRANT ALL ON SCHEMA public TO lagging; GRANT ALL ON ALL TABLES IN SCHEMA public TO lagging; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO lagging",
		);
		const b = await startQueen({ db: dbUrl("behind").replace("postgres@", "lagging@"), sqlite: true, staleAfter: "3s", evictAfter: "60s" });
		try {
			const fh = new FakeHive(a.url, "h", { gpus: [gpu(0)] });
			await fh.opened();
			fh.hello();
			fh.heartbeat([worker("w", { gpus: ["0"] })]);
			await until(async () => (await json(`${b.url}/v1/workers/w?hive=h`)).body?.state === "running", 5000, "the second queen sees w running");
			// The second queen cannot read the log while the hive reports w's exit to the first.
			await c.query("REVOKE SELECT ON events, hives, workers, gpus FROM lagging");
			const done = endedWorker("w", 5000);
			const seq = fh.heartbeat([done]);
			await until(() => fh.acks.includes(seq), 5000, "the exit committed");
			// (Asking the second queen now would fail: answering, it reads the log it cannot read.)
			await c.query("GRANT SELECT ON events, hives, workers, gpus TO lagging");
			// The hive moves to the second queen at once: its first snapshot no longer holds w (its exit was acked).
			fh.close();
			const moved = new FakeHive(b.url, "h", { gpus: [gpu(0)] });
			await moved.opened();
			moved.hello();
			const first = moved.heartbeat([]);
			await until(() => moved.acks.includes(first), 5000, "first snapshot acked");
			expect((await json(`${b.url}/v1/workers/w?hive=h`)).body?.state).toBe("exited");
			const evicted = await c.query("SELECT count(*)::int AS n FROM events WHERE type = 'worker.evicted'");
			expect(evicted.rows[0].n).toBe(0);
			expect((await c.query("SELECT state FROM workers WHERE id = 'w'")).rows).toEqual([{ state: "exited" }]);
			moved.close();
		} finally {
			await c.end();
			await b.stop();
			await a.stop();
		}
	});

	it("an end two queens both log (an exit reported to each, a claim released at one and expired at the other, cut off) is logged once, ids gapless", async () => {
		// As the queens commit them: each its own batch, each unaware of the other's (the one that was cut off commits late).
		const a = await PgStore.open(dbUrl("twice"), { queenId: "queen-a" });
		const b = await PgStore.open(dbUrl("twice"), { queenId: "queen-b" });
		const c = await admin("twice");
		try {
			const exit = (startedAt: string) => ({ type: "worker.exited", hiveId: "h", workerId: "w", data: { exit: { startedAt, exitCode: 0 } } });
			const released = (id: string, reason: string) => ({ type: "claim.released", hiveId: null, workerId: null, data: { claim: { id }, reason } });
			const commit = async (s: PgStore, batch: object[]) => {
				s.tx(() => (s.events as CommitNumberedEventTable).insertUnnumbered(JSON.stringify(batch), batch.length));
				await s.durable();
			};
			await commit(a, [exit("2026-12-04T10:00:00.000Z"), released("c-1", "released")]);
			await commit(b, [{ type: "hive.stale", hiveId: "h", workerId: null, data: {} }, exit("2026-12-04T10:00:00.000Z"), released("c-1", "expired")]);
			// Another run of the same worker, and another claim: logged.
			await commit(b, [exit("2026-12-04T11:00:00.000Z"), released("c-2", "expired")]);
			const rows = (
				await c.query<{ id: string; type: string; origin: string; reason: string | null }>(
					"SELECT id, type, origin, data->>'reason' AS reason FROM events ORDER BY id",
				)
			).rows;
			expect(rows.map((r) => [Number(r.id), r.type, r.origin, r.reason])).toEqual([
				[1, "worker.exited", "queen-a", null],
				[2, "claim.released", "queen-a", "released"],
				[3, "hive.stale", "queen-b", null],
				[4, "worker.exited", "queen-b", null],
				[5, "claim.released", "queen-b", "expired"],
			]);
			expect((await c.query("SELECT last_id FROM event_counter")).rows[0].last_id).toBe("5");
		} finally {
			await c.end();
			await a.close();
			await b.close();
		}
	});

	it("a run's exit is final: a late write of that run as running or evicted, from a queen cut off while its hive moved on, changes neither its row nor the log; a later run of that id is written", async () => {
		// The soak (seed 611874): queen A took a hive's spawn, was cut from the database, the hive moved to queen B
		// and reported the exit there; A's queued commit then wrote the worker running again, for good.
		const a = await PgStore.open(dbUrl("final"), { queenId: "queen-a" });
		const b = await PgStore.open(dbUrl("final"), { queenId: "queen-b" });
		const c = await admin("final");
		try {
			const ended = endedWorker("w", 1000);
			const exit = ended.exit!;
			const run = (startedAt: string) => ({ ...worker("w", { startedAt }), hiveId: "h", state: "running" as const, exit: null });
			const commit = async (s: PgStore, view: object, events: object[]) => {
				s.tx(() => {
					s.workers.save(view as never);
					(s.events as CommitNumberedEventTable).insertUnnumbered(JSON.stringify(events), events.length);
				});
				await s.durable();
			};
			const first = run(ended.startedAt);
			await commit(b, { ...ended, hiveId: "h", state: "exited" }, [{ type: "worker.exited", hiveId: "h", workerId: "w", data: { exit, worker: ended } }]);
			// A's late commits, queued before it heard of the exit.
			await commit(a, first, [{ type: "worker.spawned", hiveId: "h", workerId: "w", data: { hiveId: "h", worker: first } }]);
			await commit(a, { ...first, state: "evicted" }, [
				{ type: "worker.evicted", hiveId: "h", workerId: "w", data: { hiveId: "h", workerId: "w", startedAt: first.startedAt, reason: "x" } },
			]);
			const state = async () => (await c.query<{ state: string; started: string }>("SELECT state, info->>'startedAt' AS started FROM workers")).rows;
			const log = async () =>
				(await c.query<{ type: string; origin: string }>("SELECT type, origin FROM events ORDER BY id")).rows.map((r) => [r.type, r.origin]);
			expect(await state()).toEqual([{ state: "exited", started: ended.startedAt }]);
			expect(await log()).toEqual([["worker.exited", "queen-b"]]);
			// Another run of the same worker id is a new row and a new spawn.
			const second = run(new Date(Date.parse(ended.startedAt) + 3_600_000).toISOString());
			await commit(a, second, [{ type: "worker.spawned", hiveId: "h", workerId: "w", data: { hiveId: "h", worker: second } }]);
			expect(await state()).toEqual([{ state: "running", started: second.startedAt }]);
			expect(await log()).toEqual([
				["worker.exited", "queen-b"],
				["worker.spawned", "queen-a"],
			]);
		} finally {
			await c.end();
			await a.close();
			await b.close();
		}
	});

	it("a queen started on a migrated database has the fleet back, and a Last-Event-ID from the SQLite queen resumes on it", async () => {
		const file = join(dir, "queen.db");
		const old = await startQueen({ db: file, sqlite: true, staleAfter: "30s", evictAfter: "60s" });
		try {
			const fh = new FakeHive(old.url, "mig", { gpus: [gpu(0)] });
			await fh.opened();
			fh.hello();
			const s1 = fh.heartbeat([worker("w1")]);
			await until(() => fh.acks.includes(s1), 5000, "ack");
			fh.close();
		} finally {
			await old.stop();
		}
		const c = await admin("postgres");
		await c.query("CREATE DATABASE moved");
		await c.end();
		expect((await runCli("queen", ["migrate", "--from", file, "--to", dbUrl("moved")])).code).toBe(0);
		const moved = await admin("moved");
		const ids = (await moved.query<{ id: string }>("SELECT id FROM events ORDER BY id")).rows.map((r) => Number(r.id));
		await moved.end();
		expect(ids.length).toBeGreaterThan(2);
		const lastSeen = ids[0]!;

		const queen = await startQueen({ db: dbUrl("moved"), sqlite: true });
		try {
			expect((await json(`${queen.url}/v1/hives/mig`)).body).toMatchObject({ id: "mig", state: "unknown" });
			expect((await json(`${queen.url}/v1/workers/w1`)).body).toMatchObject({ hiveId: "mig", state: "running" });
			// Resume from the first event the SQLite queen logged: exactly the rest, in order.
			const res = await fetch(`${queen.url}/v1/events`, { headers: { "last-event-id": String(lastSeen) } });
			const reader = res.body!.getReader();
			let text = "";
			const want = ids.slice(1);
			for (let i = 0; i < 50; i++) {
				const { value } = await Promise.race([reader.read(), sleep(200).then(() => ({ value: undefined }))]);
				if (value) text += Buffer.from(value).toString();
				const got = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
				if (got.length >= want.length) break;
			}
			await reader.cancel();
			expect([...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]))).toEqual(want);
			expect(text).not.toContain("event: snapshot");
		} finally {
			await queen.stop();
		}
	});

	it("a database that goes away: nothing more is acked, commits are retried, then the queen gives up with the reason (its restart reloads what was committed)", async () => {
		const own = await startPostgres();
		const fatal: Error[] = [];
		const q = await startQueenDaemon({
			listen: "127.0.0.1:0",
			db: own.url,
			staleAfterMs: 30_000,
			evictAfterMs: 60_000,
			token: null,
			dbRetryMs: 1500,
			onDbFatal: (err) => fatal.push(err),
		});
		try {
			const fh = new FakeHive(q.url, "h", { gpus: [gpu(0)] });
			await fh.opened();
			fh.hello();
			const ok = fh.heartbeat([worker("a")]);
			await until(() => fh.acks.includes(ok), 5000, "ack while the database is up");
			await own.stop();
			const lost = fh.heartbeat([worker("a"), worker("b")]);
			await until(() => fatal.length > 0, 15_000, "the queen gives up");
			// Whichever it notices first: the commits failing past their retries, or the lock's connection gone.
			expect(fatal[0]!.message).toMatch(/^postgres: (committing the queen's changes failed for 1\.5 s|the connection this queen listens on was lost): /);
			expect(fh.acks).not.toContain(lost);
			// The hive is told: its socket is closed, so it keeps the heartbeat's exits for the next queen.
			await until(() => fh.closed !== null, 5000, "socket closed");
			expect(fh.closed).toMatchObject({ code: 1011 });
		} finally {
			await q.close().catch(() => {});
		}
	});

	it("a start that cannot finish (its address refused by the database) is retried, then fails naming the step and closes every connection, so the process can exit", async () => {
		const c = await admin("postgres");
		await c.query("CREATE DATABASE stuck");
		await c.end();
		// Migrated by a first start; then the database refuses any queen's address.
		const first = await startQueenDaemon({ listen: "127.0.0.1:0", db: dbUrl("stuck"), staleAfterMs: 30_000, evictAfterMs: 60_000, token: null });
		await first.close();
		const a = await admin("stuck");
		try {
			await a.query(`CREATE FUNCTION refuse_url() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN IF NEW.url IS DISTINCT FROM OLD.url THEN RAISE EXCEPTION 'test: no address today'; END IF; RETURN NEW; END $$`);
			await a.query("CREATE TRIGGER refuse_url BEFORE UPDATE ON queens FOR EACH ROW EXECUTE FUNCTION refuse_url()");
			const said: string[] = [];
			const start = startQueenDaemon({
				listen: "127.0.0.1:0",
				db: dbUrl("stuck"),
				staleAfterMs: 30_000,
				evictAfterMs: 60_000,
				token: null,
				dbRetryMs: 1500,
				log: (msg) => said.push(msg),
			});
			await expect(start).rejects.toThrow(/^postgres: advertising this queen's address at start failed for 1\.5 s: test: no address today/);
			expect(said).toContain("postgres: advertising this queen's address at start failed; retrying");
			// Nothing of it is left open: no connection of its pool (before, it held them and the process never exited).
			const others = async () =>
				Number((await a.query("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = 'stuck' AND pid <> pg_backend_pid()")).rows[0].n);
			await until(async () => (await others()) === 0, 5000, "its connections closed");
		} finally {
			await a.end();
		}
	});

	it("a wait for the fleet lock that times out leaves no session to take the lock later and hold it for good", async () => {
		const c = await admin("postgres");
		await c.query("CREATE DATABASE lockwait");
		await c.end();
		const a = await PgStore.open(dbUrl("lockwait"), { retryMs: 1000, onFatal: (err) => expect.fail(err.message) });
		const b = await PgStore.open(dbUrl("lockwait"), { retryMs: 1000, onFatal: (err) => expect.fail(err.message) });
		const KEY = 70_700_099;
		try {
			let letGo!: () => void;
			const held = new Promise<void>((r) => (letGo = r));
			const holding = a.withLock(KEY, () => held);
			await sleep(200);
			// b waits past its query timeout (10 s) and gives up.
			await expect(b.withLock(KEY, () => "never")).rejects.toThrow(/timeout/i);
			letGo();
			await holding;
			// Before, b's wait went on at the server, took the lock once a let go, and its session (back in b's
			// pool) never unlocked it: no queen could place or claim again.
			const q = await admin("lockwait");
			try {
				await sleep(500);
				const got = (await q.query<{ ok: boolean }>("SELECT pg_try_advisory_lock($1) AS ok", [KEY])).rows[0]!.ok;
				expect(got).toBe(true);
			} finally {
				await q.end();
			}
		} finally {
			await a.close();
			await b.close();
		}
	}, 40_000);

	it("the fleet's line: keepOnly removes this queen's rows up to a seq that no waiter holds, and no other queen's", async () => {
		const c = await admin("postgres");
		await c.query("CREATE DATABASE line");
		await c.end();
		const a = await PgStore.open(dbUrl("line"), { retryMs: 1000, onFatal: (err) => expect.fail(err.message) });
		const b = await PgStore.open(dbUrl("line"), { retryMs: 1000, onFatal: (err) => expect.fail(err.message) });
		try {
			const [s1, s2, s3] = [await a.waiters!.add("w1", {}), await a.waiters!.add("w2", {}), await a.waiters!.add("w3", {})];
			const other = await b.waiters!.add("x", {});
			expect(await a.waiters!.keepOnly([s2], s2)).toBe(1);
			const q = await admin("line");
			const left = (await q.query("SELECT seq FROM waiters ORDER BY seq")).rows.map((r) => Number(r.seq));
			await q.end();
			expect(left).toEqual([s2, s3, other]);
			expect(s1).toBeLessThan(s2);
		} finally {
			await a.close();
			await b.close();
		}
	});

	it("values written as literals come back byte for byte, hostile ones included (quotes, backslashes, $1, SQL, unicode)", async () => {
		const c = await admin("postgres");
		await c.query("CREATE DATABASE literals");
		await c.end();
		const store = await PgStore.open(dbUrl("literals"), { retryMs: 1000, onFatal: (err) => expect.fail(err.message) });
		const nasty = ["it's", "a\\b", "$1 $2", "'); DROP TABLE workers; --", "E'x'", "emoji 🐝 ü", "tab\tnew\nline", "\\x00"];
		try {
			store.tx(() => {
				nasty.forEach((label, i) => {
					store.workers.save({ ...worker(`w${i}`, { labels: { k: label }, command: [label] }), hiveId: label, state: "running", exit: null });
				});
				store.hives.save({
					id: "h'1",
					instanceId: "$2",
					state: "ready",
					lastSeenAt: "2026-11-30T10:00:00.123Z",
					version: "\\",
					host: { hostname: "x", os: "o", kernel: "k", arch: "a", cpuModel: "'", cores: 2, memoryBytes: 1 },
					driver: { name: "v2", enforced: true, root: null, reason: "r" },
					labels: {},
				});
			});
			await store.durable();
			const q = await admin("literals");
			try {
				const rows = (await q.query<{ hive_id: string; info: { labels: { k: string }; command: string[] } }>("SELECT hive_id, info FROM workers ORDER BY id"))
					.rows;
				expect(rows.map((r) => [r.hive_id, r.info.labels.k, r.info.command[0]])).toEqual(nasty.map((x) => [x, x, x]));
				// last_seen_at is the database's clock for a ready hive (its queen renews it), not the value given.
				const [h] = (await q.query("SELECT id, instance_id, info->>'version' AS version, now() - last_seen_at < interval '1 minute' AS renewed FROM hives"))
					.rows;
				expect(h).toEqual({ id: "h'1", instance_id: "$2", version: "\\", renewed: true });
				expect((await q.query("SELECT count(*)::int AS n FROM workers")).rows[0].n).toBe(nasty.length);
			} finally {
				await q.end();
			}
		} finally {
			await store.close();
		}
	});

	it("changes queued while a commit is in flight go in transactions of a bounded size, in order, all of them: a join storm is never one transaction that outlasts the commit timeout", async () => {
		const c = await admin("postgres");
		await c.query("CREATE DATABASE storm");
		await c.end();
		const store = await PgStore.open(dbUrl("storm"), { retryMs: 1000, onFatal: (err) => expect.fail(err.message) });
		try {
			const before = store.commits();
			// 6,000 units of one row each, queued at once (the first starts a commit; the rest wait behind it).
			for (let i = 0; i < 6000; i++) store.tx(() => store.workers.save({ ...worker(`s${i}`), hiveId: "storm", state: "running", exit: null }));
			await store.durable();
			// One commit for the first, then at most 2,000 statements each: at least four, where one took them all.
			expect(store.commits() - before).toBeGreaterThanOrEqual(4);
			const q = await admin("storm");
			try {
				expect((await q.query("SELECT count(*)::int AS n FROM workers WHERE hive_id = 'storm'")).rows[0].n).toBe(6000);
			} finally {
				await q.end();
			}
		} finally {
			await store.close();
		}
	}, 60_000);

	it("a commit whose read-back fails for a moment (no pool connection in time) is still acknowledged: the read is tried again, not the ack failed", async () => {
		const c = await admin("postgres");
		await c.query("CREATE DATABASE readback");
		await c.end();
		const a = await PgStore.open(dbUrl("readback"), { queenId: "queen-a", retryMs: 5000, onFatal: (err) => expect.fail(err.message) });
		try {
			let read = 0;
			await a.startTail(0, async (batch) => {
				read = batch.at(-1)!.id;
			});
			// The log's next reads fail as pg's pool fails them when no connection came within its wait.
			const pool = (a as unknown as { pool: pg.Pool }).pool;
			const query = pool.query.bind(pool) as (...args: unknown[]) => Promise<unknown>;
			let failures = 2;
			(pool as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = (...args: unknown[]) => {
				const text = typeof args[0] === "string" ? args[0] : (args[0] as { text: string }).text;
				if (failures > 0 && /FROM events WHERE id > \$1/.test(text)) {
					failures--;
					return Promise.reject(new Error("timeout exceeded when trying to connect"));
				}
				return query(...args);
			};
			const e = [{ type: "hive.stale", hiveId: "h", workerId: null, data: {} }];
			a.tx(() => (a.events as CommitNumberedEventTable).insertUnnumbered(JSON.stringify(e), 1));
			await a.durable();
			expect(failures).toBe(0);
			expect(read).toBeGreaterThan(0);
		} finally {
			await a.close();
		}
	});

	it("durable() and catchUp() wait for what came before the call, not for a quiet moment: both answer while other writes and callers keep coming (a join storm)", async () => {
		const c = await admin("postgres");
		await c.query("CREATE DATABASE busy");
		await c.end();
		const a = await PgStore.open(dbUrl("busy"), { queenId: "queen-a", retryMs: 1000, onFatal: (err) => expect.fail(err.message) });
		const b = await PgStore.open(dbUrl("busy"), { queenId: "queen-b", retryMs: 1000, onFatal: (err) => expect.fail(err.message) });
		let readAtB = 0;
		await b.startTail(0, async (batch) => {
			readAtB = batch.at(-1)!.id;
		});
		// A storm: queen A logs an event and queen B queues a row every turn of the loop, and B is asked to catch up every turn, for up to 15 s.
		let storming = true;
		let over = false;
		let n = 0;
		const storm = (async () => {
			const end = performance.now() + 15_000;
			while (storming && performance.now() < end) {
				const e = [{ type: "hive.stale", hiveId: `h${n}`, workerId: null, data: {} }];
				a.tx(() => (a.events as CommitNumberedEventTable).insertUnnumbered(JSON.stringify(e), 1));
				b.tx(() => b.workers.save({ ...worker(`b${n}`), hiveId: "busy", state: "running", exit: null }));
				void b.catchUp().catch(() => {});
				n++;
				await new Promise((r) => setImmediate(r));
			}
			over = true;
		})();
		try {
			await until(() => n > 200, 10_000, "the storm under way");
			// B's rows queued so far are committed while B keeps queueing more.
			const queued = n;
			await b.durable();
			expect(over).toBe(false);
			const q = await admin("busy");
			try {
				expect((await q.query("SELECT count(*)::int AS n FROM workers WHERE hive_id = 'busy'")).rows[0].n).toBeGreaterThanOrEqual(queued);
				// Every event A committed before the call is read at B, while A keeps logging and B keeps being asked.
				const committed = Number((await q.query("SELECT last_id FROM event_counter")).rows[0].last_id);
				await b.catchUp();
				expect(over).toBe(false);
				expect(readAtB).toBeGreaterThanOrEqual(committed);
			} finally {
				await q.end();
			}
		} finally {
			storming = false;
			await storm;
			await a.close();
			await b.close();
		}
	}, 60_000);
});
