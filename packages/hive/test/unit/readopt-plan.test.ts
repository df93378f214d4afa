import type { WorkerInfo } from "@apiary/protocol";
import { worker } from "@apiary/test-support/fake-hive";
import { describe, expect, it } from "vitest";
import { buildExitRecord } from "../../src/exit-record.ts";
import { planReadoption } from "../../src/readopt-plan.ts";
import type { SavedWorker } from "../../src/worker-records.ts";

const saved = (w: WorkerInfo, startTicks: number | null): SavedWorker => {
	const { stats: _s, ...rest } = w;
	return { ...rest, startTicks };
};

describe("re-adoption plan (pure)", () => {
	const base = { driver: "v1" as const, cgroups: [] as string[], pidsOf: (_: string) => [] as number[], startTicksOf: (_: number) => null as number | null };
	it("adopts a recorded worker whose pid is alive with the same start time and still in its cgroup", () => {
		const plan = planReadoption({
			...base,
			saved: new Map([["a", saved(worker("a", { pid: 10 }), 555)]]),
			cgroups: ["a"],
			pidsOf: () => [10, 11],
			startTicksOf: () => 555,
		});
		expect(plan).toEqual([expect.objectContaining({ kind: "adopt", id: "a", pid: 10 })]);
	});
	it("a reused pid (other start time) or a pid outside the cgroup is lost, and leftovers in the cgroup are flagged", () => {
		const reused = planReadoption({
			...base,
			saved: new Map([["a", saved(worker("a", { pid: 10 }), 555)]]),
			cgroups: ["a"],
			pidsOf: () => [10],
			startTicksOf: () => 999,
		});
		expect(reused[0]).toMatchObject({ kind: "lost", id: "a", leftovers: true });
		const moved = planReadoption({
			...base,
			saved: new Map([["a", saved(worker("a", { pid: 10 }), 555)]]),
			cgroups: ["a"],
			pidsOf: () => [12],
			startTicksOf: () => 555,
		});
		expect(moved[0]).toMatchObject({ kind: "lost", leftovers: true });
	});
	it("a cgroup without a record is not this hive's: reported as foreign, never adopted; a record without cgroup or process is lost", () => {
		const plan = planReadoption({
			...base,
			saved: new Map([["gone", saved(worker("gone", { pid: 20 }), 1)]]),
			cgroups: ["orphan"],
			pidsOf: (id) => (id === "orphan" ? [30, 31] : []),
		});
		expect(plan).toEqual(expect.arrayContaining([{ kind: "foreign", id: "orphan" }, expect.objectContaining({ kind: "lost", id: "gone", leftovers: false })]));
		expect(plan).toHaveLength(2);
	});
	it("a record written before its process started (no pid) is adopted by its cgroup's first process; without one it is lost", () => {
		const rec = saved(worker("early", { pid: null }), null);
		const plan = planReadoption({ ...base, saved: new Map([["early", rec]]), cgroups: ["early"], pidsOf: () => [40] });
		expect(plan).toEqual([expect.objectContaining({ kind: "adopt", id: "early", rec, pid: 40 })]);
		const none = planReadoption({ ...base, saved: new Map([["early", rec]]), cgroups: ["early"], pidsOf: () => [] });
		expect(none).toEqual([expect.objectContaining({ kind: "lost", id: "early", pid: null, leftovers: false })]);
	});
	it("exited records are kept as they are; the none driver trusts the pid and its start time alone", () => {
		const plan = planReadoption({
			...base,
			driver: "none",
			saved: new Map([
				["done", saved(worker("done", { state: "exited" }), null)],
				["n", saved(worker("n", { pid: 40 }), 7)],
			]),
			startTicksOf: (pid) => (pid === 40 ? 7 : null),
		});
		expect(plan.map((a) => `${a.id}:${a.kind}`).sort()).toEqual(["done:exited", "n:adopt"]);
	});
});

describe("exit records (pure)", () => {
	const facts = {
		graceful: null,
		code: null,
		signal: null,
		killReason: null,
		final: null,
		message: null,
		startedAt: "2026-11-22T10:00:00.000Z",
		endedWall: Date.parse("2026-11-22T10:00:02.000Z"),
	};
	it("the hive's own reason wins, then an OOM the kernel counted, then a signal, else exited", () => {
		expect(buildExitRecord({ ...facts, killReason: "timeout", signal: "SIGKILL" }).reason).toBe("timeout");
		expect(buildExitRecord({ ...facts, signal: "SIGKILL", final: { oomKills: 2, memoryPeak: 5 } as never })).toMatchObject({
			reason: "oom",
			oomKilled: true,
			peakMemoryBytes: 5,
		});
		expect(buildExitRecord({ ...facts, signal: "SIGTERM" }).reason).toBe("signaled");
		expect(buildExitRecord({ ...facts, code: 0 })).toMatchObject({ reason: "exited", exitCode: 0, durationMs: 2000, endedAt: "2026-11-22T10:00:02.000Z" });
	});
	it("an end that was not observed has null times and the bounds that are known", () => {
		const lastAlive = Date.parse("2026-11-22T10:00:01.000Z");
		expect(buildExitRecord({ ...facts, killReason: "lost", unobserved: { lastAliveWall: lastAlive } })).toMatchObject({
			reason: "lost",
			endedAt: null,
			durationMs: null,
			endedAfter: "2026-11-22T10:00:01.000Z",
			endedBefore: "2026-11-22T10:00:02.000Z",
		});
		// Never marked alive since its start: the start itself is the bound.
		expect(buildExitRecord({ ...facts, killReason: "lost", unobserved: { lastAliveWall: null } }).endedAfter).toBe("2026-11-22T10:00:00.000Z");
	});
	it("no reading means OOM and peak are unknown (null), never false or 0", () => {
		expect(buildExitRecord(facts)).toMatchObject({ oomKilled: null, peakMemoryBytes: null });
	});
});
