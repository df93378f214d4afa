import { describe, expect, it } from "vitest";
import { type History, violations } from "../../src/invariants.ts";

// The soak's judge on plain histories: each rule holds on a clean one and fails, naming what broke, on a bad one.
const clean = (): History => ({
	holds: [
		{ holder: "w1", gpu: "h/g0", from: 0, to: 10 },
		{ holder: "c1", gpu: "h/g0", from: 10, to: 20 },
		{ holder: "w2", gpu: "h/g1", from: 5, to: null },
	],
	placements: [
		{
			key: "k1",
			answers: [
				{ status: 201, workerId: "w1", hiveId: "h" },
				{ status: 200, workerId: "w1", hiveId: "h" },
			],
		},
		{ key: "k2", answers: [{ status: 409, workerId: null, hiveId: null }] },
	],
	workers: [
		{ hiveId: "h", id: "w1", state: "exited", pid: 10, exitEvents: 1, exited: true },
		{ hiveId: "h", id: "w2", state: "running", pid: 11, exitEvents: 0, exited: false },
	],
	streams: [
		{ subscriber: "s", ids: [1, 2, 5, null, 3, 4] },
		{ subscriber: "all", ids: [null, 7, 8, 9, null, 12, 13], gapless: true },
	],
	alive: (pid) => pid === 11,
});

describe("the fleet's invariants", () => {
	it("a clean history breaks none", () => {
		expect(violations(clean())).toEqual([]);
	});
	it("names each broken one", () => {
		const h = clean();
		h.holds.push({ holder: "c9", gpu: "h/g1", from: 30, to: 40 }); // w2 still holds g1
		h.placements[0]!.answers.push({ status: 200, workerId: "w9", hiveId: "h" });
		h.placements.push({ key: "k3", answers: [{ status: 201, workerId: "ghost", hiveId: "h" }] });
		h.workers[0]!.exitEvents = 2;
		h.workers[1]!.pid = 99;
		h.streams[0]!.ids.push(4);
		h.streams[1]!.ids.push(15);
		expect(violations(h)).toEqual([
			"GPU h/g1 held by w2 (00:00:00.005–still) and c9 (00:00:00.030–00:00:00.040) at once",
			"placement k1 answered with different workers: h/w1, h/w9",
			"placement k1 answered 200 for h/w9, which the fleet knows 0 times",
			"placement k3 answered 201 for h/ghost, which the fleet knows 0 times",
			"worker h/w1: 2 worker.exited events for one exit record",
			"worker h/w2 shown running, its process 99 gone",
			"subscriber s: event 4 after 4",
			"subscriber all: event 15 after 13, 1 missing",
		]);
	});
});
