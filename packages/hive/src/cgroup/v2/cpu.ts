import { parseKeyValue, pick } from "../parse.ts";

export interface CpuRaw {
	usageNs: number | null;
	periods: number | null;
	throttledPeriods: number | null;
	throttledNs: number | null;
}

/** cpu.stat on v2: usage_usec always; nr_periods/nr_throttled/throttled_usec only with the cpu controller enabled. */
export function parseCpuStat(text: string): CpuRaw {
	const m = parseKeyValue(text, "cpu.stat");
	const usage = pick(m, "usage_usec");
	const throttled = pick(m, "throttled_usec");
	return {
		usageNs: usage === null ? null : usage * 1000,
		periods: pick(m, "nr_periods"),
		throttledPeriods: pick(m, "nr_throttled"),
		throttledNs: throttled === null ? null : throttled * 1000,
	};
}

/** Value for cpu.max: quota and period in µs; cores=null means no limit. */
export function formatCpuMax(cores: number | null, periodUs = 100_000): string {
	if (cores === null) return `max ${periodUs}`;
	return `${Math.max(1000, Math.round(cores * periodUs))} ${periodUs}`;
}

