import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { GPU_FIELDS, numberField, parseComputeApps, parseGpuLine, parseMigList } from "../../src/gpu/nvidia-smi.ts";
import { fakeSmi } from "../helpers.ts";

// Lines in nvidia-smi's recorded format (csv,noheader,nounits, fields in GPU_FIELDS order).
const A100 = "0, GPU-0d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0000, NVIDIA A100-SXM4-80GB, 00000000:07:00.0, 81920, 40512, 40917, 97, 61, 33, 312.48, 400.00, Disabled";
const H100_MIG =
	"0, GPU-8a5c2e7f-1b3d-4f6a-9c0e-2d4b6f8a0c1e, NVIDIA H100 80GB HBM3, 00000000:19:00.0, 81559, 12288, 68657, [N/A], [N/A], 41, 143.27, 700.00, Enabled";
const RTX =
	"0, GPU-5e0b9c7a-3d1f-4a2e-8b6c-9f0d1e2a3b4c, NVIDIA GeForce RTX 4090, 00000000:01:00.0, 24564, 1083, 23084, 7, 2, 46, [Not Supported], [Not Supported], [N/A]";

describe("nvidia-smi --query-gpu parsing", () => {
	it("reads an A100 line field by field", () => {
		expect(parseGpuLine(A100)).toEqual({
			index: 0,
			uuid: "GPU-0d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0000",
			name: "NVIDIA A100-SXM4-80GB",
			busId: "00000000:07:00.0",
			memoryTotalMiB: 81920,
			memoryUsedMiB: 40512,
			memoryFreeMiB: 40917,
			utilizationGpu: 97,
			utilizationMemory: 61,
			temperatureC: 33,
			powerDrawW: 312.48,
			powerLimitW: 400,
			migMode: "Disabled",
		});
	});

	it("MIG mode: utilization reads [N/A] and becomes null, not 0", () => {
		const g = parseGpuLine(H100_MIG);
		expect(g.utilizationGpu).toBeNull();
		expect(g.utilizationMemory).toBeNull();
		expect(g.migMode).toBe("Enabled");
		expect(g.memoryUsedMiB).toBe(12288);
	});

	it("a consumer card's [Not Supported] power is null", () => {
		const g = parseGpuLine(RTX);
		expect(g.powerDrawW).toBeNull();
		expect(g.powerLimitW).toBeNull();
		expect(g.migMode).toBeNull();
		expect(g.utilizationGpu).toBe(7);
	});

	it("[Insufficient Permissions] and deprecated-field tokens are null too", () => {
		expect(numberField("[Insufficient Permissions]")).toBeNull();
		expect(numberField("[Requested functionality has been deprecated]")).toBeNull();
	});

	it("tolerates extra whitespace and units left on", () => {
		const g = parseGpuLine(A100.replaceAll(", ", " ,   ").replace("81920", "81920 MiB").replace("312.48", "312.48 W"));
		expect(g.memoryTotalMiB).toBe(81920);
		expect(g.powerDrawW).toBe(312.48);
	});

	it("rejects a line whose field count does not match, and garbage", () => {
		expect(() => parseGpuLine(A100.split(", ").slice(0, 12).join(", "))).toThrow(/expected 13 fields, got 12/);
		expect(() => parseGpuLine("Failed to initialize NVML: Unknown Error")).toThrow();
		expect(() => parseGpuLine(A100.replace("97", "ninety"))).toThrow(/not a number/);
	});

	it("parses the fake's recorded 8×A100 output the same way as the literal line", () => {
		const out = execFileSync(fakeSmi("a100x8"), [`--query-gpu=${GPU_FIELDS.join(",")}`, "--format=csv,noheader,nounits"], { encoding: "utf8" });
		const lines = out.trim().split("\n");
		expect(lines).toHaveLength(8);
		expect(lines[0]).toBe(A100);
		expect(lines.map((l) => parseGpuLine(l).index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
	});
});

describe("nvidia-smi --query-compute-apps parsing", () => {
	it("one line per process per GPU; no processes, no lines", () => {
		const apps = parseComputeApps("41234, GPU-0d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0000, 40000\n41290, GPU-1d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0001, 1536\n");
		expect(apps).toEqual([
			{ pid: 41234, gpuUuid: "GPU-0d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0000", usedMemoryMiB: 40000 },
			{ pid: 41290, gpuUuid: "GPU-1d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0001", usedMemoryMiB: 1536 },
		]);
		expect(parseComputeApps("")).toEqual([]);
	});
	it("under MIG used_memory can be [N/A]: null", () => {
		expect(parseComputeApps("52011, GPU-8a5c2e7f-1b3d-4f6a-9c0e-2d4b6f8a0c1e, [N/A]\n")[0]!.usedMemoryMiB).toBeNull();
	});
	it("rejects malformed lines", () => {
		expect(() => parseComputeApps("41234, 40000\n")).toThrow(/expected 3 fields/);
	});
});

describe("nvidia-smi -L (MIG instances)", () => {
	it("lists each MIG-mode GPU's instances by its uuid, with the profile's memory; GPUs without MIG have none", () => {
		const text = [
			"GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-8a5c2e7f-1b3d-4f6a-9c0e-2d4b6f8a0c1e)",
			"  MIG 3g.40gb     Device  0: (UUID: MIG-2f1e3d4c-5b6a-5798-8a9b-0c1d2e3f4a5b)",
			"  MIG 1g.10gb     Device  1: (UUID: MIG-7e6d5c4b-3a29-5187-9f8e-7d6c5b4a3928)",
			"GPU 1: NVIDIA A100-SXM4-80GB (UUID: GPU-0d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0000)",
			"",
		].join("\n");
		const m = parseMigList(text);
		expect([...m.keys()]).toEqual(["GPU-8a5c2e7f-1b3d-4f6a-9c0e-2d4b6f8a0c1e"]);
		expect(m.get("GPU-8a5c2e7f-1b3d-4f6a-9c0e-2d4b6f8a0c1e")).toEqual([
			{ uuid: "MIG-2f1e3d4c-5b6a-5798-8a9b-0c1d2e3f4a5b", profile: "3g.40gb", device: 0, memoryMiB: 40_960 },
			{ uuid: "MIG-7e6d5c4b-3a29-5187-9f8e-7d6c5b4a3928", profile: "1g.10gb", device: 1, memoryMiB: 10_240 },
		]);
		expect(parseMigList("garbage\n  MIG x Device 0: (UUID: MIG-aaaaaaaa)\n").size).toBe(0); // an instance with no GPU before it is not invented
	});
});
