import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { conditionsOf, hasHealthSignals } from "../../src/gpu/health.ts";
import { NvrmParser, parseKmsgRecord } from "../../src/gpu/kmsg.ts";
import { GPU_FIELDS, invalidField, parseComputeApps, parseGpuLine, parseMigList, SIGNAL_FIELDS } from "../../src/gpu/nvidia-smi.ts";
import { fakeSmi } from "../helpers.ts";

// What a real nvidia-smi printed on one H200, driver 580.159.04
// (scripts/capture-nvidia-smi.sh on a lent GPU machine, 2026-12-04; two small
// PyTorch jobs held the GPU for the "busy" files). Two things are checked:
// the hive's parsers read the real bytes, and the fake the other tests use
// prints exactly what the real one did for the same questions.
const DIR = fakeSmi("recorded/h200-r580");
const rec = (name: string) => readFileSync(join(DIR, name), "utf8");
const fake = (...args: string[]) => spawnSync(fakeSmi("h200-r580"), args, { encoding: "utf8" });
const UUID = "GPU-d5eb3352-a0cb-bb25-88a5-1a47d929e6df";

/** The query line's field names, read from the recorded header (units in brackets dropped). */
const recordedFields = rec("query-idle-header.out")
	.split("\n")[0]!
	.split(", ")
	.map((f) => f.replace(/ \[.*\]$/, ""));

describe("a real H200 on driver 580, read by the hive's parsers", () => {
	it("the recording asked exactly the hive's query (re-record if the query changes)", () => {
		expect(recordedFields).toEqual([...GPU_FIELDS, ...SIGNAL_FIELDS]);
	});

	it("an idle GPU: every value read, unsupported ones null (not 0), the idle clock reason named", () => {
		const g = parseGpuLine(rec("query-idle.out").trim(), recordedFields);
		expect(g).toMatchObject({
			index: 0,
			uuid: UUID,
			name: "NVIDIA H200",
			busId: "00000000:00:06.0",
			memoryTotalMiB: 143771,
			memoryUsedMiB: 0,
			utilizationGpu: 0,
			powerDrawW: 78.02,
			powerLimitW: 700,
			migMode: "Disabled",
			clockEvents: ["gpu_idle"],
		});
		expect(g.signals).toMatchObject({
			temperatureMemoryC: 37,
			clocksSmMHz: 345,
			pstate: "P0",
			eccMode: true,
			eccUncorrectedVolatile: 0,
			// Hopper has row remapping, not page retirement: the driver says [N/A].
			retiredPagesSbe: null,
			retiredPagesDbe: null,
			retiredPagesPending: null,
			remappedRowsPending: false,
			remappedRowsFailure: false,
			pcieLinkGen: 5,
			pcieLinkWidth: 16,
			fanSpeed: null,
			recoveryAction: "None",
		});
		expect(hasHealthSignals(g)).toBe(true);
		expect(conditionsOf(g)).toEqual([]);
	});

	it("the header form (units on values) reads the same as nounits (two calls a moment apart: only the power draw moved)", () => {
		const withUnits = parseGpuLine(rec("query-idle-header.out").split("\n")[1]!, recordedFields);
		expect(withUnits.powerDrawW).toBe(78);
		expect({ ...withUnits, powerDrawW: null }).toEqual({ ...parseGpuLine(rec("query-idle.out").trim(), recordedFields), powerDrawW: null });
	});

	it("a busy GPU and every line of loop mode parse; the busy one shows the jobs' memory and no clock reason", () => {
		const busy = parseGpuLine(rec("query-busy.out").trim(), recordedFields);
		expect(busy.utilizationGpu).toBe(100);
		expect(busy.memoryUsedMiB).toBe(4759);
		expect(busy.clockEvents).toEqual([]);
		const loop = rec("loop.out").trim().split("\n");
		expect(loop.length).toBeGreaterThanOrEqual(5);
		for (const line of loop) expect(parseGpuLine(line, recordedFields).uuid).toBe(UUID);
	});

	it("compute apps: two PyTorch processes with their memory; none when idle", () => {
		expect(parseComputeApps(rec("apps-busy.out"))).toEqual([
			{ pid: 653, gpuUuid: UUID, usedMemoryMiB: 2884 },
			{ pid: 652, gpuUuid: UUID, usedMemoryMiB: 1860 },
		]);
		expect(rec("apps-idle.out")).toBe("");
		expect(parseComputeApps(rec("apps-idle.out"))).toEqual([]);
		// used_memory and used_gpu_memory are one field.
		expect(rec("apps-busy-used-gpu-memory.out")).toBe(rec("apps-busy.out"));
	});

	it("-L: one GPU, no MIG instances; an unknown field gets nvidia-smi's own answer", () => {
		expect([...parseMigList(rec("list.out")).entries()]).toEqual([]);
		expect(rec("list.out")).toContain(`(UUID: ${UUID})`);
		expect(invalidField(rec("invalid-field.out").split("\n")[0]!)).toBe("no.such.field");
	});

	it("every field name of both driver generations is known to driver 580", () => {
		const rows = rec("fields.tsv")
			.trim()
			.split("\n")
			.map((l) => l.split("\t"));
		for (const q of [...GPU_FIELDS, ...SIGNAL_FIELDS, "clocks_throttle_reasons.active", "clocks.sm", "pcie.link.gen.current", "remapped_rows.sbe"]) {
			expect(rows.find((r) => r[0] === q)?.[1], q).toBe("0");
		}
	});

	it("the driver's own kernel-log records are read and none is taken for an Xid", () => {
		const p = new NvrmParser();
		const records = rec("kmsg-head.out").trim().split("\n").map(parseKmsgRecord);
		expect(records.map((r) => r?.seq)).toEqual([354, 355, 356]);
		expect(records.every((r) => r?.text.startsWith("NVRM: "))).toBe(true);
		expect(records.map((r) => p.parse(r!.text))).toEqual([null, null, null]);
	});
});

describe("the fake prints what the real nvidia-smi printed", () => {
	const fields = recordedFields.join(",");
	it("the hive's query line, byte for byte, and its header", () => {
		expect(fake(`--query-gpu=${fields}`, "--format=csv,noheader,nounits").stdout).toBe(rec("query-busy.out"));
		expect(fake(`--query-gpu=${fields}`, "--format=csv").stdout.split("\n")[0]).toBe(rec("query-idle-header.out").split("\n")[0]);
	});

	it("compute apps, with and without the header (which names used_memory used_gpu_memory)", () => {
		expect(fake("--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv,noheader,nounits").stdout).toBe(rec("apps-busy.out"));
		expect(fake("--query-compute-apps=pid,gpu_uuid,used_memory", "--format=csv").stdout).toBe(rec("apps-busy-header.out"));
	});

	it("-L and the unknown-field answer (stdout, exit 2)", () => {
		expect(fake("-L").stdout).toBe(rec("list.out"));
		const bad = fake("--query-gpu=index,no.such.field", "--format=csv,noheader,nounits");
		expect([bad.stdout, bad.status]).toEqual([rec("invalid-field.out"), 2]);
	});

	it("knows every field name the real driver knew (asked in one query: the fake stops at the first it does not know)", () => {
		const rows = rec("fields.tsv")
			.trim()
			.split("\n")
			.map((l) => l.split("\t"));
		expect(rows.filter((r) => r[1] !== "0")).toEqual([]);
		const all = fake(`--query-gpu=${rows.map((r) => r[0]).join(",")}`, "--format=csv,noheader,nounits");
		expect([all.status, all.stdout.trim().split(", ").length]).toEqual([0, rows.length]);
	});
});
