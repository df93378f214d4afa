import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { conditionsOf, HealthBook, hasHealthSignals, SLOWDOWN_AFTER_MS, SLOWDOWN_CLEAR_MS } from "../../src/gpu/health.ts";
import { NvrmParser, parseKmsgRecord, xidSeverity } from "../../src/gpu/kmsg.ts";
import { busKey, clockEventNames, fallbackField, GPU_FIELDS, handleError, invalidField, parseGpuLine, type GpuReading } from "../../src/gpu/nvidia-smi.ts";

// The captured lines and their field list (shared/design/NVIDIA-SMI.md): an H200 under load on
// driver 590.48.01, an RTX 2080 SUPER on 595.71.05.
const CAPTURED_FIELDS = [
	"index",
	"pci.bus_id",
	"temperature.gpu",
	"temperature.memory",
	"power.draw",
	"power.limit",
	"clocks.sm",
	"clocks.mem",
	"pcie.link.gen.current",
	"pcie.link.width.current",
	"fan.speed",
	"pstate",
	"clocks_event_reasons.active",
	"clocks_event_reasons.hw_slowdown",
	"clocks_event_reasons.hw_thermal_slowdown",
	"clocks_event_reasons.hw_power_brake_slowdown",
	"clocks_event_reasons.sw_thermal_slowdown",
	"clocks_event_reasons.sw_power_cap",
	"ecc.mode.current",
	"ecc.errors.corrected.volatile.total",
	"ecc.errors.uncorrected.volatile.total",
	"ecc.errors.uncorrected.aggregate.total",
	"retired_pages.pending",
	"remapped_rows.pending",
	"remapped_rows.failure",
	"uuid",
];
const H200 =
	"0, 00000000:83:00.0, 52, 40, 627.40, 700.00, 1980, 3201, 5, 16, [N/A], P0, 0x0000000000000000, Not Active, Not Active, Not Active, Not Active, Not Active, Enabled, 0, 0, 0, [N/A], No, No, GPU-509665ad-b600-ac93-3616-d754b23d636d";
const RTX =
	"0, 00000000:0C:00.0, 45, N/A, 111.50, 250.00, 2055, 7500, 3, 16, 38, P2, 0x0000000000000000, Not Active, Not Active, Not Active, Not Active, Not Active, [N/A], [N/A], [N/A], [N/A], [N/A], [N/A], [N/A], GPU-2080a0b1-c2d3-e4f5-a6b7-c8d9e0f1a2b3";

describe("nvidia-smi health fields", () => {
	it("the captured H200 line: every signal read by its name, 0 as 0 and [N/A] as null", () => {
		const g = parseGpuLine(H200, CAPTURED_FIELDS);
		expect(g.signals).toMatchObject({
			temperatureMemoryC: 40,
			clocksSmMHz: 1980,
			clocksMemMHz: 3201,
			pcieLinkGen: 5,
			pcieLinkWidth: 16,
			fanSpeed: null,
			pstate: "P0",
			clockEventReasons: 0,
			eccMode: true,
			eccCorrectedVolatile: 0,
			eccUncorrectedVolatile: 0,
			eccUncorrectedAggregate: 0,
			retiredPagesPending: null,
			remappedRowsPending: false,
			remappedRowsFailure: false,
			// Not asked for: null, never 0.
			recoveryAction: null,
			remappedRowsCorrectable: null,
		});
		expect(g.powerDrawW).toBe(627.4);
		expect(g.clockEvents).toEqual([]);
		expect(conditionsOf(g)).toEqual([]);
		expect(hasHealthSignals(g)).toBe(true);
	});

	it("the captured consumer card: bare N/A and [N/A] are null, and a card without ECC has no health signal to judge by", () => {
		const g = parseGpuLine(RTX, CAPTURED_FIELDS);
		expect(g.signals).toMatchObject({
			temperatureMemoryC: null,
			fanSpeed: 38,
			pstate: "P2",
			eccMode: null,
			eccUncorrectedVolatile: null,
			remappedRowsFailure: null,
		});
		// The clock reasons are there (0x0): something to judge by.
		expect(hasHealthSignals(g)).toBe(true);
		expect(hasHealthSignals({ ...g, signals: { ...g.signals!, clockEventReasons: null } })).toBe(false);
		// Only the base fields (the queries before health signals): no signals at all.
		expect(
			parseGpuLine(`0, GPU-0d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0000, A100, 00000000:07:00.0, 1, 1, 0, 0, 0, 30, 50, 400, Disabled`, GPU_FIELDS).signals,
		).toBeUndefined();
	});

	it("other spellings: [Not Supported], [Unknown Error], [Insufficient Permissions] are null; [GPU is lost] and [GPU requires reset] are conditions", () => {
		const f = ["index", "uuid", "ecc.errors.uncorrected.volatile.total", "remapped_rows.failure", "gpu_recovery_action", "temperature.memory"];
		const g = parseGpuLine("1, GPU-1d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0001, [Unknown Error], [Insufficient Permissions], [Not Supported], [GPU is lost]", f);
		expect(g.signals).toMatchObject({ eccUncorrectedVolatile: null, remappedRowsFailure: null, recoveryAction: null, temperatureMemoryC: null });
		expect(g.cells).toEqual({ lost: true, resetRequired: false });
		expect(conditionsOf(g).map((c) => c.code)).toEqual(["gpu-lost"]);
		const r = parseGpuLine("1, GPU-1d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0001, 0, No, [GPU requires reset], 40", f);
		expect(conditionsOf(r).map((c) => c.code)).toEqual(["reset-required"]);
	});

	it("the clock event mask (0x%016X) decodes to NVML's names", () => {
		expect(clockEventNames(0x4)).toEqual(["sw_power_cap"]);
		expect(clockEventNames(0x60)).toEqual(["sw_thermal_slowdown", "hw_thermal_slowdown"]);
		expect(clockEventNames(0x1ff).length).toBe(9);
		expect(clockEventNames(null)).toEqual([]);
		const g = parseGpuLine("0, GPU-0d3c6e1a-5b2f-4e7c-9a1d-0c8b7f6e0000, 0x0000000000000084", ["index", "uuid", "clocks_throttle_reasons.active"]);
		expect(g.signals?.clockEventReasons).toBe(0x84);
		expect(g.clockEvents).toEqual(["sw_power_cap", "hw_power_brake_slowdown"]);
	});

	it("the two generations of names: each signal falls back to its older name, then to none", () => {
		expect(fallbackField("clocks_event_reasons.active")).toBe("clocks_throttle_reasons.active");
		expect(fallbackField("clocks_throttle_reasons.active")).toBeNull();
		expect(fallbackField("pcie.link.gen.gpucurrent")).toBe("pcie.link.gen.current");
		expect(fallbackField("gpu_recovery_action")).toBeNull();
		expect(fallbackField("index")).toBeNull();
		expect(invalidField('Field "clocks_event_reasons.active" is not a valid field to query.')).toBe("clocks_event_reasons.active");
		expect(invalidField("0, GPU-…")).toBeNull();
	});

	it("a GPU nvidia-smi cannot reach, in each form seen, and PCI addresses however written", () => {
		expect(handleError("Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost. Reboot the system to recover this GPU")).toEqual({
			bus: "0000:02:00",
			message: "GPU is lost. Reboot the system to recover this GPU",
			lost: true,
		});
		expect(handleError("Unable to determine the device handle for GPU0000:17:00.0: Unknown Error")).toEqual({
			bus: "0000:17:00",
			message: "Unknown Error",
			lost: false,
		});
		expect(handleError("Unable to determine the device handle for GPU 0000:1C:00.0: GPU is lost.  Reboot the system")?.bus).toBe("0000:1c:00");
		expect(busKey("00000000:3B:00.0")).toBe("0000:3b:00");
		expect(busKey("PCI:0000:3b:00")).toBe("0000:3b:00");
		expect(busKey("00000018:01:00.0")).toBe("0018:01:00");
		expect(busKey("3b:00")).toBeNull();
	});
});

describe("the kernel log's NVIDIA records", () => {
	it("every form in the fixture (from the driver source): GPU lines, Xids with and without pid, MIG, fallen off the bus in two forms", () => {
		const p = new NvrmParser();
		const events = readFileSync(new URL("../fixtures/kmsg/nvrm.kmsg", import.meta.url), "utf8")
			.split("\n")
			.map(parseKmsgRecord)
			.filter((r) => r !== null)
			.map((r) => p.parse(r.text))
			.filter((e) => e !== null);
		expect(events).toEqual([
			{ kind: "gpu", bus: "0000:9b:00", uuid: "GPU-509665ad-b600-ac93-3616-d754b23d636d" },
			{
				kind: "xid",
				bus: "0000:9b:00",
				xid: 119,
				pid: 2024380,
				process: "nvidia-smi",
				message: "Timeout after 6s of waiting for RPC response from GPU4 GSP! Expected function 103 (GSP_RM_ALLOC) (0x2081 0x4).",
			},
			{ kind: "xid", bus: "0000:cb:00", xid: 13, pid: null, process: null, message: expect.stringMatching(/^Graphics SM Warp Exception/) },
			{ kind: "xid", bus: "0000:cb:00", xid: 109, pid: 1797828, process: "pt_main_thread", message: expect.stringMatching(/^Ch 00000008/) },
			{ kind: "xid", bus: "0000:00:08", xid: 94, pid: null, process: null, message: "Contained: SM (0x1). RST: No, D-RST: No" },
			{ kind: "xid", bus: "0000:0a:00", xid: 31, pid: 13332, process: "cuda_plot_k32_v", message: expect.stringMatching(/MMU Fault/) },
			{ kind: "xid", bus: "0000:dc:00", xid: 45, pid: 1818990, process: "python3", message: "Ch 00000001 caused by previous Xid 149" },
			{ kind: "xid", bus: "0018:01:00", xid: 145, pid: null, process: null, message: expect.stringMatching(/^RLW_RXPIPE/) },
			{ kind: "xid", bus: "0000:03:00", xid: 79, pid: null, process: null, message: "GPU has fallen off the bus." },
			{ kind: "xid", bus: "0000:3b:00", xid: 31, pid: 4242, process: "train", message: expect.stringMatching(/MMU Fault/) },
			{ kind: "lost", bus: "0000:18:00", message: "GPU has fallen off the bus" },
			{ kind: "lost", bus: "0000:b3:00", message: "GPU has fallen off the bus and is not responding to commands" },
		]);
		expect(parseKmsgRecord("6,3964,206764307,-;text")).toEqual({ seq: 3964, text: "text" });
		expect(parseKmsgRecord(" SUBSYSTEM=pci")).toBeNull();
		expect(parseKmsgRecord("[  12.3] plain dmesg")).toEqual({ seq: null, text: "[  12.3] plain dmesg" });
	});

	it("which Xids are whose: application errors are not held against the GPU; DCGM's failures and reset-needing ones are", () => {
		for (const x of [13, 31, 43, 45, 68, 109]) expect(xidSeverity(x)).toBe("application");
		for (const x of [48, 64, 74, 79, 95, 119, 120, 140]) expect(xidSeverity(x)).toBe("unhealthy");
		for (const x of [63, 94]) expect(xidSeverity(x)).toBe("degraded");
		expect(xidSeverity(92)).toBe("info");
	});
});

describe("the verdict", () => {
	const reading = (signals: Partial<NonNullable<GpuReading["signals"]>>, extra: Partial<GpuReading> = {}): GpuReading => {
		const g = parseGpuLine(H200, CAPTURED_FIELDS);
		return { ...g, signals: { ...g.signals!, ...signals }, ...extra };
	};
	const T = Date.parse("2026-12-03T10:00:00Z");

	it("each cause after DCGM's watches: unhealthy beats degraded; none and signals known is healthy; nothing known is null", () => {
		const b = new HealthBook();
		expect(b.verdict("g", true)).toEqual({ health: "healthy", healthReasons: [] });
		expect(b.verdict("g", false)).toEqual({ health: null, healthReasons: [] });
		expect(b.observe("g", conditionsOf(reading({ remappedRowsPending: true })), T)).toBe(true);
		expect(b.verdict("g", true).health).toBe("degraded");
		b.observe("g", conditionsOf(reading({ eccUncorrectedVolatile: 2 })), T + 1000);
		const v = b.verdict("g", true);
		expect(v.health).toBe("unhealthy");
		// Latched: the pending remap stays though the last reading no longer shows it.
		expect(v.healthReasons.map((r) => [r.code, r.severity])).toEqual([
			["row-remap-pending", "degraded"],
			["ecc-dbe", "unhealthy"],
		]);
		expect(v.healthReasons[0]!.since).toBe("2026-12-03T10:00:00.000Z");
		for (const [s, code] of [
			[{ remappedRowsFailure: true }, "row-remap-failure"],
			[{ recoveryAction: "GPU Reset" }, "recovery-action"],
			[{ retiredPagesSbe: 60, retiredPagesDbe: 3 }, "retired-pages-limit"],
		] as const)
			expect(conditionsOf(reading(s)).map((c) => [c.code, c.severity])).toEqual([[code, "unhealthy"]]);
		expect(conditionsOf(reading({ retiredPagesPending: true }))[0]!.severity).toBe("degraded");
		expect(conditionsOf(reading({ recoveryAction: "None" }))).toEqual([]);
		// A clear forgets them; a condition still there comes back.
		expect(b.clear("g")).toBe(true);
		expect(b.verdict("g", true).health).toBe("healthy");
		b.observe("g", conditionsOf(reading({ eccUncorrectedVolatile: 2 })), T + 2000);
		expect(b.verdict("g", true).health).toBe("unhealthy");
		// Persisted and loaded again (a hive restart): the same verdict.
		expect(new HealthBook(b.causes()).verdict("g", true)).toEqual(b.verdict("g", true));
	});

	it("a slowdown counts once it has lasted, and is forgotten after five minutes without one; the power cap never counts", () => {
		const b = new HealthBook();
		const hot = conditionsOf(reading({ clockEventReasons: 0x40 }, { clockEvents: ["hw_thermal_slowdown"] }));
		expect(hot.map((c) => c.code)).toEqual(["thermal-slowdown"]);
		expect(conditionsOf(reading({ clockEventReasons: 0x4 }))).toEqual([]);
		expect(conditionsOf(reading({ clockEventReasons: 0x80 })).map((c) => c.code)).toEqual(["power-slowdown"]);
		b.observe("g", hot, T);
		b.observe("g", hot, T + SLOWDOWN_AFTER_MS - 1);
		expect(b.verdict("g", true).health).toBe("healthy");
		// A brief one that stopped starts over.
		b.observe("g", [], T + SLOWDOWN_AFTER_MS);
		b.observe("g", hot, T + SLOWDOWN_AFTER_MS + 1);
		b.observe("g", hot, T + 2 * SLOWDOWN_AFTER_MS);
		expect(b.verdict("g", true).health).toBe("healthy");
		b.observe("g", hot, T + 2 * SLOWDOWN_AFTER_MS + 1);
		expect(b.verdict("g", true)).toMatchObject({ health: "degraded", healthReasons: [{ code: "thermal-slowdown" }] });
		const last = T + 2 * SLOWDOWN_AFTER_MS + 1;
		b.observe("g", [], last + SLOWDOWN_CLEAR_MS);
		expect(b.verdict("g", true).health).toBe("degraded");
		b.observe("g", [], last + SLOWDOWN_CLEAR_MS + 1);
		expect(b.verdict("g", true).health).toBe("healthy");
	});

	it("a cause from the kernel log is added once", () => {
		const b = new HealthBook();
		expect(b.add("g", { code: "xid-79", message: "Xid 79", severity: "unhealthy" }, "2026-12-03T10:00:00.000Z")).toBe(true);
		expect(b.add("g", { code: "xid-79", message: "Xid 79 again", severity: "unhealthy" }, "2026-12-03T11:00:00.000Z")).toBe(false);
		expect(b.verdict("g", false)).toMatchObject({ health: "unhealthy", healthReasons: [{ code: "xid-79", since: "2026-12-03T10:00:00.000Z" }] });
	});
});
