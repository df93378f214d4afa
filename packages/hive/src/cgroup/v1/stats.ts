import { CgroupParseError, findKeys, parseKeyValue, pick } from "../parse.ts";

// cgroup v1 files. Memory counters use the hierarchical total_* keys so a
// worker's children are counted too.

/** cpu.stat on v1: nr_periods, nr_throttled, throttled_time (ns). */
export function parseCpuStatV1(text: string) {
	const m = parseKeyValue(text, "cpu.stat");
	return {
		periods: pick(m, "nr_periods"),
		throttledPeriods: pick(m, "nr_throttled"),
		throttledNs: pick(m, "throttled_time"),
	};
}

const MEMORY_STAT_KEYS = ["total_rss", "rss", "total_cache", "cache", "total_inactive_file", "inactive_file"];

/** memory.stat on v1 (bytes): total_rss is anon, total_cache is file-backed. */
export function parseMemoryStatV1(text: string) {
	const m = findKeys(text, "memory.stat", MEMORY_STAT_KEYS);
	return {
		anonBytes: pick(m, "total_rss") ?? pick(m, "rss"),
		fileBytes: pick(m, "total_cache") ?? pick(m, "cache"),
		inactiveFileBytes: pick(m, "total_inactive_file") ?? pick(m, "inactive_file"),
	};
}

/** memory.oom_control: "oom_kill N" exists since kernel 4.13; absent means not measured. */
export function parseOomControl(text: string): { oomKills: number | null; underOom: boolean } {
	const m = parseKeyValue(text, "memory.oom_control");
	return { oomKills: pick(m, "oom_kill"), underOom: m.get("under_oom") === 1 };
}

/**
 * blkio.throttle.io_service_bytes / io_serviced:
 *   "8:0 Read 4096\n8:0 Write 0\n8:0 Sync ..\n8:0 Async ..\n8:0 Discard 0\n8:0 Total 4096\nTotal 4096"
 * Summed over devices. Note: the kernel only accounts a device here once the
 * cgroup has a throttle rule for it (the v1 driver writes a no-op high limit).
 */
export function parseBlkioV1(text: string, file: string): { read: number; write: number } {
	let read = 0;
	let write = 0;
	// Scanned by hand: with many devices this file is the longest of the tick.
	let i = 0;
	while (i < text.length) {
		let end = text.indexOf("\n", i);
		if (end < 0) end = text.length;
		const a = text.indexOf(" ", i);
		const b = a < 0 || a > end ? -1 : text.indexOf(" ", a + 1);
		if (b < 0 || b > end) {
			// "Total N" (two fields) ends the file; anything else is malformed.
			if (!text.startsWith("Total ", i) && end > i) throw new CgroupParseError(file, `malformed line ${JSON.stringify(text.slice(i, end))}`);
		} else {
			const v = Number(text.slice(b + 1, end));
			if (!Number.isFinite(v) || text.charCodeAt(i) < 48 || text.charCodeAt(i) > 57) throw new CgroupParseError(file, `malformed line ${JSON.stringify(text.slice(i, end))}`);
			const op = text.slice(a + 1, b);
			if (op === "Read") read += v;
			else if (op === "Write") write += v;
		}
		i = end + 1;
	}
	return { read, write };
}
