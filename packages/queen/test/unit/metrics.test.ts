import { gpu, helloMessage } from "@apiary/test-support/fake-hive";
import { describe, expect, it, vi } from "vitest";
import { EventLog } from "../../src/events.ts";
import { queenMetrics } from "../../src/metrics.ts";
import { Registry } from "../../src/registry.ts";
import { SqliteStore } from "../../src/store/sqlite.ts";

const hello = (id: string) => helloMessage(id, [gpu(0), gpu(1)]);

describe("the queen's /metrics", () => {
	it("a scrape reads the fleet's GPUs and counts its hives and workers once each, not once per gauge, builds no hive view, and the next scrape reads afresh", async () => {
		const store = new SqliteStore(":memory:");
		const fleet = new Registry(store, new EventLog(store), { staleAfterMs: 3000, evictAfterMs: 90_000, busyMemoryMiB: 1024 });
		fleet.hello(hello("a"));
		const gpus = vi.spyOn(fleet, "listGpus");
		const hives = vi.spyOn(fleet, "counts");
		const views = vi.spyOn(fleet, "listHives");
		const m = queenMetrics(fleet, () => 1);
		const first = await m.registry.metrics();
		expect(first).toMatch(/^apiary_gpu_memory_total_bytes\{hive="a",gpu="0"/m);
		expect(first).toMatch(/^apiary_queen_hives\{state="ready"\} 1$/m);
		expect(gpus).toHaveBeenCalledTimes(1);
		expect(hives).toHaveBeenCalledTimes(1);
		await new Promise((r) => setImmediate(r));
		fleet.hello(hello("b"));
		const second = await m.registry.metrics();
		expect(second).toMatch(/^apiary_queen_hives\{state="ready"\} 2$/m);
		expect(second).toMatch(/^apiary_gpu_memory_total_bytes\{hive="b",gpu="1"/m);
		expect(gpus).toHaveBeenCalledTimes(2);
		expect(hives).toHaveBeenCalledTimes(2);
		expect(views).not.toHaveBeenCalled();
	});
});
