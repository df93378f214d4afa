import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { CgroupDriverName } from "@apiary/protocol";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Hive } from "../src/hive.ts";
import { overHalf, rotateIfOver } from "../src/log-cap.ts";
import { cleanup, newHive, procCpuSeconds, sleep, until, waitExit } from "./helpers.ts";

const MiB = 1024 * 1024;

/**
 * The limits and sampling acceptance, written once and run against the v1
 * driver on the host (integration tier) and the v2 driver in a VM (vm tier).
 * `ioTarget` is where the IO test writes 20 MiB with O_DIRECT.
 */
export function limitsAcceptance(kind: CgroupDriverName, ioTarget: () => string) {
	describe(`cgroup ${kind}: limits are enforced and sampling is truthful`, () => {
		let hive: Hive;
		let stateDir: string;
		beforeEach(async () => {
			({ hive, stateDir } = await newHive(kind));
		});
		afterEach(async () => {
			await cleanup(hive, stateDir);
		});

		it("holds a busy loop with --cpu 0.5 to ≤ 55 %, reports throttling, and its CPU% agrees with /proc/<pid>/stat", async () => {
			const w = await hive.spawn({ command: ["sh", "-c", "while :; do :; done"], cpu: 0.5 });
			await sleep(500); // let the quota settle in
			const t0 = performance.now();
			const c0 = procCpuSeconds(w.pid!);
			await hive.tick();
			await sleep(3000);
			const c1 = procCpuSeconds(w.pid!);
			const t1 = performance.now();
			const snap = await hive.tick();
			const stats = snap.workers.find((x) => x.id === w.id)!.stats!;
			const procPercent = ((c1 - c0) / ((t1 - t0) / 1000)) * 100;
			expect(stats.cpu.percent).not.toBeNull();
			expect(stats.cpu.percent!).toBeLessThanOrEqual(55);
			expect(stats.cpu.percent!).toBeGreaterThan(30);
			expect(Math.abs(stats.cpu.percent! - procPercent)).toBeLessThanOrEqual(5);
			expect(stats.cpu.throttledPeriods!).toBeGreaterThan(0);
			expect(stats.cpu.throttledNs!).toBeGreaterThan(0);
		});

		it("the exit record says what the run used: CPU seconds, average and p95 cores, throttling, seff's efficiencies and the peak working set", async () => {
			// 48 MiB of anon memory held while spinning ~2.5 s under half a core, then exit.
			const script = "const a = Buffer.alloc(48 << 20, 1); const end = Date.now() + 2500; while (Date.now() < end) a[0]++; process.exit(0)";
			const w = await hive.spawn({ command: ["node", "-e", script], cpu: 0.5, memoryBytes: 256 * MiB });
			while (hive.get(w.id)!.state === "running") {
				await hive.tick();
				await sleep(250);
			}
			const done = await waitExit(hive, w.id);
			const u = done.exit!.usage!;
			expect(u.ticks).toBeGreaterThan(5);
			expect(u.cpu.seconds!).toBeGreaterThan(0.8);
			expect(u.cpu.avgCores!).toBeGreaterThan(0.3);
			expect(u.cpu.avgCores!).toBeLessThanOrEqual(0.55);
			expect(u.cpu.limitCores).toBe(0.5);
			expect(u.cpu.efficiency).toBeCloseTo(u.cpu.avgCores! / 0.5, 6);
			// A tick's window can be shorter than one CFS period, where the quota allows a whole
			// core (seen under emulation in the VM): bounded by one core (one thread), not 0.5.
			expect(u.cpu.p95Cores!).toBeGreaterThanOrEqual(u.cpu.avgCores! * 0.8);
			expect(u.cpu.p95Cores!).toBeLessThanOrEqual(1.1);
			expect(u.cpu.throttledFraction!).toBeGreaterThan(0.3);
			expect(u.memory.peakWorkingSetBytes!).toBeGreaterThanOrEqual(48 * MiB);
			expect(u.memory.peakWorkingSetBytes!).toBeLessThan(256 * MiB);
			expect(u.memory.kernelPeakBytes!).toBeGreaterThanOrEqual(u.memory.peakWorkingSetBytes!);
			expect(u.memory.efficiency).toBeCloseTo(u.memory.peakWorkingSetBytes! / (256 * MiB), 6);
			expect(u.gpus).toEqual([]);
		});

		it("OOM-kills a 200 MiB allocation under --memory 64M and the exit record says oomKilled", async () => {
			const w = await hive.spawn({
				command: ["node", "-e", "const a = []; for (let i = 0; i < 200; i++) a.push(Buffer.alloc(1 << 20, 1)); setTimeout(() => {}, 5000)"],
				memoryBytes: 64 * MiB,
			});
			const done = await waitExit(hive, w.id);
			expect(done.exit!.oomKilled).toBe(true);
			expect(done.exit!.reason).toBe("oom");
			expect(done.exit!.signal).toBe("SIGKILL");
			expect(done.exit!.peakMemoryBytes!).toBeGreaterThan(32 * MiB);
			expect(done.exit!.peakMemoryBytes!).toBeLessThanOrEqual(64 * MiB);
			expect(hive.driver.list()).not.toContain(w.id); // cgroup removed
		});

		it("stops a fork loop at --pids 20", async () => {
			// A shell exits on its first failed fork, so the loop is in node, which keeps going.
			const forkLoop = `const { spawn } = require("node:child_process"); let failed = 0;
				for (let i = 0; i < 100; i++) spawn("sleep", ["30"], { stdio: "ignore" }).on("error", (e) => { if (failed++ === 0) console.log("fork failed:", e.code); });
				setTimeout(() => {}, 30000);`;
			const w = await hive.spawn({ command: ["node", "-e", forkLoop], pids: 20 });
			await until(() => readFileSync(hive.logPath(w.id), "utf8").includes("fork failed"), 10_000, "a failed fork");
			const snap = await hive.tick();
			const stats = snap.workers.find((x) => x.id === w.id)!.stats!;
			expect(stats.pids.limit).toBe(20);
			expect(stats.pids.current!).toBeLessThanOrEqual(20);
			expect(stats.pids.current!).toBeGreaterThanOrEqual(10);
			expect(readFileSync(hive.logPath(w.id), "utf8")).toMatch(/fork failed: EAGAIN/);
			const killed = await hive.kill(w.id);
			expect(killed.exit!.reason).toBe("killed");
			expect(hive.driver.pids(w.id)).toEqual([]);
		});

		it("shows a non-null write rate for a worker writing 20 MiB with O_DIRECT", async () => {
			const target = ioTarget();
			const w = await hive.spawn({ command: ["sh", "-c", `sleep 0.5; dd if=/dev/zero of=${target} bs=1M count=20 oflag=direct conv=fsync 2>&1; sleep 30`] });
			const first = await hive.tick();
			const s0 = first.workers.find((x) => x.id === w.id)!.stats!;
			expect(s0.io.writeBytesPerSec).toBeNull(); // a rate needs two samples
			await until(() => readFileSync(hive.logPath(w.id), "utf8").includes("copied"), 30_000, "dd to finish");
			const snap = await hive.tick();
			const s = snap.workers.find((x) => x.id === w.id)!.stats!;
			expect(s.io.writeBytes!).toBeGreaterThanOrEqual(20 * MiB);
			expect(s.io.writeBytesPerSec).not.toBeNull();
			expect(s.io.writeBytesPerSec!).toBeGreaterThan(0);
			expect(s.io.writeOps!).toBeGreaterThan(0);
		});

		it("a frozen worker writes nothing, so a log cut while it is frozen loses no line however long the cut stalls", async () => {
			const w = await hive.spawn({ command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; done"] });
			const log = hive.logPath(w.id);
			await until(() => overHalf(log, 64 * 1024), 10_000, "64 KiB of output");
			const thaw = await hive.driver.freeze!(w.id, 2000);
			expect(thaw).not.toBeNull();
			const size = statSync(log).size;
			// Stalled 0.3 s between the copy and the truncate: the loop, if it ran,
			// would write thousands of lines there, and they would be lost.
			const r = rotateIfOver(log, 64 * 1024, () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300));
			expect(r).not.toBeNull();
			expect(statSync(log).size).toBe(0);
			thaw!();
			await until(() => statSync(log).size > 1000, 10_000, "output after the thaw");
			await hive.kill(w.id);
			const kept = readFileSync(`${log}.1`, "latin1").trimEnd().split("\n");
			expect(Number(kept.at(-1))).toBeGreaterThan(1000);
			// .1 ends where the log was frozen, and the log goes on from the next line.
			expect(statSync(`${log}.1`).size).toBeLessThanOrEqual(size);
			expect(Number(readFileSync(log, "latin1").split("\n")[0])).toBe(Number(kept.at(-1)) + 1);
		});

		it("a kill right after spawn ends the worker at once, even before it has entered its cgroup", async () => {
			const t0 = Date.now();
			const w = await hive.spawn({ command: ["sleep", "30"] });
			const done = await hive.kill(w.id);
			expect(done.exit!.reason).toBe("killed");
			expect(Date.now() - t0).toBeLessThan(10_000);
			expect(hive.driver.list()).not.toContain(w.id);
		});

		it("a timeout kills the whole tree, the record says timeout, and no zombie is left", async () => {
			const w = await hive.spawn({ command: ["sh", "-c", "sleep 60 & sleep 60 & wait"], timeoutMs: 700 });
			await sleep(300);
			const tree = hive.driver.pids(w.id);
			expect(tree.length).toBe(3);
			const done = await waitExit(hive, w.id, 10_000);
			// A timeout stops the tree as a kill does: SIGTERM, which sh and both sleeps obey within the grace period.
			expect(done.exit).toMatchObject({ reason: "timeout", signal: "SIGTERM", graceful: true });
			expect(done.exit!.durationMs).toBeGreaterThanOrEqual(700);
			expect(existsSync(`/proc/${w.pid}`)).toBe(false); // the hive reaped its own child at once
			// Orphaned grandchildren are reaped by init (lazily, under this sandbox's init).
			await until(() => tree.every((pid) => !existsSync(`/proc/${pid}`)), 10_000, "the tree to be reaped");
			expect(hive.driver.list()).not.toContain(w.id);
		});

		it("samples memory truthfully: current, working set, anon and the limit", async () => {
			const w = await hive.spawn({
				command: ["node", "-e", "const b = Buffer.alloc(48 << 20, 1); setInterval(() => b[0]++, 100)"],
				memoryBytes: 256 * MiB,
			});
			await until(async () => ((await hive.tick()).workers.find((x) => x.id === w.id)!.stats!.memory.anonBytes ?? 0) > 48 * MiB, 15_000, "48 MiB resident");
			const s = (await hive.tick()).workers.find((x) => x.id === w.id)!.stats!;
			expect(s.memory.limitBytes).toBe(256 * MiB);
			expect(s.memory.currentBytes!).toBeGreaterThan(48 * MiB);
			expect(s.memory.workingSetBytes!).toBeLessThanOrEqual(s.memory.currentBytes!);
			expect(s.memory.peakBytes!).toBeGreaterThanOrEqual(s.memory.currentBytes!);
			expect(s.memory.oomKills).toBe(0);
			expect(s.uptimeMs).toBeGreaterThan(0);
		});
	});
}

export const ioFileIn = (dir: string) => () => join(dir, `apiary-io-${process.pid}-${Date.now()}`);
