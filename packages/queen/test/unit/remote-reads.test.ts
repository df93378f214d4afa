import { describe, expect, it } from "vitest";
import { remoteReads } from "../../src/remote-reads.ts";

const e = (type: string, hiveId: string | null, workerId: string | null = null, origin = "other") => ({ type, hiveId, workerId, origin }) as never;

describe("what other queens' events make a queen read back", () => {
	it("worker-only events of a held hive read those workers; anything else, or a hive not held, reads the hive whole; its own events nothing", () => {
		const held = (h: string) => h !== "new";
		const r = remoteReads(
			[
				e("worker.spawned", "a", "w1"),
				e("worker.exited", "a", "w2"),
				e("worker.spawned", "a", "w1"),
				e("worker.spawned", "b", "w1"),
				// b then changes as a hive: read whole, its worker read with it.
				e("hive.cordoned", "b"),
				e("worker.exited", "b", "w9"),
				e("worker.spawned", "new", "w1"),
				e("gpu.updated", "c"),
				e("worker.evicted", "d", "w1", "me"),
				e("claim.created", null),
			],
			"me",
			held,
		);
		expect(r.whole.sort()).toEqual(["b", "c", "new"]);
		expect([...r.some].map(([h, ids]) => [h, [...ids].sort()])).toEqual([["a", ["w1", "w2"]]]);
	});
});
