import { bytesOf, findKeyValues, integer, Keys, malformed, NL, SP, scanKeyValues, startsWith } from "../parse.ts";

// cgroup v1 files, scanned from the read buffer (the string forms wrap the
// scanners). Memory counters use the hierarchical total_* keys so a worker's
// children are counted too.

export const CPU_STAT_V1 = new Keys(["nr_periods", "nr_throttled", "throttled_time"]);
/** cpu.stat on v1 → [nr_periods, nr_throttled, throttled_time (ns)]. */
export const scanCpuStatV1 = (b: Uint8Array, n: number, out: (number | null)[]) => scanKeyValues(b, n, "cpu.stat", CPU_STAT_V1, out);

export function parseCpuStatV1(text: string) {
	const [periods, throttledPeriods, throttledNs] = scanCpuStatV1(bytesOf(text), text.length, []);
	return { periods: periods ?? null, throttledPeriods: throttledPeriods ?? null, throttledNs: throttledNs ?? null };
}

const MEMORY_TOTALS_V1 = new Keys(["total_rss", "total_cache", "total_inactive_file", "total_shmem"]);
const MEMORY_LOCAL_V1 = new Keys(["rss", "cache", "inactive_file", "shmem"]);
/**
 * memory.stat on v1 → [anon, file, inactive_file, shmem] (bytes; shmem since kernel 4.x, absent means not measured): the hierarchical
 * total_* keys (which count a worker's children too), or the cgroup's own
 * when a kernel prints no totals. Three searches, not a walk over its ~70 lines.
 */
export function scanMemoryStatV1(b: Buffer, n: number, out: (number | null)[], hints?: Int32Array): (number | null)[] {
	findKeyValues(b, n, "memory.stat", MEMORY_TOTALS_V1, out, hints);
	if (out[0] === null && out[1] === null && out[2] === null && out[3] === null) findKeyValues(b, n, "memory.stat", MEMORY_LOCAL_V1, out);
	return out;
}

/** memory.stat on v1 (bytes): total_rss is anon, total_cache is file-backed. */
export function parseMemoryStatV1(text: string) {
	const [anonBytes, fileBytes, inactiveFileBytes, shmemBytes] = scanMemoryStatV1(bytesOf(text), text.length, []);
	return { anonBytes: anonBytes ?? null, fileBytes: fileBytes ?? null, inactiveFileBytes: inactiveFileBytes ?? null, shmemBytes: shmemBytes ?? null };
}

export const OOM_CONTROL = new Keys(["oom_kill", "under_oom"]);
/** memory.oom_control → [oom_kill, under_oom]; "oom_kill N" exists since kernel 4.13, absent means not measured. */
export const scanOomControl = (b: Uint8Array, n: number, out: (number | null)[]) => scanKeyValues(b, n, "memory.oom_control", OOM_CONTROL, out);

export function parseOomControl(text: string): { oomKills: number | null; underOom: boolean } {
	const [oomKills, underOom] = scanOomControl(bytesOf(text), text.length, []);
	return { oomKills: oomKills ?? null, underOom: underOom === 1 };
}

const READ = bytesOf("Read ");
const WRITE = bytesOf("Write ");
const TOTAL = bytesOf("Total ");

/**
 * blkio.throttle.io_service_bytes / io_serviced:
 *   "8:0 Read 4096\n8:0 Write 0\n8:0 Sync ..\n8:0 Async ..\n8:0 Discard 0\n8:0 Total 4096\nTotal 4096"
 * Summed over devices. Note: the kernel only accounts a device here once the
 * cgroup has a throttle rule for it (the v1 driver writes a no-op high limit).
 */
export function scanBlkioV1(b: Uint8Array, n: number, file: string): { read: number; write: number } {
	let read = 0;
	let write = 0;
	let i = 0;
	while (i < n) {
		let sp = -1;
		let end = i;
		for (; end < n; end++) {
			const c = b[end];
			if (c === NL) break;
			if (c === SP && sp < 0) sp = end;
		}
		if (end > i) {
			if (startsWith(b, i, TOTAL)) {
				// "Total N" (two fields) ends the file.
				if (Number.isNaN(integer(b, i + TOTAL.length, end))) throw malformed(file, b, i, end);
			} else {
				const c = b[i]!;
				if (sp < 0 || c < 48 || c > 57) throw malformed(file, b, i, end);
				const op = sp + 1;
				let stop = op;
				while (stop < end && b[stop] !== SP) stop++;
				if (stop >= end) throw malformed(file, b, i, end);
				const v = integer(b, stop + 1, end);
				if (Number.isNaN(v)) throw malformed(file, b, i, end);
				if (startsWith(b, op, READ)) read += v;
				else if (startsWith(b, op, WRITE)) write += v;
			}
		}
		i = end + 1;
	}
	return { read, write };
}

export function parseBlkioV1(text: string, file: string): { read: number; write: number } {
	return scanBlkioV1(bytesOf(text), text.length, file);
}
