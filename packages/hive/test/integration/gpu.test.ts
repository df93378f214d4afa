import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { GpuSampler } from "../../src/gpu/sampler.ts";
import type { Hive } from "../../src/hive.ts";
import { cleanup, fakeSmi, newHive, sleep, until } from "../helpers.ts";

// Real child processes running the fake nvidia-smi in loop mode, one per scenario.
describe("GPU sampling through a long-lived nvidia-smi", () => {
	const samplers: GpuSampler[] = [];
	const start = (scenario: string, extra: Partial<ConstructorParameters<typeof GpuSampler>[0]> = {}) => {
		const s = new GpuSampler({ binary: fakeSmi(scenario), intervalMs: 200, ...extra });
		samplers.push(s);
		s.start();
		return s;
	};
	afterEach(() => {
		for (const s of samplers.splice(0)) s.stop();
	});

	it("8×A100: every card with its values", async () => {
		const s = start("a100x8");
		const st = await until(() => (s.status().gpus.length === 8 ? s.status() : null), 10_000, "8 GPUs");
		expect(st.state).toBe("ok");
		expect(st.gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
		expect(st.gpus[0]).toMatchObject({
			name: "NVIDIA A100-SXM4-80GB",
			memoryTotalMiB: 81920,
			memoryUsedMiB: 40512,
			utilizationGpu: 97,
			powerDrawW: 312.48,
			stale: false,
		});
		expect(new Set(st.gpus.map((g) => g.uuid)).size).toBe(8);
	});

	it("keeps one nvidia-smi child for many samples (loop mode, not one exec per tick)", async () => {
		const s = start("a100x4");
		await until(() => s.status().gpus.length === 4, 10_000, "4 GPUs");
		const age0 = s.status().ageMs!;
		await sleep(1000);
		expect(s.status().ageMs!).toBeLessThan(1000 + age0); // still fresh lines
		expect(s.restartCount).toBe(0);
	});

	it("H100 in MIG mode: utilization null, MIG Enabled, process memory [N/A] is null", async () => {
		const s = start("h100-mig");
		const g = await until(() => s.status().gpus[0], 10_000, "the H100");
		expect(g.utilizationGpu).toBeNull();
		expect(g.utilizationMemory).toBeNull();
		expect(g.migMode).toBe("Enabled");
		const p = await until(() => s.status().gpus[0]!.processes[0], 10_000, "compute apps");
		expect(p).toEqual({ pid: 52011, usedMemoryMiB: null, workerId: null });
	});

	it("a consumer card with [Not Supported] power: null power, other values intact", async () => {
		const s = start("rtx4090");
		const g = await until(() => s.status().gpus[0], 10_000, "the RTX 4090");
		expect(g.powerDrawW).toBeNull();
		expect(g.powerLimitW).toBeNull();
		expect(g.temperatureC).toBe(46);
		expect(g.name).toBe("NVIDIA GeForce RTX 4090");
	});

	it("a hung nvidia-smi: data is marked stale with its age, and the reader is restarted", async () => {
		const s = start("hang", { stallMs: 600 });
		await until(() => s.status().gpus.length === 2, 10_000, "first block");
		const st = await until(() => (s.status().state === "stale" ? s.status() : null), 10_000, "stale");
		expect(st.ageMs!).toBeGreaterThan(600);
		expect(st.gpus.every((g) => g.stale)).toBe(true);
		expect(st.message).toMatch(/printed nothing/);
		await until(() => s.restartCount >= 1, 10_000, "a restart");
	});

	it("a crashing nvidia-smi (GPU fell off the bus): the exit is reported and it is restarted", async () => {
		const s = start("crash");
		await until(() => s.status().gpus.length === 2, 10_000, "first blocks");
		const st = await until(() => (s.status().message?.includes("exit code 15") ? s.status() : null), 10_000, "crash noticed");
		expect(st.message).toMatch(/GPU has fallen off the bus/);
		await until(() => s.restartCount >= 1, 10_000, "a restart");
	});

	it("garbage output: no GPUs invented, the error is said, and it is not taken for a hang", async () => {
		const logged: string[] = [];
		const s = start("garbage", { stallMs: 1000, log: (msg, extra) => logged.push(`${msg} ${JSON.stringify(extra)}`) });
		const st = await until(() => (s.status().message ? s.status() : null), 5000, "a message");
		expect(st.gpus).toEqual([]);
		expect(st.state).not.toBe("ok");
		expect(st.message).toMatch(/unparseable/);
		// Past the stall time: it keeps printing, so no "printed nothing" and no restarts; the real cause is said and logged.
		await until(() => /not a hang/.test(s.status().message ?? ""), 5000, "the cause said");
		await sleep(1200);
		expect(s.status().message).toMatch(/nvidia-smi prints output that is not the GPU lines asked for .*not a hang/);
		expect(s.restartCount).toBe(0);
		expect(logged.join("\n")).not.toMatch(/printed nothing/);
		expect(logged.join("\n")).toMatch(/gpu sampler state.*not a hang/);
	});

	it("no nvidia-smi at all: absent, no GPUs", async () => {
		const s = start("does-not-exist");
		const st = await until(() => (s.status().state === "absent" ? s.status() : null), 5000, "absent");
		expect(st.gpus).toEqual([]);
		expect(st.message).toMatch(/not found/);
	});

	it("driver not loaded (exit 9): absent, with nvidia-smi's own message", async () => {
		const s = start("no-driver");
		const st = await until(() => (s.status().state === "absent" ? s.status() : null), 5000, "absent");
		expect(st.message).toMatch(/NVIDIA driver not loaded/);
	});
});

describe("GPUs on a hive", () => {
	let hive: Hive | null = null;
	let stateDir = "";
	let gpu: GpuSampler | null = null;
	const tmp = mkdtempSync(join(tmpdir(), "apiary-test-apps-"));
	afterEach(async () => {
		gpu?.stop();
		if (hive) await cleanup(hive, stateDir);
		hive = null;
		delete process.env.FAKE_NVIDIA_SMI_APPS;
		rmSync(tmp, { recursive: true, force: true });
	});

	it("attributes compute apps on two GPUs to the workers whose cgroups hold them, and passes CUDA_VISIBLE_DEVICES", async () => {
		const appsFile = join(tmp, "apps.json");
		process.env.FAKE_NVIDIA_SMI_APPS = appsFile;
		let h: Hive | null = null;
		gpu = new GpuSampler({
			binary: fakeSmi("a100x8"),
			intervalMs: 200,
			attribute: (pid) => h?.list().find((w) => w.state === "running" && h!.driver.pids(w.id).includes(pid))?.id ?? null,
		});
		({ hive: h, stateDir } = await newHive("v1", { gpus: gpu }));
		hive = h;
		gpu.start();
		const status = await until(() => (gpu!.status().gpus.length === 8 ? gpu!.status() : null), 10_000, "GPUs");
		const [g0, g1] = status.gpus;
		const a = await h.spawn({
			id: "gpu-a",
			command: ["sh", "-c", 'echo "cuda=$CUDA_VISIBLE_DEVICES nvidia=$NVIDIA_VISIBLE_DEVICES"; exec sleep 60'],
			gpus: ["0"],
		});
		const b = await h.spawn({ id: "gpu-b", command: ["sleep", "60"], gpus: [g1!.uuid] });
		writeFileSync(
			appsFile,
			JSON.stringify([
				{ pid: String(a.pid), gpu_uuid: g0!.uuid, used_memory: "40000" },
				{ pid: String(b.pid), gpu_uuid: g1!.uuid, used_memory: "1536" },
				{ pid: "999999", gpu_uuid: g1!.uuid, used_memory: "100" },
			]),
		);
		const snap = await until(
			async () => {
				const s = await h.tick();
				return s.workers.find((w) => w.id === "gpu-b")?.stats?.gpuMemoryMiB?.[g1!.uuid] ? s : null;
			},
			10_000,
			"attributed GPU memory",
		);
		expect(snap.workers.find((w) => w.id === "gpu-a")!.stats!.gpuMemoryMiB).toEqual({ [g0!.uuid]: 40000 });
		expect(snap.workers.find((w) => w.id === "gpu-b")!.stats!.gpuMemoryMiB).toEqual({ [g1!.uuid]: 1536 });
		const procs1 = snap.gpu.gpus[1]!.processes;
		expect(procs1).toContainEqual({ pid: b.pid, usedMemoryMiB: 1536, workerId: "gpu-b" });
		expect(procs1).toContainEqual({ pid: 999999, usedMemoryMiB: 100, workerId: null });
		await until(() => readFileSync(h.logPath("gpu-a"), "utf8").includes("cuda="), 5000, "env echo");
		expect(readFileSync(h.logPath("gpu-a"), "utf8")).toContain("cuda=0 nvidia=0");
	});

	it("refuses a GPU the hive does not have, and GPUs on a hive without any", async () => {
		gpu = new GpuSampler({ binary: fakeSmi("a100x4"), intervalMs: 200 });
		({ hive, stateDir } = await newHive("v1", { gpus: gpu }));
		gpu.start();
		await until(() => gpu!.status().gpus.length === 4, 10_000, "GPUs");
		await expect(hive!.spawn({ command: ["true"], gpus: ["7"] })).rejects.toThrow(/gpus: "7" is not a GPU index or UUID of this hive/);
		expect(hive.list()).toEqual([]);
		gpu.stop();
		const none = new GpuSampler({ binary: fakeSmi("does-not-exist"), intervalMs: 200 });
		const h2 = await newHive("v1", { gpus: none });
		try {
			await expect(h2.hive.spawn({ command: ["true"], gpus: ["0"] })).rejects.toThrow(/this hive has no GPUs/);
		} finally {
			await cleanup(h2.hive, h2.stateDir);
		}
	});
});
