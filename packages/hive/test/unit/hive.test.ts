import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ManualClock } from "@apiary/kit/clock";
import { FakeDriver, rawSample } from "@apiary/test-support/fake-driver";
import { until } from "@apiary/test-support/util";
import { afterEach, describe, expect, it } from "vitest";
import { Hive } from "../../src/hive.ts";
import { helperPids } from "../helper-pids.ts";

// The supervisor with a fake cgroup driver and a hand-driven clock: no root,
// no kernel cgroups; the workers are real (tiny) processes.
const dirs: string[] = [];
const hives: Hive[] = [];
afterEach(async () => {
	for (const h of hives.splice(0)) {
		for (const w of h.list()) if (w.state === "running") await h.kill(w.id);
		await h.stop();
	}
	for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(extra: Partial<ConstructorParameters<typeof Hive>[0]> = {}) {
	const driver = new FakeDriver();
	const clock = new ManualClock(Date.parse("2026-11-22T10:00:00Z"));
	const stateDir = mkdtempSync(join(tmpdir(), "apiary-unit-"));
	dirs.push(stateDir);
	const hive = new Hive({ driver, stateDir, hiveId: "unit", clock, ...extra });
	hives.push(hive);
	return { driver, clock, hive, stateDir };
}

const exited = (hive: Hive, id: string) => new Promise<void>((resolve) => hive.on("exited", (w) => w.id === id && resolve()));

describe("the supervisor (fake driver, hand-driven clock)", () => {
	it("rates come from two ticks on the monotonic clock: CPU percent and IO rates exact, the first tick null", async () => {
		const { driver, clock, hive } = setup();
		await hive.start();
		await hive.spawn({ id: "w1", command: ["sleep", "30"], cpu: 0.5 });
		expect(driver.created.get("w1")).toEqual({ cpu: 0.5, memoryBytes: null, pids: null, timeoutMs: null });
		driver.samples.set("w1", rawSample({ cpuUsageNs: 1e9, readBytes: 0, memoryCurrent: 100, inactiveFileBytes: 40 }));
		let snap = await hive.tick();
		expect(snap.workers[0]!.stats!.cpu.percent).toBeNull();
		expect(snap.workers[0]!.stats!.io.readBytesPerSec).toBeNull();
		expect(snap.workers[0]!.stats!.memory.workingSetBytes).toBe(60);
		clock.advance(2000);
		driver.samples.set("w1", rawSample({ cpuUsageNs: 1.5e9, readBytes: 4096 }));
		snap = await hive.tick();
		expect(snap.workers[0]!.stats!.cpu.percent).toBe(25); // 0.5 s of CPU over 2 s
		expect(snap.workers[0]!.stats!.io.readBytesPerSec).toBe(2048);
		expect(snap.workers[0]!.stats!.uptimeMs).toBe(2000);
	});

	it("an exit record's times come from the clock: started and ended where the clock said", async () => {
		const { driver, clock, hive } = setup();
		await hive.start();
		const done = exited(hive, "w2");
		await hive.spawn({ id: "w2", command: ["sh", "-c", "sleep 0.2; exit 3"] });
		clock.advance(1500);
		await done;
		const w = hive.get("w2")!;
		expect(w.exit).toMatchObject({
			exitCode: 3,
			reason: "exited",
			startedAt: "2026-11-22T10:00:00.000Z",
			endedAt: "2026-11-22T10:00:01.500Z",
			durationMs: 1500,
		});
		// The kernel gave no OOM count: null, not false.
		expect(w.exit!.oomKilled).toBeNull();
		expect(driver.removed).toContain("w2");
	});

	it("an OOM kill the cgroup counted makes the reason oom; peak memory comes from the last reading", async () => {
		const { driver, hive } = setup();
		await hive.start();
		const done = exited(hive, "w3");
		await hive.spawn({ id: "w3", command: ["sh", "-c", "sleep 0.2; kill -9 $$"] });
		driver.samples.set("w3", rawSample({ oomKills: 1, memoryPeak: 64 << 20 }));
		await done;
		expect(hive.get("w3")!.exit).toMatchObject({ reason: "oom", signal: "SIGKILL", oomKilled: true, peakMemoryBytes: 64 << 20 });
	});

	it("the exit record keeps the highest working set the ticks saw, beside the kernel's peak", async () => {
		const { driver, clock, hive } = setup();
		await hive.start();
		await hive.spawn({ id: "ws", command: ["sleep", "30"] });
		driver.samples.set("ws", rawSample({ memoryCurrent: 100, inactiveFileBytes: 40, memoryPeak: 500 }));
		await hive.tick();
		clock.advance(1000);
		driver.samples.set("ws", rawSample({ memoryCurrent: 400, inactiveFileBytes: 380, memoryPeak: 500 }));
		await hive.tick();
		const w = await hive.kill("ws");
		expect(w.exit).toMatchObject({ peakWorkingSetBytes: 60, peakMemoryBytes: 500 });
	});

	it("a log past half its cap is cut while its worker is frozen, and thawed after; a log under half is not frozen", async () => {
		const { driver, hive } = setup({ logMaxBytes: 4096 });
		await hive.spawn({ id: "chatty", command: ["sh", "-c", "head -c 3000 /dev/zero | tr '\\0' x; echo; exec sleep 30"] });
		const log = hive.logPath("chatty");
		await until(() => existsSync(log) && statSync(log).size > 3000, 10_000, "the worker's output");
		let cutWhileFrozen: boolean | null = null;
		driver.onThaw = () => {
			cutWhileFrozen = statSync(`${log}.1`).size > 2000 && statSync(log).size === 0;
		};
		await hive.capLogs();
		expect(driver.freezes).toEqual(["freeze chatty", "thaw chatty"]);
		expect(cutWhileFrozen).toBe(true);
		expect(hive.get("chatty")!.logDroppedBytes).toBeGreaterThan(900);
		await hive.capLogs();
		expect(driver.freezes).toHaveLength(2);
	});

	it("one worker whose reader throws does not drop the others' samples", async () => {
		const { driver, hive } = setup();
		await hive.start();
		await hive.spawn({ id: "ok", command: ["sleep", "30"] });
		await hive.spawn({ id: "bad", command: ["sleep", "30"] });
		driver.samples.set("ok", rawSample({ memoryCurrent: 7 }));
		driver.failing.add("bad");
		const snap = await hive.tick();
		expect(snap.workers.find((w) => w.id === "ok")!.stats!.memory.currentBytes).toBe(7);
		expect(snap.workers.find((w) => w.id === "bad")!.stats).toBeNull();
	});

	it("a worker whose spawn helper died is watched through /proc: its end is recorded with an unknown status saying why, and spawns go on", async () => {
		const { hive } = setup();
		const before = new Set(helperPids());
		await hive.start();
		const w = await hive.spawn({ id: "orphan", command: ["sleep", "30"] });
		const helper = helperPids().filter((p) => !before.has(p));
		expect(helper).toHaveLength(1);
		process.kill(helper[0]!, "SIGKILL");
		for (let i = 0; i < 100 && !hive.get("orphan")!.adopted; i++) await new Promise((r) => setTimeout(r, 20));
		expect(hive.get("orphan")).toMatchObject({ state: "running", adopted: true });
		const done = exited(hive, "orphan");
		process.kill(w.pid!, "SIGKILL");
		for (let i = 0; i < 100 && hive.get("orphan")!.state === "running"; i++) {
			await new Promise((r) => setTimeout(r, 20));
			await hive.tick();
		}
		await done;
		expect(hive.get("orphan")!.exit).toMatchObject({
			exitCode: null,
			message: "exit status unknown: the hive's spawn helper ended (SIGKILL) while the worker ran, so nothing saw it end",
		});
		await hive.spawn({ id: "after", command: ["sh", "-c", "exit 4"] });
		await exited(hive, "after");
		expect(hive.get("after")!.exit).toMatchObject({ exitCode: 4 });
	});

	it("kill records killed, removes the cgroup and keeps the record across a new supervisor on the same state", async () => {
		const { driver, hive, stateDir } = setup();
		await hive.start();
		await hive.spawn({ id: "w4", command: ["sleep", "30"] });
		const w = await hive.kill("w4");
		expect(w.exit!.reason).toBe("killed");
		expect(driver.killed).toContain("w4");
		const again = new Hive({ driver, stateDir, hiveId: "unit", clock: new ManualClock() });
		hives.push(again);
		await again.start();
		expect(again.get("w4")!.exit!.reason).toBe("killed");
	});
});
