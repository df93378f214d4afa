import { CgroupParseError, parseKeyValue, pick } from "../parse.ts";

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

/** memory.stat on v1 (bytes): total_rss is anon, total_cache is file-backed. */
export function parseMemoryStatV1(text: string) {
	const m = parseKeyValue(text, "memory.stat");
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

/** v1 memory.limit_in_bytes: "no limit" is PAGE_COUNTER_MAX * page size, a huge number. */
export function parseMemoryLimitV1(text: string): number | null {
	const n = Number(text.trim());
	if (!Number.isFinite(n) || text.trim() === "") throw new CgroupParseError("memory.limit_in_bytes", `expected a number, got ${JSON.stringify(text.trim())}`);
	return n >= 2 ** 62 ? null : n;
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
	for (const line of text.split("\n")) {
		if (line === "") continue;
		const f = line.split(" ");
		if (f.length === 2 && f[0] === "Total") continue;
		if (f.length !== 3 || !/^\d+:\d+$/.test(f[0]!)) throw new CgroupParseError(file, `malformed line ${JSON.stringify(line)}`);
		const v = Number(f[2]);
		if (!Number.isFinite(v)) throw new CgroupParseError(file, `malformed line ${JSON.stringify(line)}`);
		if (f[1] === "Read") read += v;
		else if (f[1] === "Write") write += v;
	}
	return { read, write };
}
