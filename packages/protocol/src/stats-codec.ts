import type { PackedStats } from "./wire.ts";
import type { Pressure, PressureStats, WorkerStats } from "./types.ts";

// Heartbeats carry each running worker's stats as one positional array
// rather than nested objects: the field names were three quarters of the
// bytes. The order below is the wire format; append, never reorder.

type N = number | null;
const psiOut = (p: Pressure | null): N[] | null =>
	p
		? [p.some.avg10, p.some.avg60, p.some.avg300, p.some.totalUs, p.full?.avg10 ?? null, p.full?.avg60 ?? null, p.full?.avg300 ?? null, p.full?.totalUs ?? null]
		: null;
const psiIn = (a: N[] | null): Pressure | null =>
	a
		? {
				some: { avg10: a[0]!, avg60: a[1]!, avg300: a[2]!, totalUs: a[3]! },
				full: a[4] === null ? null : { avg10: a[4]!, avg60: a[5]!, avg300: a[6]!, totalUs: a[7]! },
			}
		: null;

export function packStats(s: WorkerStats): PackedStats {
	const { cpu: c, memory: m, io, pids, pressure: p } = s;
	return [
		s.sampledAt,
		Math.round(s.uptimeMs),
		c.usageNs,
		c.percent,
		c.periods,
		c.throttledPeriods,
		c.throttledNs,
		m.currentBytes,
		m.peakBytes,
		m.workingSetBytes,
		m.anonBytes,
		m.fileBytes,
		m.limitBytes,
		m.oomKills,
		io.readBytes,
		io.writeBytes,
		io.readOps,
		io.writeOps,
		io.readBytesPerSec === null ? null : Math.round(io.readBytesPerSec),
		io.writeBytesPerSec === null ? null : Math.round(io.writeBytesPerSec),
		io.readOpsPerSec === null ? null : Math.round(io.readOpsPerSec * 100) / 100,
		io.writeOpsPerSec === null ? null : Math.round(io.writeOpsPerSec * 100) / 100,
		pids.current,
		pids.limit,
		psiOut(p.cpu),
		psiOut(p.memory),
		psiOut(p.io),
		s.gpuMemoryMiB,
	];
}

export const PACKED_STATS_LENGTH = 28;

/** A message that breaks the wire format: the socket closes with 1008 and this message. */
export class ProtocolError extends Error {
	override name = "ProtocolError";
}

const isNum = (v: unknown) => v === null || typeof v === "number";

/** Types every position (the socket schema checks only the array's length). */
function checkPacked(a: unknown[]): void {
	for (let i = 0; i < 24; i++) if (!isNum(a[i])) throw new ProtocolError(`packed stats position ${i} must be a number or null`);
	for (let i = 24; i < 27; i++) {
		const p = a[i];
		if (p !== null && !(Array.isArray(p) && p.length === 8 && p.every(isNum))) throw new ProtocolError(`packed stats position ${i} must be 8 numbers or null`);
	}
	const g = a[27];
	if (g !== null && (typeof g !== "object" || Array.isArray(g) || !Object.values(g as object).every((v) => typeof v === "number"))) {
		throw new ProtocolError("packed stats position 27 must be an object of numbers or null");
	}
}

/**
 * Checks a sample as it came off the socket and returns it as it is: the
 * queen keeps the latest packed and unpacks it when read (a nested object per
 * worker per second, held until the next sample, is what its heap was
 * promoting and collecting most).
 */
export function checkPackedStats(a: PackedStats): PackedStats {
	if (!Array.isArray(a) || a.length < PACKED_STATS_LENGTH) throw new ProtocolError(`packed stats must be an array of ${PACKED_STATS_LENGTH}`);
	checkPacked(a);
	return a;
}

export function unpackStats(a: PackedStats): WorkerStats {
	checkPackedStats(a);
	const n = (i: number) => a[i] as N;
	const pressure: PressureStats = { cpu: psiIn(a[24] as N[] | null), memory: psiIn(a[25] as N[] | null), io: psiIn(a[26] as N[] | null) };
	return {
		sampledAt: n(0)!,
		uptimeMs: n(1)!,
		cpu: { usageNs: n(2), percent: n(3), periods: n(4), throttledPeriods: n(5), throttledNs: n(6) },
		memory: { currentBytes: n(7), peakBytes: n(8), workingSetBytes: n(9), anonBytes: n(10), fileBytes: n(11), limitBytes: n(12), oomKills: n(13) },
		io: {
			readBytes: n(14),
			writeBytes: n(15),
			readOps: n(16),
			writeOps: n(17),
			readBytesPerSec: n(18),
			writeBytesPerSec: n(19),
			readOpsPerSec: n(20),
			writeOpsPerSec: n(21),
		},
		pids: { current: n(22), limit: n(23) },
		pressure,
		gpuMemoryMiB: (a[27] as Record<string, number> | null) ?? null,
	};
}
