import type { GpuInfo, MigDevice } from "@apiary/protocol";

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

/** One GPU as one query line describes it (the sampler adds processes and age). */
export type GpuReading = Omit<GpuInfo, "processes" | "ageMs" | "stale">;

export interface ComputeApp {
	pid: number;
	gpuUuid: string;
	usedMemoryMiB: number | null;
}

/** "[N/A]", "[Not Supported]", "[Insufficient Permissions]", "[Requested functionality has been deprecated]" … are absent values. */
export function isUnavailable(token: string): boolean {
	return token.startsWith("[") && token.endsWith("]");
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

/** One line of `--query-gpu=GPU_FIELDS --format=csv,noheader,nounits`. Throws on a malformed line. */
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
	};
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
