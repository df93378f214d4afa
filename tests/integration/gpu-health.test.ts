import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GpuView, HiveView, QueenWorkerView } from "@apiary/protocol";
import {
	type Daemon,
	FAKE_SMI,
	json,
	loggedEvents,
	newCgroupRoot,
	removeCgroupRoot,
	removeDir,
	runCli,
	smiScenario,
	startHive,
	startQueen,
	tempDir,
} from "@apiary/test-support/procs";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// GPU health end to end (issue #19): real hives reading a fake nvidia-smi
// whose scenario the test changes as it runs, and a kernel log that is a
// file the test appends /dev/kmsg records to; a real queen placing on them.

const GPU0 = "GPU-509665ad-b600-ac93-3616-d754b23d636d"; // bus 0000:83:00
const GPU1 = "GPU-7a1e2f3c-4d5e-6f70-8192-a3b4c5d6e7f8"; // bus 0000:9b:00

describe("GPU health", () => {
	const dir = tempDir("gpu-health");
	const roots: string[] = [];
	let queen: Daemon;
	const hives = new Map<string, Daemon>();
	let seq = 5000;
	const kmsg = (file: string, text: string) => appendFileSync(file, `3,${++seq},${seq * 1000},-;${text}\n`);
	const hive = async (name: string, nvidiaSmi: string, extra: string[] = [], more: Partial<Parameters<typeof startHive>[0]> = {}) => {
		const root = newCgroupRoot();
		roots.push(root);
		const h = await startHive({
			queen: queen.url,
			name,
			stateDir: join(dir, name),
			cgroupRoot: root,
			nvidiaSmi,
			extra: ["--gpu-interval", "200ms", ...extra],
			...more,
		});
		hives.set(name, h);
		return h;
	};
	const gpus = async (hive: string) => ((await json<GpuView[]>(`${queen.url}/v1/gpus?hive=${hive}`)).body ?? []).sort((a, b) => a.index - b.index);
	const gpu = async (hive: string, uuid: string) => (await gpus(hive)).find((g) => g.uuid === uuid);
	const freeOn = async (hive: string) => (await json<GpuView[]>(`${queen.url}/v1/gpus?free=true&hive=${hive}`)).body.map((g) => g.uuid).sort();
	const place = (body: object) =>
		json(`${queen.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
	const clear = (uuid: string, hive = "gh") => runCli("queen", ["gpu", "clear", uuid, "--hive", hive, "--queen", queen.url]);
	const healthOf = async (hive: string, uuid: string, want: string | null) =>
		until(
			async () => {
				const g = await gpu(hive, uuid);
				return g && (g.health ?? null) === want ? g : null;
			},
			15_000,
			`${uuid} ${want}`,
		);
	const events = (types: string) => loggedEvents(queen.url, types, 1000);

	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "queen.db"), evictAfter: "90s" });
	}, 60_000);
	afterAll(async () => {
		for (const h of hives.values()) await h.stop();
		await queen?.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	});

	it("each signal makes a GPU unhealthy: it leaves the free pool, is never placed on or claimed, and says why; gpu clear once fixed", async () => {
		const smi = smiScenario(dir, "h200-health");
		const log = join(dir, "gh.kmsg");
		writeFileSync(log, "");
		await hive("gh", smi.path, ["--kmsg", log]);
		const g0 = await healthOf("gh", GPU0, "healthy");
		expect(g0.signals).toMatchObject({ temperatureMemoryC: 40, eccMode: true, eccUncorrectedVolatile: 0, pcieLinkGen: 5, recoveryAction: "None" });
		expect(await freeOn("gh")).toEqual([GPU0, GPU1].sort());
		const metrics = await (await fetch(`${queen.url}/metrics`)).text();
		expect(metrics).toMatch(new RegExp(`DCGM_FI_DEV_MEMORY_TEMP\\{hive="gh",gpu="0",uuid="${GPU0}"[^}]*\\} 40`));
		expect(metrics).toMatch(new RegExp(`apiary_gpu_health\\{hive="gh",gpu="0",uuid="${GPU0}"[^}]*\\} 0`));

		const sick = async (uuid: string, code: string) => {
			const g = await healthOf("gh", uuid, "unhealthy");
			expect(g.healthReasons?.map((r) => r.code)).toContain(code);
			expect(g.free).toBe(false);
			expect(await freeOn("gh")).not.toContain(uuid);
			// Never placed on: one GPU goes to the other; two cannot be had; nor claimed.
			const one = await place({ hive: "gh", gpus: { count: 1 }, command: ["true"] });
			expect(one.status).toBe(201);
			expect(one.body.gpus).not.toContain(uuid);
			expect((await place({ hive: "gh", gpus: { count: 2 }, command: ["true"] })).status).toBe(409);
			expect(
				(
					await json(`${queen.url}/v1/claims`, {
						method: "POST",
						headers: { "content-type": "application/json" },
						body: JSON.stringify({ holder: "ci", count: 2, sameHive: true, ttlSeconds: 30 }),
					})
				).status,
			).toBe(409);
		};
		const healed = async (uuid: string, fix: () => void) => {
			// Latched: fixing the reading is not enough, and clearing before the fix brings it back.
			fix();
			await new Promise((r) => setTimeout(r, 800));
			expect((await gpu("gh", uuid))?.health).toBe("unhealthy");
			const r = await clear(uuid);
			expect(r.code, r.stderr).toBe(0);
			expect(r.stdout).toMatch(/health causes cleared/);
			await healthOf("gh", uuid, "healthy");
			await until(async () => (await freeOn("gh")).includes(uuid), 10_000, "free again");
		};

		// A volatile double-bit ECC error.
		smi.edit((sc) => {
			sc.gpus[0]!["ecc.errors.uncorrected.volatile.total"] = "2";
		});
		await sick(GPU0, "ecc-dbe");
		const still = await clear(GPU0);
		expect(still.code).toBe(0);
		await new Promise((r) => setTimeout(r, 800));
		expect((await gpu("gh", GPU0))?.health).toBe("unhealthy"); // the condition is still there: back at once
		await healed(GPU0, () =>
			smi.edit((sc) => {
				sc.gpus[0]!["ecc.errors.uncorrected.volatile.total"] = "0";
			}),
		);

		// A row-remap failure.
		smi.edit((sc) => {
			sc.gpus[1]!["remapped_rows.failure"] = "Yes";
		});
		await sick(GPU1, "row-remap-failure");
		await healed(GPU1, () =>
			smi.edit((sc) => {
				sc.gpus[1]!["remapped_rows.failure"] = "No";
			}),
		);

		// Xid 79 in the kernel log, for the bus of GPU 1 (the kernel's 0000:9b:00 is nvidia-smi's 00000000:9B:00.0).
		kmsg(log, "NVRM: Xid (PCI:0000:9b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.");
		await sick(GPU1, "xid-79");
		const ev = await events("gpu.health");
		expect(ev.some((e) => (e.data as { uuid: string; health: string }).uuid === GPU1 && (e.data as { health: string }).health === "unhealthy")).toBe(true);
		const table = await runCli("queen", ["gpus", "--hive", "gh", "--queen", queen.url]);
		expect(table.stdout).toMatch(/unhealthy \(xid-79\)/);

		// Latched across a hive restart (the state dir), and the log is not read again (a clear is not undone).
		await hives.get("gh")!.stop();
		await hive("gh", smi.path, ["--kmsg", log], { cgroupRoot: roots[0]! });
		await until(async () => (await json<HiveView>(`${queen.url}/v1/hives/gh`)).body.state === "ready", 15_000, "gh back");
		await new Promise((r) => setTimeout(r, 800));
		expect((await gpu("gh", GPU1))?.healthReasons?.map((r) => r.code)).toEqual(["xid-79"]);
		expect((await clear(GPU1)).code).toBe(0);
		await healthOf("gh", GPU1, "healthy");

		// Lost: nvidia-smi cannot reach GPU 0 (and exits 15); GPU 1 reads on.
		smi.edit((sc) => {
			sc.gpus[0]!.lost = true;
		});
		await sick(GPU0, "gpu-lost");
		const other = await gpu("gh", GPU1);
		expect(other?.stale).toBe(false);
		expect(other?.health).toBe("healthy");
		smi.edit((sc) => {
			delete sc.gpus[0]!.lost;
		});
		await until(async () => (await gpu("gh", GPU0))?.stale === false, 10_000, "GPU 0 read again");
		expect((await clear(GPU0)).code).toBe(0);
		await healthOf("gh", GPU0, "healthy");
	});

	it("an application's Xid lands in the exit record of the worker whose process raised it, and is not held against the GPU", async () => {
		const log = join(dir, "gh.kmsg");
		const w = await place({ id: "xid-app", hive: "gh", gpus: { count: 1 }, command: ["sh", "-c", "sleep 2"] });
		expect(w.status).toBe(201);
		const uuid = w.body.gpus[0] as string;
		const bus = uuid === GPU0 ? "0000:83:00" : "0000:9b:00";
		const running = await until(
			async () => {
				const v = (await json<QueenWorkerView>(`${queen.url}/v1/workers/xid-app?hive=gh`)).body;
				return v?.pid ? v : null;
			},
			10_000,
			"its pid",
		);
		kmsg(log, `NVRM: Xid (PCI:${bus}): 13, pid=${running.pid}, name=sh, Graphics SM Warp Exception on (GPC 7, TPC 7, SM 0): Illegal Instruction Parameter`);
		const ended = await until(
			async () => {
				const v = (await json<QueenWorkerView>(`${queen.url}/v1/workers/xid-app?hive=gh`)).body;
				return v?.state === "exited" ? v : null;
			},
			15_000,
			"exited",
		);
		expect(ended.exit?.gpuErrors).toEqual([
			{ xid: 13, gpu: uuid, pid: running.pid, at: expect.any(String), message: expect.stringMatching(/^Graphics SM Warp Exception/) },
		]);
		expect((await gpu("gh", uuid))?.health).toBe("healthy");
	});

	it("--cordon-on-unhealthy-gpu: cordoned (auto:) while a GPU is unhealthy, uncordoned when well; never over, or lifting, a person's cordon", async () => {
		const smi = smiScenario(dir, "h200-health");
		await hive("gh-auto", smi.path, ["--kmsg", "none", "--cordon-on-unhealthy-gpu"]);
		await healthOf("gh-auto", GPU0, "healthy");
		// The same uuids as hive gh's (a copied scenario): a clear must say which hive.
		const both = await runCli("queen", ["gpu", "clear", GPU0, "--queen", queen.url]);
		expect(both.code).toBe(2);
		expect(both.stderr).toMatch(/reported by 2 hives \(gh, gh-auto\): name one/);
		const view = async () => (await json<HiveView>(`${queen.url}/v1/hives/gh-auto`)).body;
		expect((await view()).drain).toBeNull();
		const breakIt = (v: string) =>
			smi.edit((sc) => {
				sc.gpus[0]!["ecc.errors.uncorrected.volatile.total"] = v;
			});
		breakIt("1");
		const auto = await until(async () => ((await view()).drain ? view() : null), 15_000, "auto-cordoned");
		expect(auto.drain).toMatchObject({ state: "cordoned", by: "hive gh-auto", reason: expect.stringMatching(/^auto: unhealthy GPU 0 .*ecc-dbe/) });
		breakIt("0");
		await until(async () => (await gpu("gh-auto", GPU0))?.signals?.eccUncorrectedVolatile === 0, 10_000, "the mended reading");
		expect((await clear(GPU0, "gh-auto")).code).toBe(0);
		await until(async () => (await view()).drain === null, 15_000, "auto-uncordoned");
		// A person's cordon first: the GPU's failure does not replace it, and its mending does not lift it.
		expect((await runCli("queen", ["cordon", "gh-auto", "--reason", "ops: bios update", "--queen", queen.url])).code).toBe(0);
		breakIt("3");
		await healthOf("gh-auto", GPU0, "unhealthy");
		await new Promise((r) => setTimeout(r, 800));
		expect((await view()).drain).toMatchObject({ state: "cordoned", reason: "ops: bios update" });
		breakIt("0");
		await until(async () => (await gpu("gh-auto", GPU0))?.signals?.eccUncorrectedVolatile === 0, 10_000, "the mended reading");
		expect((await clear(GPU0, "gh-auto")).code).toBe(0);
		await healthOf("gh-auto", GPU0, "healthy");
		await new Promise((r) => setTimeout(r, 800));
		expect((await view()).drain).toMatchObject({ state: "cordoned", reason: "ops: bios update" });
		expect((await runCli("queen", ["uncordon", "gh-auto", "--queen", queen.url])).code).toBe(0);
		const ev = await events("hive.cordoned,hive.uncordoned");
		expect(
			ev.filter((e) => e.hiveId === "gh-auto").map((e) => [e.type, (e.data as { drain: { reason?: string } | null }).drain?.reason?.slice(0, 5) ?? null]),
		).toEqual([
			["hive.cordoned", "auto:"],
			["hive.uncordoned", null],
			["hive.cordoned", "ops: "],
			["hive.uncordoned", null],
		]);
	});

	it("an R525 driver: the old field names are used where the new ones are refused, nothing else is lost", async () => {
		await hive("gh-old", FAKE_SMI("a100-r525"), ["--kmsg", "none"]);
		const g = await until(async () => (await gpus("gh-old"))[0], 15_000, "the A100");
		expect(g.signals).toMatchObject({ clockEventReasons: 0x60, pcieLinkGen: 4, recoveryAction: null, eccCorrectedVolatile: 3, temperatureMemoryC: 85 });
		expect(g.clockEvents).toEqual(["sw_thermal_slowdown", "hw_thermal_slowdown"]);
		expect(g.memoryTotalMiB).toBe(81920);
		expect(g.health).toBe("healthy"); // a slowdown counts once it has lasted 30 s
		expect(hives.get("gh-old")!.err()).toMatch(/nvidia-smi does not know a field.*clocks_event_reasons\.active.*clocks_throttle_reasons\.active/);
	});

	it("a kernel log it may not read (dmesg_restrict without CAP_SYSLOG) is said once, and Xid health is then unknown (null), not healthy", async () => {
		const restricted = await import("node:fs").then((fs) => fs.readFileSync("/proc/sys/kernel/dmesg_restrict", "utf8").trim());
		expect(restricted, "this check needs kernel.dmesg_restrict=1").toBe("1");
		// A fake without health fields: only the kernel log could tell.
		const h = await hive("gh-nolog", FAKE_SMI("a100x4"), [], { wrap: ["setpriv", "--bounding-set", "-syslog", "--inh-caps", "-syslog"] });
		const g = await until(async () => (await gpus("gh-nolog"))[0], 15_000, "its GPUs");
		expect(g.health).toBeNull();
		expect(h.err().match(/cannot read \/dev\/kmsg \(EPERM/g)?.length).toBe(1);
		// The same hive with a log it can read: healthy.
		const log = join(dir, "ok.kmsg");
		writeFileSync(log, "");
		await hive("gh-log", FAKE_SMI("a100x4"), ["--kmsg", log]);
		expect((await until(async () => (await gpus("gh-log"))[0], 15_000, "its GPUs")).health).toBe("healthy");
	});
});
