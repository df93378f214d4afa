import { Counter } from "prom-client";
import { describe, expect, it } from "vitest";
import { cumulative, Exposition, gauge, registerGpuMetrics } from "../../src/metrics.ts";

describe("Exposition: scrape-time families written as text", () => {
	it("a long scrape gives the event loop back between families; what it reads once per scrape is read once, and afresh the next scrape", async () => {
		const reg = new Exposition();
		let reads = 0;
		const fleet = reg.perScrape(() => ++reads);
		const busy = (ms: number) => {
			const end = performance.now() + ms;
			while (performance.now() < end);
		};
		for (const name of ["t_a", "t_b", "t_c", "t_d"])
			gauge(reg, name, "Slow to read.", [], () => {
				busy(15);
				return [[{}, fleet()]];
			});
		// Something else waiting on the loop: it runs during the scrape, not after it.
		let ranDuring = 0;
		let scraping = true;
		const other = () => {
			if (!scraping) return;
			ranDuring++;
			setImmediate(other);
		};
		setImmediate(other);
		const text = await reg.metrics();
		scraping = false;
		expect(ranDuring).toBeGreaterThanOrEqual(3);
		expect(reads).toBe(1);
		expect(text).toMatch(/^t_d 1$/m);
		expect(await reg.metrics()).toMatch(/^t_d 2$/m);
	});

	it("writes HELP and TYPE, one line a sample with its labels escaped, leaves out what was not measured, and keeps prom-client's own metrics", async () => {
		const reg = new Exposition();
		new Counter({ name: "t_inc_total", help: "Incremented in place.", registers: [reg] }).inc(3);
		const shared = { hive: 'a"b\\c\nd', gpu: 0 };
		gauge(reg, "t_gauge", "A gauge,\nread at scrape.", ["hive", "gpu"], () => [
			[shared, 1.5],
			[{ hive: "x", gpu: 1 }, null],
			[{ hive: "y", gpu: 2 }, Number.POSITIVE_INFINITY],
		]);
		cumulative(reg, "t_seconds_total", "A cumulative count.", ["k"], () => [
			[{ k: "a" }, 7],
			[{ k: "b" }, -1],
			[{ k: "c" }, undefined],
		]);
		gauge(reg, "t_plain", "No labels.", [], () => [[{}, 0]]);
		const text = await reg.metrics();
		expect(text).toContain("# TYPE t_inc_total counter\nt_inc_total 3\n");
		expect(text).toContain(
			'# HELP t_gauge A gauge,\\nread at scrape.\n# TYPE t_gauge gauge\nt_gauge{hive="a\\"b\\\\c\\nd",gpu="0"} 1.5\nt_gauge{hive="y",gpu="2"} +Inf\n',
		);
		expect(text).not.toContain('hive="x"');
		expect(text).toContain('# TYPE t_seconds_total counter\nt_seconds_total{k="a"} 7\n# HELP t_plain');
		expect(text).toMatch(/^t_plain 0$/m);
		// Read afresh each scrape.
		expect(await reg.metrics()).toBe(text);
	});

	it("a GPU's families share one label set and follow the GPUs listed at each scrape", async () => {
		const reg = new Exposition();
		type G = Parameters<typeof registerGpuMetrics>[1] extends () => (infer T)[] ? T : never;
		const g = (hiveId: string, index: number, memoryUsedMiB: number | null) =>
			({ hiveId, index, uuid: `GPU-${hiveId}-${index}`, name: "H100", memoryUsedMiB, memoryTotalMiB: 80, ageMs: 0, free: true }) as unknown as G;
		let list = [g("a", 0, 1), g("a", 1, null)];
		registerGpuMetrics(reg, () => list);
		const first = await reg.metrics();
		expect(first).toContain('apiary_gpu_memory_used_bytes{hive="a",gpu="0",uuid="GPU-a-0",name="H100"} 1048576\n');
		// Not measured: left out, never 0.
		expect(first).not.toMatch(/^apiary_gpu_memory_used_bytes\{hive="a",gpu="1"/m);
		expect(first).toMatch(/^apiary_gpu_free\{hive="a",gpu="1",uuid="GPU-a-1",name="H100"\} 1$/m);
		list = [g("b", 0, 2)];
		const second = await reg.metrics();
		expect(second).not.toContain('hive="a"');
		expect(second).toContain('apiary_gpu_memory_used_bytes{hive="b",gpu="0",uuid="GPU-b-0",name="H100"} 2097152\n');
	});
});
