import type { Drain } from "@apiary/protocol";
import { describe, expect, it } from "vitest";
import { isAuto, nextDrain } from "../../src/drain.ts";

const T = Date.parse("2026-12-03T10:00:00.000Z");
const person = (state: Drain["state"], reason = "maintenance"): Drain => ({ state, reason, by: "ops", at: "2026-12-03T09:00:00.000Z", deadline: null });
const auto: Drain = { state: "cordoned", reason: "auto: GPU-1 unhealthy (xid 79)", by: "hive h", at: "2026-12-03T09:00:00.000Z", deadline: null };

describe("cordon and drain transitions", () => {
	it("cordon, drain (with its deadline), drained, uncordon", () => {
		const c = nextDrain(null, { op: "cordon", reason: "kernel", by: "ops" }, T);
		expect(c).toEqual({ drain: { state: "cordoned", reason: "kernel", by: "ops", at: "2026-12-03T10:00:00.000Z", deadline: null }, event: "hive.cordoned" });
		const d = nextDrain(c.drain, { op: "drain", reason: "rack", by: "ops", deadlineMs: 3_600_000 }, T + 1000);
		expect(d.event).toBe("hive.draining");
		expect(d.drain).toMatchObject({ state: "draining", reason: "rack", at: "2026-12-03T10:00:01.000Z", deadline: "2026-12-03T11:00:01.000Z" });
		// A second drain moves the deadline, keeping when the drain began.
		const d2 = nextDrain(d.drain, { op: "drain", reason: "rack", by: "ops", deadlineMs: 0 }, T + 5000);
		expect(d2.drain).toMatchObject({ at: "2026-12-03T10:00:01.000Z", deadline: "2026-12-03T10:00:05.000Z" });
		const done = nextDrain(d2.drain, { op: "drained" }, T + 6000);
		expect(done).toEqual({ drain: { ...d2.drain!, state: "drained" }, event: "hive.drained" });
		// Drained stays drained until lifted; cordoning or draining it again changes nothing.
		expect(nextDrain(done.drain, { op: "drain", reason: "x", by: "ops", deadlineMs: 1 }, T).event).toBeNull();
		expect(nextDrain(done.drain, { op: "cordon", reason: "x", by: "ops" }, T).event).toBeNull();
		expect(nextDrain(done.drain, { op: "uncordon", by: "ops" }, T)).toEqual({ drain: null, event: "hive.uncordoned" });
	});

	it("idempotent: the same cordon twice, uncordon of a schedulable hive, drained of a hive not draining are no change and no event", () => {
		const c = person("cordoned");
		expect(nextDrain(c, { op: "cordon", reason: "maintenance", by: "ops" }, T)).toEqual({ drain: c, event: null });
		expect(nextDrain(null, { op: "uncordon", by: "ops" }, T)).toEqual({ drain: null, event: null });
		expect(nextDrain(c, { op: "drained" }, T).event).toBeNull();
		expect(nextDrain(null, { op: "drained" }, T).event).toBeNull();
		// A new reason is a change (when the cordon began is kept).
		expect(nextDrain(c, { op: "cordon", reason: "other", by: "ops" }, T)).toEqual({ drain: { ...c, reason: "other" }, event: "hive.cordoned" });
	});

	it("Slurm NHC's rule: an automatic cordon never replaces a person's, and its lifting lifts only its own", () => {
		expect(isAuto(auto)).toBe(true);
		expect(isAuto(person("cordoned"))).toBe(false);
		expect(isAuto(null)).toBe(false);
		// Automatic cordon: only of a schedulable hive.
		for (const s of ["cordoned", "draining", "drained"] as const)
			expect(nextDrain(person(s), { op: "cordon", reason: auto.reason, by: "hive h", auto: true }, T).event).toBeNull();
		expect(nextDrain(null, { op: "cordon", reason: auto.reason, by: "hive h", auto: true }, T).drain).toMatchObject({ state: "cordoned", reason: auto.reason });
		// Automatic uncordon: only an automatic cordon.
		for (const s of ["cordoned", "draining", "drained"] as const)
			expect(nextDrain(person(s), { op: "uncordon", by: "hive h", auto: true }, T).event).toBeNull();
		expect(nextDrain(auto, { op: "uncordon", by: "hive h", auto: true }, T)).toEqual({ drain: null, event: "hive.uncordoned" });
		// A person's cordon over an automatic one takes it over (and then only a person lifts it); a person's drain too.
		const took = nextDrain(auto, { op: "cordon", reason: "looking into it", by: "ops" }, T);
		expect(took.drain).toMatchObject({ reason: "looking into it", by: "ops", at: "2026-12-03T10:00:00.000Z" });
		expect(isAuto(took.drain)).toBe(false);
		expect(nextDrain(auto, { op: "drain", reason: null, by: "ops", deadlineMs: 0 }, T).drain?.state).toBe("draining");
		// A person may lift an automatic cordon.
		expect(nextDrain(auto, { op: "uncordon", by: "ops" }, T).drain).toBeNull();
	});
});
