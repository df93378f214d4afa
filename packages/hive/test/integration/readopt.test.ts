import { rmSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createDriver, detect } from "../../src/cgroup/detect.ts";
import { Hive } from "../../src/hive.ts";
import { cleanup, sleep, testRoot, until } from "../helpers.ts";

describe("a restarted hive re-adopts its workers", () => {
	let hives: Hive[] = [];
	let stateDir = "";
	afterEach(async () => {
		const last = hives.at(-1)!;
		for (const h of hives.slice(0, -1)) await h.stop();
		await cleanup(last, stateDir);
		hives = [];
	});

	it("finds running workers by walking its cgroup tree (same ids, same pids) and records the ones that ended while it was down", async () => {
		const root = testRoot("v1");
		stateDir = root.stateDir;
		const first = new Hive({ driver: root.driver, stateDir, hiveId: "h" });
		hives.push(first);
		await first.start();
		const keep = await first.spawn({ id: "keep", command: ["sleep", "120"], labels: { suite: "e2e" }, memoryBytes: 128 << 20 });
		const end = await first.spawn({ id: "end", command: ["sleep", "120"] });
		const soon = await first.spawn({ id: "soon", command: ["sleep", "1.5"] });
		const orphan = await first.spawn({ id: "orphan", command: ["sleep", "121"] });
		await first.tick();
		await first.stop(); // the daemon goes away; its workers do not

		process.kill(end.pid!, "SIGKILL"); // ends while no hive is watching
		rmSync(join(stateDir, "workers", "orphan.json")); // no record: as good as a process someone else put under the root
		await until(() => root.driver.pids("end").length === 0, 5000, "end's exit");

		const driver = createDriver(detect({ requested: "v1", cgroupRoot: root.rootName }));
		const logged: string[] = [];
		const second = new Hive({ driver, stateDir, hiveId: "h", log: (msg, extra) => logged.push(`${msg} ${JSON.stringify(extra)}`) });
		hives.push(second);
		await second.start();
		expect(second.instanceId).not.toBe(first.instanceId);

		const k = second.get("keep")!;
		expect(k).toMatchObject({ state: "running", pid: keep.pid, adopted: true, labels: { suite: "e2e" } });
		expect(k.limits.memoryBytes).toBe(128 << 20);
		const snap = await second.tick();
		expect(snap.workers.find((w) => w.id === "keep")!.stats!.memory.limitBytes).toBe(128 << 20);

		// A cgroup with no record of this hive's is not its own: reported, never listed, adopted or killed.
		expect(second.get("orphan")).toBeUndefined();
		expect(driver.pids("orphan")).toContain(orphan.pid);
		expect(() => process.kill(orphan.pid!, 0)).not.toThrow();
		expect(logged.join("\n")).toMatch(/a cgroup under the root has no record of this hive's: left alone .*"id":"orphan"/);

		const e = second.get("end")!;
		expect(e.state).toBe("exited");
		expect(e.exit).toMatchObject({ exitCode: null, reason: "lost" });
		expect(e.exit!.message).toMatch(/ended while the hive was not running/);
		expect(driver.list()).not.toContain("end"); // its cgroup is gone

		// An adopted worker that ends later is noticed on a tick; its exit code is unknown, and says why.
		expect(second.get("soon")!.state).toBe("running");
		expect(second.get("soon")!.pid).toBe(soon.pid);
		const s = await until(
			async () => {
				await second.tick();
				return second.get("soon")!.state === "exited" ? second.get("soon") : null;
			},
			10_000,
			"soon to end",
		);
		expect(s.exit).toMatchObject({ exitCode: null, reason: "exited" });
		expect(s.exit!.message).toMatch(/re-adopted/);

		// And an adopted worker can still be killed, tree and all.
		const killed = await second.kill("keep");
		expect(killed.exit!.reason).toBe("killed");
		expect(driver.pids("keep")).toEqual([]);
		await sleep(10);
	});
});
