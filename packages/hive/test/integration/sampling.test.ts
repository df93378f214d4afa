import { readdirSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { CgroupV1Driver } from "../../src/cgroup/v1/driver.ts";
import type { Hive } from "../../src/hive.ts";
import { cleanup, newHive, sleep, until } from "../helpers.ts";

describe("sampling many workers", () => {
	let hive: Hive;
	let stateDir: string;
	const errors: string[] = [];
	afterEach(async () => {
		await cleanup(hive, stateDir);
		errors.length = 0;
	});

	it("samples 100 sleeping workers in one tick without errors: rates null on the first tick, numbers after", async () => {
		({ hive, stateDir } = await newHive("v1", { log: (msg, extra) => msg.includes("failed") && errors.push(`${msg} ${JSON.stringify(extra)}`) }));
		for (let i = 0; i < 100; i++) await hive.spawn({ id: `sleeper-${i}`, command: ["sleep", "120"], memoryBytes: 64 << 20, cpu: 0.1 });
		const first = await hive.tick();
		expect(first.workers).toHaveLength(100);
		for (const w of first.workers) {
			expect(w.state).toBe("running");
			expect(w.stats).not.toBeNull();
			expect(w.stats!.cpu.percent).toBeNull();
			expect(w.stats!.io.writeBytesPerSec).toBeNull();
			expect(w.stats!.memory.limitBytes).toBe(64 << 20);
			expect(w.stats!.pids.current).toBe(1);
		}
		await sleep(300);
		const second = await hive.tick();
		for (const w of second.workers) {
			expect(typeof w.stats!.cpu.percent).toBe("number");
			expect(w.stats!.cpu.percent!).toBeGreaterThanOrEqual(0);
			expect(w.stats!.cpu.percent!).toBeLessThan(10); // sleeping
			expect(typeof w.stats!.io.writeBytesPerSec).toBe("number");
			expect(typeof w.stats!.io.readOpsPerSec).toBe("number");
		}
		expect(errors).toEqual([]);
		expect(second.tickMs).toBeGreaterThan(0);
	});

	it("a worker whose cgroup vanishes mid-tick does not fail the tick for the others", async () => {
		({ hive, stateDir } = await newHive("v1", { log: (msg, extra) => msg.includes("failed") && errors.push(`${msg} ${JSON.stringify(extra)}`) }));
		const ids = ["stay-1", "gone", "stay-2"];
		for (const id of ids) await hive.spawn({ id, command: ["sleep", "60"] });
		await hive.tick();
		// Kill "gone" and remove its cgroups synchronously, before the hive hears of the exit.
		const gone = hive.get("gone")!;
		process.kill(gone.pid!, "SIGKILL");
		const d = hive.driver as CgroupV1Driver;
		while (d.pids("gone").length > 0) {}
		const mounts = new Set([...Object.values(d.mounts.controllers), d.mounts.unified].filter(Boolean) as string[]);
		for (const m of mounts) {
			const dir = join(m, d.rootName, "workers", "gone");
			try {
				readdirSync(dir);
				rmdirSync(dir);
			} catch {}
		}
		const snap = await hive.tick();
		expect(snap.workers.find((w) => w.id === "stay-1")!.stats!.cpu.percent).not.toBeNull();
		expect(snap.workers.find((w) => w.id === "stay-2")!.stats!.cpu.percent).not.toBeNull();
		const exited = await until(() => (hive.get("gone")!.state === "exited" ? hive.get("gone") : null), 5000, "gone's record");
		expect(exited.exit!.signal).toBe("SIGKILL");
	});
});
