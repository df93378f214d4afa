import { spawn, spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { authFor, type Daemon, FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { requireTools } from "@apiary/test-support/requires";
import { sleep, until } from "@apiary/test-support/util";

const freePort = () =>
	new Promise<number>((resolve) => {
		const s = createServer().listen(0, "127.0.0.1", () => {
			const p = (s.address() as { port: number }).port;
			s.close(() => resolve(p));
		});
	});

/** Value of one sample in Prometheus text format, or undefined when the series is absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
	for (const line of text.split("\n")) {
		if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
		if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(" ") + 1));
	}
	return undefined;
}

describe("Prometheus metrics on queen and hive", () => {
	const dir = tempDir("metrics");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	beforeAll(async () => {
		requireTools(["prometheus", "promtool"], "prometheus");
		queen = await startQueen({ db: join(dir, "q.db") });
		hive = await startHive({ queen: queen.url, name: "mh", stateDir: join(dir, "hive"), cgroupRoot: root, nvidiaSmi: FAKE_SMI("h100-mig") });
		const post = (body: object) =>
			json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
		await post({ id: "busy", command: ["sh", "-c", "while :; do :; done"], cpu: 0.2, memoryBytes: 64 << 20 });
		await post({ id: "idle", command: ["sleep", "60"] });
		await sleep(1500);
	});
	afterAll(async () => {
		await hive.stop();
		await queen.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("the hive exports per-worker CPU, throttling, memory, IO, pids, and its GPUs; unmeasured values are absent, not 0", async () => {
		const text = await (await fetch(`${hive.url}/metrics`, { headers: authFor(hive.url) })).text();
		expect(sample(text, "apiary_worker_cpu_usage_seconds_total", { worker: "busy" })!).toBeGreaterThan(0.1);
		expect(sample(text, "apiary_worker_cpu_throttled_periods_total", { worker: "busy" })!).toBeGreaterThan(0);
		expect(sample(text, "apiary_worker_memory_limit_bytes", { worker: "busy" })).toBe(64 << 20);
		expect(sample(text, "apiary_worker_memory_limit_bytes", { worker: "idle" })).toBeUndefined(); // unlimited: no series
		expect(sample(text, "apiary_worker_memory_usage_bytes", { worker: "idle" })!).toBeGreaterThan(0);
		expect(sample(text, "apiary_worker_io_write_bytes_total", { worker: "idle" })).toBe(0);
		expect(sample(text, "apiary_worker_oom_kills_total", { worker: "busy" })).toBe(0);
		expect(sample(text, "apiary_worker_pids", { worker: "idle" })).toBe(1);
		expect(sample(text, "apiary_hive_info", { driver: "v1", enforced: "true" })).toBe(1);
		expect(sample(text, "apiary_hive_tick_duration_seconds_count")!).toBeGreaterThan(0);
		expect(sample(text, "apiary_gpu_memory_used_bytes", { gpu: "0" })).toBe(12288 * 1024 * 1024);
		expect(sample(text, "apiary_gpu_utilization_ratio", { gpu: "0" })).toBeUndefined(); // MIG: [N/A]
		expect(sample(text, "apiary_gpu_power_watts", { gpu: "0" })).toBe(143.27);
	});

	it("the queen exports ingest, SSE, evictions, fleet state and GPU freedom", async () => {
		// The hive lists MIG instances (nvidia-smi -L) once its GPUs read fine: wait for them to reach the queen.
		const mig = { hive: "mh", gpu: "0", uuid: "MIG-2f1e3d4c-5b6a-5798-8a9b-0c1d2e3f4a5b" };
		await until(
			async () => sample(await (await fetch(`${queen.url}/metrics`)).text(), "apiary_gpu_free", mig) !== undefined,
			10_000,
			"MIG instances at the queen",
		);
		const text = await (await fetch(`${queen.url}/metrics`)).text();
		expect(sample(text, "apiary_queen_heartbeats_total")!).toBeGreaterThan(1);
		expect(sample(text, "apiary_queen_ingest_duration_seconds_count")!).toBeGreaterThan(1);
		expect(sample(text, "apiary_queen_hives", { state: "ready" })).toBe(1);
		expect(sample(text, "apiary_queen_workers", { state: "running" })).toBe(2);
		expect(sample(text, "apiary_queen_hive_connections")).toBe(1);
		expect(sample(text, "apiary_queen_sse_subscribers")).toBe(0);
		expect(sample(text, "apiary_queen_evictions_total")).toBe(0);
		// The MIG-mode GPU is not free; its two instances are, each its own series (by uuid).
		expect(sample(text, "apiary_gpu_free", { hive: "mh", gpu: "0", uuid: "GPU-8a5c2e7f-1b3d-4f6a-9c0e-2d4b6f8a0c1e" })).toBe(0);
		expect(sample(text, "apiary_gpu_free", mig)).toBe(1);
		expect(sample(text, "apiary_queen_events_total", { type: "worker.spawned" })).toBe(2);
	});

	it("both pass promtool check metrics", async () => {
		for (const url of [hive.url, queen.url]) {
			const text = await (await fetch(`${url}/metrics`, { headers: authFor(url) })).text();
			const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
			expect(`${r.stdout}${r.stderr}`, url).toBe("");
			expect(r.status).toBe(0);
		}
	});

	it("a real Prometheus server scrapes both", async () => {
		const port = await freePort();
		const pdir = tempDir("prom");
		const target = (u: string) => new URL(u).host;
		writeFileSync(
			join(pdir, "prometheus.yml"),
			// The hive's API needs its token on loopback too: Prometheus sends it as a bearer token (docs/operations.md).
			`global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: queen\n    static_configs: [{ targets: ["${target(queen.url)}"] }]\n  - job_name: hive\n    authorization: { credentials_file: "${join(dir, "hive", "api.token")}" }\n    static_configs: [{ targets: ["${target(hive.url)}"] }]\n`,
		);
		const prom = spawn(
			"prometheus",
			[`--config.file=${join(pdir, "prometheus.yml")}`, `--storage.tsdb.path=${join(pdir, "data")}`, `--web.listen-address=127.0.0.1:${port}`],
			{ stdio: "ignore" },
		);
		try {
			const q = async (query: string) =>
				(await json(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(query)}`).catch(() => ({ body: null }))).body?.data?.result ?? [];
			const up = await until(
				async () => {
					const r = await q("up == 1");
					return r.length === 2 ? r : null;
				},
				30_000,
				"both targets up",
			);
			expect(up.map((s: { metric: { job: string } }) => s.metric.job).sort()).toEqual(["hive", "queen"]);
			// The first rates come from two or three scrapes and can read low on a loaded machine: wait for one over 0.05.
			const cpu = await until(
				async () => {
					const r = (await q('rate(apiary_worker_cpu_usage_seconds_total{worker="busy"}[10s])'))[0];
					return r && Number(r.value[1]) > 0.05 ? r : null;
				},
				30_000,
				"a CPU rate over 0.05 cores",
			);
			expect(Number(cpu.value[1])).toBeLessThan(0.3); // held to 0.2 cores
			expect((await q("apiary_queen_heartbeats_total"))[0]).toBeDefined();
		} finally {
			prom.kill("SIGTERM");
			await new Promise((r) => prom.once("exit", r));
			removeDir(pdir);
		}
	}, 90_000);
});
