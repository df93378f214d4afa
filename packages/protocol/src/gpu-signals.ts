import { type TBoolean, type TNull, type TNumber, type TString, type TUnion, Type } from "@sinclair/typebox";
import { Nullable, type Static, StringEnum } from "./schema.ts";

// The GPU health signals, declared once: which nvidia-smi fields each is read
// from (the current name first, then the names older drivers know), how its
// value is spelled, and what Prometheus calls it (dcgm-exporter's name where
// it has one). The wire schema, the parser, the field probe and /metrics are
// all derived from this table. Field names and spellings:
// ../shared/design/NVIDIA-SMI.md (captured on drivers 525–595).

type Kind = "number" | "flag" | "text" | "mask";

interface Signal {
	/** nvidia-smi --query-gpu names, preferred first; a driver that knows none leaves the signal null. */
	readonly query: readonly string[];
	/** number; flag: Yes/No, Enabled/Disabled, Active/Not Active; text; mask: 0x%016X. */
	readonly kind: Kind;
	/** The Prometheus gauge (dcgm-exporter's name where it has one); null: not exported (text). */
	readonly metric: string | null;
	readonly help: string;
}

export const GPU_SIGNALS = {
	temperatureMemoryC: { query: ["temperature.memory"], kind: "number", metric: "DCGM_FI_DEV_MEMORY_TEMP", help: "HBM temperature, C." },
	temperatureLimitC: {
		query: ["temperature.gpu.tlimit"],
		kind: "number",
		metric: "apiary_gpu_temperature_tlimit_celsius",
		help: "Degrees left before the GPU slows down for heat (T.Limit).",
	},
	clocksSmMHz: { query: ["clocks.current.sm", "clocks.sm"], kind: "number", metric: "DCGM_FI_DEV_SM_CLOCK", help: "SM clock, MHz." },
	clocksMemMHz: { query: ["clocks.current.memory", "clocks.mem"], kind: "number", metric: "DCGM_FI_DEV_MEM_CLOCK", help: "Memory clock, MHz." },
	pstate: { query: ["pstate"], kind: "text", metric: null, help: "Performance state, P0 (fastest) to P12." },
	clockEventReasons: {
		query: ["clocks_event_reasons.active", "clocks_throttle_reasons.active"],
		kind: "mask",
		metric: "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
		help: "Why the clocks are held down now: NVML's bitmask (clockEvents names its bits).",
	},
	eccMode: { query: ["ecc.mode.current"], kind: "flag", metric: null, help: "ECC enabled." },
	eccCorrectedVolatile: {
		query: ["ecc.errors.corrected.volatile.total"],
		kind: "number",
		metric: "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
		help: "Corrected (single-bit) ECC errors since the driver loaded.",
	},
	eccUncorrectedVolatile: {
		query: ["ecc.errors.uncorrected.volatile.total"],
		kind: "number",
		metric: "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
		help: "Uncorrected (double-bit) ECC errors since the driver loaded.",
	},
	eccCorrectedAggregate: {
		query: ["ecc.errors.corrected.aggregate.total"],
		kind: "number",
		metric: "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
		help: "Corrected ECC errors over the GPU's life.",
	},
	eccUncorrectedAggregate: {
		query: ["ecc.errors.uncorrected.aggregate.total"],
		kind: "number",
		metric: "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
		help: "Uncorrected ECC errors over the GPU's life.",
	},
	retiredPagesSbe: {
		query: ["retired_pages.single_bit_ecc.count", "retired_pages.sbe"],
		kind: "number",
		metric: "DCGM_FI_DEV_RETIRED_SBE",
		help: "Pages retired for single-bit errors.",
	},
	retiredPagesDbe: {
		query: ["retired_pages.double_bit.count", "retired_pages.dbe"],
		kind: "number",
		metric: "DCGM_FI_DEV_RETIRED_DBE",
		help: "Pages retired for double-bit errors.",
	},
	retiredPagesPending: {
		query: ["retired_pages.pending"],
		kind: "flag",
		metric: "DCGM_FI_DEV_RETIRED_PENDING",
		help: "A page retirement waits for the next reset.",
	},
	remappedRowsCorrectable: {
		query: ["remapped_rows.correctable", "remapped_rows.sbe"],
		kind: "number",
		metric: "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
		help: "Rows remapped for correctable errors.",
	},
	remappedRowsUncorrectable: {
		query: ["remapped_rows.uncorrectable", "remapped_rows.dbe"],
		kind: "number",
		metric: "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
		help: "Rows remapped for uncorrectable errors.",
	},
	remappedRowsPending: {
		query: ["remapped_rows.pending"],
		kind: "flag",
		metric: "DCGM_FI_DEV_ROW_REMAP_PENDING",
		help: "A row remap waits for the next reset.",
	},
	remappedRowsFailure: {
		query: ["remapped_rows.failure"],
		kind: "flag",
		metric: "DCGM_FI_DEV_ROW_REMAP_FAILURE",
		help: "A row remap failed: the GPU needs service.",
	},
	pcieLinkGen: {
		query: ["pcie.link.gen.gpucurrent", "pcie.link.gen.current"],
		kind: "number",
		metric: "DCGM_FI_DEV_PCIE_LINK_GEN",
		help: "PCIe link generation now.",
	},
	pcieLinkWidth: { query: ["pcie.link.width.current"], kind: "number", metric: "DCGM_FI_DEV_PCIE_LINK_WIDTH", help: "PCIe link width now (lanes)." },
	fanSpeed: { query: ["fan.speed"], kind: "number", metric: "DCGM_FI_DEV_FAN_SPEED", help: "Fan speed, percent." },
	recoveryAction: {
		query: ["gpu_recovery_action"],
		kind: "text",
		metric: null,
		help: "What the driver says the GPU needs: None, GPU Reset, Node Reboot, Drain P2P, Drain and Reset.",
	},
} as const satisfies Record<string, Signal>;

export type SignalName = keyof typeof GPU_SIGNALS;
export const SIGNAL_NAMES = Object.keys(GPU_SIGNALS) as SignalName[];

type KindSchema<K extends Kind> = K extends "flag" ? TBoolean : K extends "text" ? TString : TNumber;
type SignalSchemas = { [K in SignalName]: TUnion<[KindSchema<(typeof GPU_SIGNALS)[K]["kind"]>, TNull]> };

const kindSchema = (k: Kind) => (k === "flag" ? Type.Boolean() : k === "text" ? Type.String({ maxLength: 64 }) : Type.Number());

/** Every signal, null when the driver does not have it or the GPU does not support it (never 0). */
export const GpuSignals = Type.Object(Object.fromEntries(SIGNAL_NAMES.map((n) => [n, Nullable(kindSchema(GPU_SIGNALS[n].kind))])) as unknown as SignalSchemas);
export type GpuSignals = Static<typeof GpuSignals>;

/** NVML's clock event reason bits (nvml.h), as `clockEvents` names them. */
export const CLOCK_EVENT_BITS = [
	[0x1, "gpu_idle"],
	[0x2, "applications_clocks_setting"],
	[0x4, "sw_power_cap"],
	[0x8, "hw_slowdown"],
	[0x10, "sync_boost"],
	[0x20, "sw_thermal_slowdown"],
	[0x40, "hw_thermal_slowdown"],
	[0x80, "hw_power_brake_slowdown"],
	[0x100, "display_clock_setting"],
	[0x200, "board_limit"],
	[0x400, "reliability"],
] as const;

export const HEALTH = ["healthy", "degraded", "unhealthy"] as const;
export const Health = StringEnum(HEALTH);
export type Health = Static<typeof Health>;

export const HealthReason = Type.Object({
	code: Type.String({ maxLength: 64, description: "e.g. ecc-dbe, row-remap-failure, xid-79, gpu-lost, thermal-slowdown" }),
	message: Type.String({ maxLength: 1024 }),
	since: Type.String({ description: "when it was first seen" }),
	severity: StringEnum(["degraded", "unhealthy"] as const),
});
export type HealthReason = Static<typeof HealthReason>;

/** An application's GPU error (an Xid its own code caused), in the record of the worker whose process raised it. */
export const GpuError = Type.Object({
	xid: Type.Integer(),
	gpu: Nullable(Type.String({ maxLength: 128, description: "the GPU's uuid (null: its bus id matched no GPU of this hive)" })),
	at: Type.String(),
	message: Type.String({ maxLength: 1024 }),
	pid: Nullable(Type.Integer()),
});
export type GpuError = Static<typeof GpuError>;
