import { readdirSync, readFileSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import type { Hive } from "../../src/hive.ts";
import { parseProcStat } from "../../src/proc.ts";
import { cleanup, newHive, sleep, until } from "../helpers.ts";

const childrenOf = (pid: number) =>
	readdirSync("/proc")
		.filter((p) => /^\d+$/.test(p))
		.flatMap((p) => {
			try {
				const s = parseProcStat(readFileSync(`/proc/${p}/stat`, "latin1"));
				return s.ppid === pid && s.state !== "Z" ? [s.pid] : [];
			} catch {
				return [];
			}
		});

describe("the none driver (no writable cgroups)", () => {
	let hive: Hive;
	let stateDir: string;
	afterEach(async () => {
		await cleanup(hive, stateDir);
	});

	it("says limits are not enforced, and samples the process tree from procfs", async () => {
		({ hive, stateDir } = await newHive("none"));
		expect(hive.driver.info).toMatchObject({ name: "none", enforced: false, root: null });
		const w = await hive.spawn({ command: ["sh", "-c", "sleep 60 & while :; do :; done"], cpu: 0.5 });
		expect(w.cgroup).toBeNull();
		await hive.tick();
		await sleep(1500);
		const s = (await hive.tick()).workers[0]!.stats!;
		// Not enforced: the busy loop gets a whole core whatever --cpu said.
		expect(s.cpu.percent!).toBeGreaterThan(70);
		expect(s.pids.current).toBe(2);
		expect(s.memory.currentBytes!).toBeGreaterThan(0);
		// What procfs cannot tell is null, not 0.
		expect(s.cpu.throttledPeriods).toBeNull();
		expect(s.memory.oomKills).toBeNull();
		expect(s.memory.limitBytes).toBeNull();
		expect(s.pressure.cpu).toBeNull();
		const kids = childrenOf(w.pid!);
		expect(kids).toHaveLength(1);
		const done = await hive.kill(w.id);
		expect(done.exit!.oomKilled).toBeNull();
		await until(
			() =>
				kids.every((k) => {
					try {
						process.kill(k, 0);
						return false;
					} catch {
						return true;
					}
				}),
			5000,
			"the whole tree to die",
		);
	});

	it("without procfs (macOS) it falls back to pidusage for the worker's own process", async () => {
		const { NoCgroupDriver } = await import("../../src/cgroup/none.ts");
		const { Hive } = await import("../../src/hive.ts");
		const { mkdtempSync } = await import("node:fs");
		stateDir = mkdtempSync("/tmp/apiary-test-nopro-");
		hive = new Hive({ driver: new NoCgroupDriver("test: no procfs", "/nonexistent-procfs"), stateDir, hiveId: "np" });
		await hive.start();
		const w = await hive.spawn({ command: ["sh", "-c", "while :; do :; done"] });
		await hive.tick();
		await sleep(1200);
		const s = (await hive.tick()).workers[0]!.stats!;
		expect(s.cpu.percent!).toBeGreaterThan(50);
		expect(s.memory.currentBytes!).toBeGreaterThan(0);
		expect(s.pids.current).toBeNull(); // pidusage sees one process, not the tree: not measured
		expect(s.io.writeBytes).toBeNull();
		await hive.kill(w.id);
	});
});
