import { join } from "node:path";
import type { HiveView, QueenMessage } from "@apiary/protocol";
import { FakeHive } from "@apiary/test-support/fake-hive";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Adaptive heartbeats (issue #23): past --max-heartbeats-per-second a queen
// tells its hives to send less often (welcome, then acks), judges each by the
// interval it told it, and tells them the normal interval again when the load
// falls. The hive sends at that interval and never holds back a spawn or exit.
describe("a queen past its heartbeat target slows its hives down", () => {
	const dir = tempDir("pace");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	const fakes: FakeHive[] = [];
	const welcome = (f: FakeHive) => f.messages.find((m) => m.type === "welcome") as Extract<QueenMessage, { type: "welcome" }> | undefined;
	/** The interval a hive was last told, in its welcome, an ack or a `pace` message. */
	const toldLast = (f: FakeHive) =>
		f.messages
			.filter((m) => (m.type === "welcome" || m.type === "ack" || m.type === "pace") && m.heartbeatMs !== undefined)
			.map((m) => (m as { heartbeatMs: number }).heartbeatMs)
			.at(-1);
	const heartbeats = async () => Number(/^apiary_queen_heartbeats_total (\d+)/m.exec(await (await fetch(`${queen.url}/metrics`)).text())?.[1]);
	const stateOf = async (id: string) => (await json<HiveView>(`${queen.url}/v1/hives/${id}`)).body?.state;

	beforeAll(async () => {
		// Two heartbeats a second at most; a hive silent 1 s is stale, 10 s lost, unless it was slowed down.
		queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "1s", evictAfter: "10s", extra: ["--max-heartbeats-per-second", "2"] });
	});
	afterAll(async () => {
		for (const f of fakes) f.close();
		await hive?.stop();
		await queen?.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("the third hive is told 1.5 s in its welcome, the first in its next ack, and a hive sending every 2.5 s stays ready", async () => {
		for (const id of ["f1", "f2", "f3"]) {
			const f = new FakeHive(queen.url, id);
			fakes.push(f);
			await f.opened();
			f.hello();
			await until(() => welcome(f) !== undefined, 5000, `${id} welcomed`);
		}
		expect(welcome(fakes[0]!)).toMatchObject({ heartbeatMs: 0, staleAfterMs: 1000 });
		expect(welcome(fakes[2]!)).toMatchObject({ heartbeatMs: 1500, staleAfterMs: 4500 });
		// The first is told 1.5 s in its next ack, or before it in a `pace` message (its interval went from its tick to 1.5 s).
		const seq = fakes[0]!.heartbeat([]);
		await until(() => fakes[0]!.acks.includes(seq), 5000, "ack");
		expect(toldLast(fakes[0]!)).toBe(1500);
		for (const f of fakes.slice(1)) f.heartbeat([]);
		// Every 2.5 s (under three of its 1.5-s intervals): never stale, though the queen's own stale-after is 1 s.
		for (let i = 0; i < 3; i++) {
			await sleep(2500);
			for (const f of fakes) f.heartbeat([]);
			for (const id of ["f1", "f2", "f3"]) expect(await stateOf(id)).toBe("ready");
		}
	}, 30_000);

	it("a real hive is told 2 s: it sends about every 2 s though it samples every 100 ms, and spawns and exits arrive at once", async () => {
		hive = await startHive({ queen: queen.url, name: "paced", stateDir: join(dir, "hive"), cgroupRoot: root, interval: "100ms" });
		await until(async () => (await stateOf("paced")) === "ready", 10_000, "ready");
		await until(() => /the queen set the heartbeat interval.*"heartbeatMs":2000/.test(hive.out() + hive.err()), 10_000, "told 2 s");
		// The fake hives keep quiet meanwhile: what the queen counts is the real hive's.
		const before = await heartbeats();
		const t0 = performance.now();
		const spawned = await json(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "quick", command: ["sh", "-c", "sleep 0.5"] }),
		});
		expect(spawned.status).toBe(201);
		await until(async () => (await json(`${queen.url}/v1/workers/quick`)).status === 200, 1500, "spawn at the queen within 1.5 s");
		await until(async () => (await json<{ state: string }>(`${queen.url}/v1/workers/quick`)).body.state === "exited", 2000, "exit at the queen at once");
		// Its own API samples every tick all the while.
		await json(`${hive.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ id: "steady", command: ["sleep", "30"] }),
		});
		const sampled = async () => (await json<{ stats: { sampledAt: number } | null }>(`${hive.url}/v1/workers/steady`)).body.stats?.sampledAt;
		await until(async () => (await sampled()) !== undefined, 3000, "sampled");
		const s1 = await sampled();
		await sleep(500);
		expect(await sampled()).not.toBe(s1);
		await sleep(6000 - (performance.now() - t0));
		const sent = (await heartbeats()) - before;
		// Unpaced it would send about 60 in 6 s; paced at 2 s ±20 %, at most 4 (one more at the window's edge); spawns and exits are events.
		expect(sent).toBeGreaterThanOrEqual(2);
		expect(sent).toBeLessThanOrEqual(5);
		expect(await stateOf("paced")).toBe("ready");
	}, 40_000);

	it("when the load falls the hives are told their own tick again, at once, and judged by the old interval until they next speak", async () => {
		const f1 = fakes[0]!;
		// f1 speaks (told 1.5 s: stale 4.5 s from now, not 1 s), then keeps quiet.
		const seq = f1.heartbeat([]);
		await until(() => f1.acks.includes(seq), 5000, "ack");
		const spoke = performance.now();
		expect(await stateOf("f1")).toBe("ready");
		fakes[1]!.close();
		fakes[2]!.close();
		// Told in a `pace` message within a governor period, without sending anything to earn an ack.
		await until(() => f1.messages.some((m) => m.type === "pace" && m.heartbeatMs === 0), 4000, "f1 told 0 by a pace message");
		// Past the queen's own 1-s stale-after but inside the 4.5 s it was told: still ready.
		await sleep(Math.max(0, 1600 - (performance.now() - spoke)));
		if (performance.now() - spoke < 4000) expect(await stateOf("f1")).toBe("ready");
		// Once it speaks it is judged by its own tick: silent 1 s, stale.
		const seq2 = f1.heartbeat([]);
		await until(() => f1.acks.includes(seq2), 5000, "ack");
		await until(async () => (await stateOf("f1")) === "stale", 3000, "f1 stale 1 s after it last spoke");
		await until(() => /the queen set the heartbeat interval.*"heartbeatMs":0/.test(hive.out() + hive.err()), 10_000, "told 0 again");
		const before = await heartbeats();
		await sleep(2000);
		// Back at its 100-ms tick (what a loaded CI machine allows: well over the paced one a second).
		expect((await heartbeats()) - before).toBeGreaterThan(8);
	}, 30_000);

	it("a hive told a shorter interval in a `pace` message is told the longer one again at once when the load comes back (at least double: a `pace` message too)", async () => {
		const f1 = fakes[0]!;
		const join = async (id: string) => {
			const f = new FakeHive(queen.url, id);
			fakes.push(f);
			await f.opened();
			f.hello();
			await until(() => welcome(f) !== undefined, 5000, `${id} welcomed`);
			return f;
		};
		const ackOf = async () => {
			const seq = f1.heartbeat([]);
			await until(() => f1.acks.includes(seq), 5000, "ack");
			return f1.messages.find((m) => m.type === "ack" && m.seq === seq) as Extract<QueenMessage, { type: "ack" }>;
		};
		// Four hives at two a second: f1 is told 2 s in its ack.
		const extra = [await join("f4"), await join("f5")];
		expect((await ackOf()).heartbeatMs).toBe(2000);
		// They leave: f1 is pushed its own tick again.
		const toldOwnTick = () => f1.messages.filter((m) => m.type === "pace" && m.heartbeatMs === 0).length;
		const pushes = toldOwnTick();
		for (const f of extra) f.close();
		await until(() => toldOwnTick() > pushes, 4000, "f1 pushed 0");
		// Two others come before f1 speaks: the queen is back at 2 s, which f1 was told once but no longer sends at.
		// From its tick to 2 s is at least double: it is told at once in a `pace` message, without speaking,
		// and its next ack does not tell it again.
		const toldTwo = () => f1.messages.filter((m) => m.type === "pace" && m.heartbeatMs === 2000).length;
		await join("f6");
		await join("f7");
		await until(() => toldTwo() > 0, 4000, "f1 pushed 2 s");
		expect((await ackOf()).heartbeatMs).toBeUndefined();
		expect(toldLast(f1)).toBe(2000);
	}, 30_000);
});
