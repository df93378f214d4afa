import { bytesOf, Keys, scanKeyValues } from "../parse.ts";

export interface CpuRaw {
	usageNs: number | null;
	periods: number | null;
	throttledPeriods: number | null;
	throttledNs: number | null;
}

const CPU_STAT = new Keys(["usage_usec", "nr_periods", "nr_throttled", "throttled_usec"]);

/** cpu.stat on v2, from the read buffer: usage_usec always; nr_periods/nr_throttled/throttled_usec only with the cpu controller enabled. */
export function scanCpuStat(b: Uint8Array, n: number): CpuRaw {
	const [usage, periods, throttledPeriods, throttled] = scanKeyValues(b, n, "cpu.stat", CPU_STAT, []);
	return {
		usageNs: usage == null ? null : usage * 1000,
		periods: periods ?? null,
		throttledPeriods: throttledPeriods ?? null,
		throttledNs: throttled == null ? null : throttled * 1000,
	};
}

export const parseCpuStat = (text: string): CpuRaw => scanCpuStat(bytesOf(text), text.length);

/** Value for cpu.max: quota and period in µs; cores=null means no limit. */
export function formatCpuMax(cores: number | null, periodUs = 100_000): string {
	if (cores === null) return `max ${periodUs}`;
	return `${Math.max(1000, Math.round(cores * periodUs))} ${periodUs}`;
}
