import { describe, expect, it } from "vitest";
import { Intake } from "../../src/intake.ts";

/** An intake on a hand-turned clock and scheduler: each message handler advances the clock by `costMs`. */
function rig(sliceMs = 20, costMs = 1) {
	let t = 0;
	const pending: (() => void)[] = [];
	const ran: string[] = [];
	const errors: unknown[] = [];
	const intake = new Intake<string>({ sliceMs, now: () => t, schedule: (f) => pending.push(f), onError: (e) => errors.push(e) });
	const offer = (src: string, heartbeat: boolean, name: string) =>
		intake.offer(src, heartbeat, () => {
			t += costMs;
			ran.push(name);
		});
	/** Runs one scheduled slice; false when none was scheduled. */
	const slice = () => {
		const f = pending.shift();
		f?.();
		return f !== undefined;
	};
	return { intake, offer, slice, ran, errors, pending, advance: (ms: number) => (t += ms) };
}

/** An intake on a hand-turned scheduler that records its pauses and resumes; `cost` is a handler that advances the clock by 1 ms. */
function pausing(o: { sliceMs: number; maxPerSource: number; maxBytes?: number }) {
	let t = 0;
	const pending: (() => void)[] = [];
	const events: string[] = [];
	const intake = new Intake<string>({
		...o,
		now: () => t,
		schedule: (f) => pending.push(f),
		pause: (s) => events.push(`pause ${s}`),
		resume: (s) => events.push(`resume ${s}`),
	});
	return { intake, pending, events, cost: () => (t += 1) };
}

describe("the queen's intake of hive messages", () => {
	it("a lifecycle message from a hive with nothing waiting runs at once; heartbeats wait for a slice", () => {
		const r = rig();
		r.offer("a", false, "a:spawn");
		expect(r.ran).toEqual(["a:spawn"]);
		expect(r.pending).toHaveLength(0);
		r.offer("a", true, "a:hb");
		expect(r.ran).toEqual(["a:spawn"]);
		expect(r.intake.waiting).toBe(1);
		expect(r.slice()).toBe(true);
		expect(r.ran).toEqual(["a:spawn", "a:hb"]);
		expect(r.intake.waiting).toBe(0);
		// Nothing left: no slice is scheduled.
		expect(r.pending).toHaveLength(0);
	});

	it("a slice stops at its length and the next is scheduled; hives take turns one heartbeat each", () => {
		const r = rig(3, 1);
		for (const h of ["a", "b", "c"]) for (let i = 1; i <= 3; i++) r.offer(h, true, `${h}${i}`);
		expect(r.intake.waiting).toBe(9);
		r.slice();
		expect(r.ran).toEqual(["a1", "b1", "c1"]);
		expect(r.pending).toHaveLength(1);
		r.slice();
		r.slice();
		expect(r.ran).toEqual(["a1", "b1", "c1", "a2", "b2", "c2", "a3", "b3", "c3"]);
		expect(r.pending).toHaveLength(0);
	});

	it("a hive's exit goes before other hives' heartbeats, after its own (its order is kept)", () => {
		const r = rig(2, 1);
		for (const h of ["a", "b", "c", "d"]) r.offer(h, true, `${h}:hb`);
		// d's exit waits behind d's own heartbeat, not behind a, b and c.
		r.offer("d", false, "d:exit");
		r.offer("d", true, "d:hb2");
		r.slice();
		expect(r.ran).toEqual(["d:hb", "d:exit"]);
		r.slice();
		r.slice();
		expect(r.ran).toEqual(["d:hb", "d:exit", "a:hb", "b:hb", "c:hb", "d:hb2"]);
	});

	it("measures what waits and for how long; a closed hive's kept messages (exit, bye) still run in their turn, its heartbeats are dropped", () => {
		const r = rig();
		expect(r.intake.oldestWaitMs()).toBe(0);
		r.offer("a", true, "a1");
		r.advance(300);
		r.offer("b", true, "b1");
		r.offer("b", false, "b:exit");
		r.intake.offer("b", true, () => r.ran.push("b:bye"), { kept: true });
		r.advance(200);
		expect(r.intake.waiting).toBe(4);
		expect(r.intake.oldestWaitMs()).toBe(500);
		r.intake.close("b");
		expect(r.ran).toEqual([]);
		expect(r.intake.waiting).toBe(3);
		r.intake.close("a");
		expect(r.intake.waiting).toBe(2);
		r.slice();
		expect(r.ran).toEqual(["b:exit", "b:bye"]);
		expect(r.intake.oldestWaitMs()).toBe(0);
	});

	it("counts the waiting messages its caller marked: down as they run, are dropped on close, or the source is forgotten", () => {
		const r = rig(2, 1);
		const run = (name: string) => () => {
			r.advance(1);
			r.ran.push(name);
		};
		const mark = (src: string, name: string) => r.intake.offer(src, true, run(name), { kept: false, marked: true });
		r.offer("a", true, "a:first"); // a connection's first heartbeat: not marked
		mark("a", "a:hb2");
		mark("a", "a:hb3");
		mark("b", "b:hb2");
		r.intake.offer("b", true, run("b:bye"), { kept: true }); // a bye: kept, not marked
		expect([r.intake.waiting, r.intake.marked]).toEqual([5, 3]);
		r.slice(); // a:first, b:hb2
		expect([r.intake.waiting, r.intake.marked]).toEqual([3, 2]);
		r.intake.close("a"); // its two marked heartbeats dropped
		expect([r.intake.waiting, r.intake.marked]).toEqual([1, 0]);
		mark("c", "c:hb2");
		r.slice();
		r.slice();
		expect([r.intake.waiting, r.intake.marked]).toEqual([0, 0]);
		expect(r.ran).toEqual(["a:first", "b:hb2", "b:bye", "c:hb2"]);
	});

	it("a hive with too many messages waiting is paused until half are applied", () => {
		const { intake, pending, events, cost } = pausing({ sliceMs: 2, maxPerSource: 4 });
		for (let i = 0; i < 4; i++) intake.offer("a", true, cost);
		expect(events).toEqual(["pause a"]);
		// A second pause is not asked for while paused.
		intake.offer("a", true, cost);
		expect(events).toEqual(["pause a"]);
		pending.shift()!(); // 2 of 5 applied: 3 left, still past half
		expect(events).toEqual(["pause a"]);
		pending.shift()!(); // 4 applied: 1 left
		expect(events).toEqual(["pause a", "resume a"]);
	});

	it("past its byte budget a source with two messages waiting is paused until its queue is applied, however short its queue", () => {
		const { intake, pending, events, cost } = pausing({ sliceMs: 1, maxPerSource: 16, maxBytes: 1000 });
		const hb = (src: string) => intake.offer(src, true, cost, { bytes: 300 });
		for (let i = 0; i < 3; i++) hb("a"); // 900 bytes: within the budget, three waiting is fine
		expect(events).toEqual([]);
		hb("a"); // 1,200: over, with four waiting: paused
		hb("b"); // 1,500: over, but b has one waiting
		expect(events).toEqual(["pause a"]);
		hb("b"); // b's second, over: paused
		expect(events).toEqual(["pause a", "pause b"]);
		expect(intake.bytes).toBe(1800);
		pending.shift()!(); // a's first: 1,500
		pending.shift()!(); // b's first: 1,200, still over, so b (one left) stays paused
		expect(events).toEqual(["pause a", "pause b"]);
		pending.shift()!(); // a's second: 900, within: a (two left, under half its 16) resumed
		expect(events).toEqual(["pause a", "pause b", "resume a"]);
		pending.shift()!(); // b's last: resumed
		expect(events).toEqual(["pause a", "pause b", "resume a", "resume b"]);
		pending.shift()!();
		pending.shift()!();
		expect(intake.bytes).toBe(0);
	});

	it("a handler that throws is reported and the others still run", () => {
		const r = rig();
		r.intake.offer("a", true, () => {
			throw new Error("boom");
		});
		r.offer("b", true, "b1");
		r.slice();
		expect(r.ran).toEqual(["b1"]);
		expect(r.errors.map(String)).toEqual(["Error: boom"]);
	});
});
