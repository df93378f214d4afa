import { afterEach, expect, it } from "vitest";
import { EventLog } from "../../src/events.ts";
import { Placer } from "../../src/placement/placer.ts";
import { Registry } from "../../src/registry.ts";
import { SqliteStore as Store } from "../../src/store/sqlite.ts";
import { endedWorker as ended, gpu, helloMessage, worker } from "@apiary/test-support/fake-hive";

// The placer takes the claims lock (fleet-wide with several queens) to place
// its waiters when capacity may have come back. With nobody waiting it must
// not: each spawn and exit is such a moment, and at fleet size the empty
// passes held the lock so long that placements and claims timed out.
let placer: Placer | null = null;
afterEach(() => placer?.close());

it("events with nobody waiting take no lock; a waiter is placed when capacity comes back", async () => {
	const store = new Store(":memory:");
	const events = new EventLog(store);
	const reg = new Registry(store, events, { staleAfterMs: 3000, evictAfterMs: 90_000, busyMemoryMiB: 1024 });
	let locked = 0;
	const exclusive = reg.exclusive.bind(reg);
	reg.exclusive = <T>(fn: () => T) => {
		locked++;
		return exclusive(fn);
	};
	const spawned: string[] = [];
	placer = new Placer(reg, {
		isConnected: () => true,
		command: async (_hive, cmd) => {
			const c = cmd as { op: string; body: { id: string } };
			spawned.push(`${c.op} ${c.body.id}`);
			return { status: 201, body: { ...worker(c.body.id), gpus: ["0"] } };
		},
	});
	const hello = helloMessage("h", [gpu(0)]);
	const beat = (seq: number, workers: ReturnType<typeof worker>[]) =>
		reg.heartbeat(
			"h",
			{
				type: "heartbeat",
				seq,
				snapshot: {
					hiveId: "h",
					instanceId: "i-h",
					seq,
					takenAt: "",
					tickMs: 0,
					driver: hello.driver,
					workers,
					gpu: { state: "ok", message: null, ageMs: 0, gpus: [gpu(0)] },
				},
			},
			seq === 1,
		);
	const settle = () => new Promise((r) => setTimeout(r, 20));
	reg.hello(hello);
	// A worker holds the one GPU; spawns and exits come and go meanwhile.
	beat(1, [worker("busy", { gpus: ["0"] }), worker("a")]);
	beat(2, [worker("busy", { gpus: ["0"] }), ended("a"), worker("b")]);
	await settle();
	expect(locked).toBe(0);
	// A placement that must wait for the GPU: its own try takes the lock once …
	const placed = placer.place({ id: "p1", command: ["true"], gpus: { count: 1 }, waitMs: 5000 });
	await settle();
	const before = locked;
	expect(before).toBeGreaterThan(0);
	expect(spawned).toEqual([]);
	// … and the GPU's holder exiting is the moment it is placed.
	beat(3, [ended("busy", 60_000, ["0"]), worker("b")]);
	const answer = await placed;
	expect(answer).toMatchObject({ hiveId: "h" });
	expect(spawned).toEqual(["spawn p1"]);
	expect(locked).toBeGreaterThan(before);
});
