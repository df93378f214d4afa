import { join } from "node:path";
import type { HiveView } from "@apiary/protocol";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// `hive start --label k=v`: a hive says what it is (pool, zone…); the queen
// shows it, keeps it, and placement constraints will look there.
describe("hive labels", () => {
	const dir = tempDir("labels");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "queen.db"), evictAfter: "90s" });
		hive = await startHive({
			queen: queen.url,
			name: "lab-h",
			stateDir: join(dir, "hive"),
			cgroupRoot: root,
			extra: ["--label", "pool=a100", "--label", "zone=b"],
		});
	});
	afterAll(async () => {
		await hive?.stop();
		await queen?.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("reach the queen in hello: /v1/hives and queen hives show them", async () => {
		await until(async () => (await json<HiveView[]>(`${queen.url}/v1/hives`)).body.some((h) => h.id === "lab-h" && h.state === "ready"), 15_000, "hive ready");
		const h = (await json<HiveView>(`${queen.url}/v1/hives/lab-h`)).body;
		expect(h.labels).toEqual({ pool: "a100", zone: "b" });
		const out = await runCli("queen", ["hives", "--queen", queen.url]);
		expect(out.code).toBe(0);
		const [head, row] = out.stdout.split("\n");
		expect(head).toMatch(/LABELS/);
		expect(row).toMatch(/^lab-h\s+ready\s+.*pool=a100,zone=b\s+/);
	});

	it("are kept by the queen: a restarted queen lists them with no hive connected", async () => {
		await hive.stop("SIGKILL"); // its workers stay; it will not say hello again
		await queen.stop();
		queen = await startQueen({ db: join(dir, "queen.db"), port: Number(new URL(queen.url).port), evictAfter: "90s" });
		const h = (await json<HiveView>(`${queen.url}/v1/hives/lab-h`)).body;
		expect(h.state).toBe("unknown");
		expect(h.labels).toEqual({ pool: "a100", zone: "b" });
	});

	it("a malformed label is refused before anything starts: exit 2 naming it", async () => {
		const bad = await runCli("hive", ["start", "--label", "no-equals", "--state-dir", join(dir, "bad")]);
		expect(bad.code).toBe(2);
		expect(bad.stderr).toMatch(/--label: expected K=V, got "no-equals"/);
		const key = await runCli("hive", ["start", "--label", "../x=1", "--state-dir", join(dir, "bad")]);
		expect(key.code).toBe(2);
		expect(key.stderr).toMatch(/--label: "..\/x" is not a label name/);
	});
});
