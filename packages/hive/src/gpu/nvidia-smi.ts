import { CLOCK_EVENT_BITS, GPU_SIGNALS, type GpuInfo, type GpuSignals, type MigDevice, SIGNAL_NAMES, type SignalName } from "@apiary/protocol";

// Pure parsers for nvidia-smi's CSV query output. The format is not
// guaranteed stable across driver versions, so lines are parsed by the fields
// we asked for, whitespace is tolerated, and a line whose field count does not
// match is rejected rather than guessed at.

export const GPU_FIELDS = [
	"index",
	"uuid",
	"name",
	"pci.bus_id",
	"memory.total",
	"memory.used",
	"memory.free",
	"utilization.gpu",
	"utilization.memory",
	"temperature.gpu",
	"power.draw",
	"power.limit",
	"mig.mode.current",
] as const;

export const APP_FIELDS = ["pid", "gpu_uuid", "used_memory"] as const;

/** One GPU as one query line describes it (the sampler adds processes, age and health). */
export type GpuReading = Omit<GpuInfo, "processes" | "ageMs" | "stale" | "health" | "healthReasons"> & {
	/** Cells that said `[GPU is lost]` or `[GPU requires reset]`: conditions, not values. */
	cells?: { lost: boolean; resetRequired: boolean };
};

/** The query names of every signal, each signal's first (current) name: what the hive asks a driver first. */
export const SIGNAL_FIELDS: readonly string[] = SIGNAL_NAMES.map((n) => GPU_SIGNALS[n].query[0]);

export interface ComputeApp {
	pid: number;
	gpuUuid: string;
	usedMemoryMiB: number | null;
}

/**
 * "[N/A]", "[Not Supported]", "[Insufficient Permissions]", "[Unknown Error]",
 * "[Requested functionality has been deprecated]", "[GPU is lost]" … and a
 * bare "N/A" (temperature.memory on cards without HBM) are absent values.
 */
export function isUnavailable(token: string): boolean {
	return (token.startsWith("[") && token.endsWith("]")) || token === "N/A";
}

/** A numeric field; tolerates a unit suffix ("81920 MiB", "37 %", "61.54 W") in case nounits was not honoured. */
export function numberField(token: string): number | null {
	const t = token.trim();
	if (t === "" || isUnavailable(t)) return null;
	const m = /^(-?\d+(?:\.\d+)?)(?:\s*(?:MiB|%|W|C|MHz))?$/.exec(t);
	if (!m) throw new Error(`not a number: ${JSON.stringify(t)}`);
	return Number(m[1]);
}

function textField(token: string): string | null {
	const t = token.trim();
	return t === "" || isUnavailable(t) ? null : t;
}

/** Split a CSV line by ", ". Names never contain commas in practice; field count is checked by the caller. */
function split(line: string): string[] {
	return line.split(",").map((f) => f.trim());
}

/** A signal's cell by its kind: null when absent or unsupported, never 0. */
function signalValue(kind: string, token: string): number | boolean | string | null {
	const t = token.trim();
	if (t === "" || isUnavailable(t)) return null;
	switch (kind) {
		case "flag":
			return t === "Yes" || t === "Enabled" || t === "Active" ? true : t === "No" || t === "Disabled" || t === "Not Active" ? false : null;
		case "mask":
			return /^0x[0-9a-fA-F]{1,16}$/.test(t) ? Number(BigInt(t)) : null;
		case "text":
			return t.slice(0, 64);
		default:
			return numberField(t);
	}
}

/** The names of the bits set in a clock event reasons mask. */
export function clockEventNames(mask: number | null): string[] {
	if (mask === null) return [];
	return CLOCK_EVENT_BITS.filter(([bit]) => (mask & bit) !== 0).map(([, name]) => name);
}

/** One line of `--query-gpu=FIELDS --format=csv,noheader,nounits`. Throws on a malformed line. */
export function parseGpuLine(line: string, fields: readonly string[] = GPU_FIELDS): GpuReading {
	const parts = split(line);
	if (parts.length !== fields.length) throw new Error(`expected ${fields.length} fields, got ${parts.length}: ${JSON.stringify(line.slice(0, 120))}`);
	const v = (name: string) => parts[fields.indexOf(name)] ?? "[N/A]";
	const index = numberField(v("index"));
	const uuid = textField(v("uuid"));
	if (index === null || !Number.isInteger(index) || !uuid || !/^GPU-[0-9a-fA-F-]+$/.test(uuid)) {
		throw new Error(`no GPU index/uuid in ${JSON.stringify(line.slice(0, 120))}`);
	}
	const mig = textField(v("mig.mode.current"));
	const cells = { lost: parts.includes("[GPU is lost]"), resetRequired: parts.includes("[GPU requires reset]") };
	const asked = fields.some((f) => SIGNAL_LOOKUP.has(f));
	let signals: GpuSignals | undefined;
	if (asked) {
		const out: Record<string, unknown> = {};
		for (const n of SIGNAL_NAMES) {
			const i = fields.findIndex((f) => SIGNAL_LOOKUP.get(f) === n);
			out[n] = i < 0 ? null : signalValue(GPU_SIGNALS[n].kind, parts[i]!);
		}
		signals = out as GpuSignals;
	}
	return {
		index,
		uuid,
		name: textField(v("name")) ?? "unknown",
		busId: textField(v("pci.bus_id")),
		memoryTotalMiB: numberField(v("memory.total")),
		memoryUsedMiB: numberField(v("memory.used")),
		memoryFreeMiB: numberField(v("memory.free")),
		utilizationGpu: numberField(v("utilization.gpu")),
		utilizationMemory: numberField(v("utilization.memory")),
		temperatureC: numberField(v("temperature.gpu")),
		powerDrawW: numberField(v("power.draw")),
		powerLimitW: numberField(v("power.limit")),
		migMode: mig === "Enabled" || mig === "Disabled" ? mig : null,
		...(signals ? { signals, clockEvents: clockEventNames(signals.clockEventReasons) } : {}),
		...(cells.lost || cells.resetRequired ? { cells } : {}),
	};
}

/** Which signal a query name reads (any generation's name). */
const SIGNAL_LOOKUP = new Map<string, SignalName>(SIGNAL_NAMES.flatMap((n) => GPU_SIGNALS[n].query.map((q) => [q, n] as [string, SignalName])));

/** The name a signal falls back to when a driver does not know `field`; null: none left (the signal stays null). */
export function fallbackField(field: string): string | null {
	const n = SIGNAL_LOOKUP.get(field);
	if (!n) return null;
	const q: readonly string[] = GPU_SIGNALS[n].query;
	return q[q.indexOf(field) + 1] ?? null;
}

/** `Field "x" is not a valid field to query.`: nvidia-smi's answer (on stdout, exit 2) for a field its driver does not know. */
export function invalidField(line: string): string | null {
	return /^Field "([^"]{1,128})" is not a valid field to query\.?\s*$/.exec(line.trim())?.[1] ?? null;
}

/**
 * `Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost. Reboot…`
 * (also `GPU0000:…`, no space, on driver 560): a GPU nvidia-smi cannot reach
 * while it reports the others. Returns its bus key and why.
 */
export function handleError(line: string): { bus: string; message: string; lost: boolean } | null {
	const m = /Unable to determine the device handle for GPU ?([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}(?:\.[0-9A-Fa-f])?): (.*)$/.exec(line.trim());
	if (!m) return null;
	const bus = busKey(m[1]!);
	return bus ? { bus, message: m[2]!.replace(/\s+/g, " ").trim().slice(0, 512), lost: /GPU is lost/i.test(m[2]!) } : null;
}

/**
 * One key for a PCI address however it is written: nvidia-smi's
 * `00000000:3B:00.0` and the kernel's `0000:3b:00` are both `0000:3b:00`
 * (the domain's last four digits, lower case, no function). Null: not one.
 */
export function busKey(addr: string): string | null {
	const m = /^(?:PCI:)?([0-9a-fA-F]{4,8}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})(?:\.[0-9a-fA-F])?$/.exec(addr.trim());
	return m ? `${m[1]!.slice(-4)}:${m[2]}:${m[3]}`.toLowerCase() : null;
}

/** Output of `--query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits`; no processes is no lines. */
export function parseComputeApps(text: string): ComputeApp[] {
	const out: ComputeApp[] = [];
	for (const line of text.split("\n")) {
		if (line.trim() === "") continue;
		const parts = split(line);
		if (parts.length !== APP_FIELDS.length) throw new Error(`expected ${APP_FIELDS.length} fields, got ${parts.length}: ${JSON.stringify(line.slice(0, 120))}`);
		const pid = numberField(parts[0]!);
		if (pid === null || !Number.isInteger(pid) || !parts[1]!.startsWith("GPU-")) throw new Error(`malformed compute-apps line ${JSON.stringify(line)}`);
		out.push({ pid, gpuUuid: parts[1]!, usedMemoryMiB: numberField(parts[2]!) });
	}
	return out;
}

/**
 * `nvidia-smi -L`: "GPU 0: NAME (UUID: GPU-…)" lines, each followed by its
 * MIG instances, "  MIG 3g.40gb     Device  0: (UUID: MIG-…)". Returns the
 * instances by parent GPU uuid; a GPU without MIG has none.
 */
export function parseMigList(text: string): Map<string, MigDevice[]> {
	const out = new Map<string, MigDevice[]>();
	let parent: string | null = null;
	for (const line of text.split("\n")) {
		const gpu = /^GPU \d+: .*\(UUID: (GPU-[0-9a-fA-F-]+)\)\s*$/.exec(line);
		if (gpu) {
			parent = gpu[1]!;
			continue;
		}
		const mig = /^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: (MIG-[0-9a-fA-F-]+)\)\s*$/.exec(line);
		if (mig && parent) {
			const gb = /\.(\d+)gb$/i.exec(mig[1]!);
			const list = out.get(parent) ?? [];
			list.push({ uuid: mig[3]!, profile: mig[1]!, device: Number(mig[2]), memoryMiB: gb ? Number(gb[1]) * 1024 : null });
			out.set(parent, list);
		}
	}
	return out;
}

/** Exit codes documented by nvidia-smi, for messages a person can act on. */
export const EXIT_MEANING: Record<number, string> = {
	2: "invalid argument",
	3: "operation not available",
	4: "insufficient permissions",
	6: "query unsuccessful",
	9: "NVIDIA driver not loaded",
	12: "NVML library not found",
	15: "GPU has fallen off the bus",
	255: "other error",
};
