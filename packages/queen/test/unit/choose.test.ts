import type { GpuView } from "@apiary/protocol";
import { gpu } from "@apiary/test-support/fake-hive";
import { describe, expect, it } from "vitest";
import { type Candidate, choose } from "../../src/placement/choose.ts";

// Where placement puts a worker: pure rules on the hives as the registry sees them.
const GiB = 2 ** 30;
const hive = (id: string, o: Partial<Candidate> = {}): Candidate => ({
	id,
	state: "ready",
	connected: true,
	remoteSpawn: true,
	labels: {},
	cores: 8,
	memoryBytes: 32 * GiB,
	committedCpu: 0,
	committedMemoryBytes: 0,
	...o,
});
const free = (hiveId: string, n: number, o: Partial<GpuView> = {}): GpuView[] =>
	Array.from({ length: n }, (_, i) => ({
		...gpu(i, { memoryFreeMiB: 80_000 }),
		hiveId,
		free: true,
		heldBy: [],
		claimId: null,
		...o,
		uuid: `GPU-${hiveId}-${i}`,
	}));

describe("placement rules", () => {
	it("GPUs best fit: the hive with the fewest matching free GPUs that still has enough", () => {
		const c = choose([hive("a"), hive("b"), hive("c")], [...free("a", 1), ...free("b", 4), ...free("c", 2)], {
			gpus: { count: 1 },
			cpu: null,
			memoryBytes: null,
		});
		expect(c).toEqual({ hiveId: "a", gpus: [expect.objectContaining({ uuid: "GPU-a-0" })] });
		const two = choose([hive("a"), hive("b"), hive("c")], [...free("a", 1), ...free("b", 4), ...free("c", 2)], {
			gpus: { count: 2 },
			cpu: null,
			memoryBytes: null,
		});
		expect("hiveId" in two && two.hiveId).toBe("c");
	});

	it("a refusal names why: how many hives have how many free, and the ones that would fit but cannot take it", () => {
		const c = choose(
			[hive("a"), hive("b"), hive("c"), hive("d", { state: "stale" }), hive("e", { remoteSpawn: false })],
			[...free("a", 1), ...free("b", 1), ...free("c", 1), ...free("d", 2), ...free("e", 3)],
			{ gpus: { count: 2, minMemoryMiB: 40_960 }, cpu: null, memoryBytes: null },
		);
		expect(c).toEqual({
			error:
				"need 2 GPUs with ≥ 40960 MiB on one hive: 3 hives have 1 free; hive d has 2 free but is stale; hive e has 3 free but refuses placements (--no-remote-spawn)",
		});
	});

	it("minimum memory and name filter the GPUs; constraints the hives; MIG instances only for one GPU", () => {
		const gpus = [...free("a", 2, { memoryFreeMiB: 20_000 }), ...free("b", 2, { name: "NVIDIA L40S" }), ...free("m", 2, { migParent: "GPU-parent" })];
		const hives = [hive("a", { labels: { pool: "x" } }), hive("b", { labels: { pool: "y" } }), hive("m")];
		expect(choose(hives, gpus, { gpus: { count: 2, minMemoryMiB: 40_000 }, cpu: null, memoryBytes: null })).toMatchObject({ hiveId: "b" });
		expect(choose(hives, gpus, { gpus: { count: 2, name: "l40s" }, cpu: null, memoryBytes: null })).toMatchObject({ hiveId: "b" });
		expect(choose(hives, gpus, { gpus: { count: 1 }, constraints: { pool: "x" }, cpu: null, memoryBytes: null })).toMatchObject({ hiveId: "a" });
		expect(choose(hives, gpus, { gpus: { count: 1 }, constraints: { pool: "z" }, cpu: null, memoryBytes: null })).toEqual({
			error: "need 1 GPU on one hive on hives with pool=z: no hive has those labels",
		});
		// Two MIG instances are not one worker's GPUs (CUDA enumerates one); one is.
		expect(choose([hive("m")], gpus, { gpus: { count: 2 }, cpu: null, memoryBytes: null })).toEqual({ error: "need 2 GPUs on one hive: 1 hive has 0 free" });
		expect(choose([hive("m")], gpus, { gpus: { count: 1 }, cpu: null, memoryBytes: null })).toMatchObject({ hiveId: "m" });
	});

	it("CPU-only workers go to the hive with the most uncommitted CPU and memory that fits; limits of running workers count", () => {
		const hives = [hive("busy", { committedCpu: 6, committedMemoryBytes: 8 * GiB }), hive("idle"), hive("small", { cores: 2, memoryBytes: 4 * GiB })];
		expect(choose(hives, [], { cpu: 1, memoryBytes: GiB })).toEqual({ hiveId: "idle", gpus: [] });
		expect(choose(hives, [], { cpu: 7, memoryBytes: null })).toEqual({ hiveId: "idle", gpus: [] });
		expect(choose(hives, [], { cpu: 9, memoryBytes: null })).toEqual({ error: "need 9 cores: 3 hives have less uncommitted" });
		expect(choose([hive("x", { connected: false })], [], { cpu: null, memoryBytes: null })).toEqual({
			error: "need any hive: hive x is not connected to this queen",
		});
		expect(choose(hives, [], { hive: "nope", cpu: null, memoryBytes: null })).toEqual({ error: "no hive nope" });
	});
});
