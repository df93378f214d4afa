import type { ExitReason, ExitRecord } from "@apiary/protocol";
import type { RawSample } from "./cgroup/driver.ts";

export interface ExitFacts {
	code: number | null;
	signal: string | null;
	/** Set when the hive ended it (killed, timeout) or found it gone (lost). */
	killReason: ExitReason | null;
	/** The cgroup's last reading (OOM kills, peak memory), null when none was had. */
	final: RawSample | null;
	message: string | null;
	startedAt: string;
	/** Wall-clock ms when the end was seen. */
	endedWall: number;
	/**
	 * The end was not seen (the hive was down): null times, and the bounds
	 * that are known instead — last known alive (wall ms, null if never) and
	 * found gone (endedWall).
	 */
	unobserved?: { lastAliveWall: number | null };
	/** Stopped by the hive: whether it ended within its grace period; null when the hive did not stop it. */
	graceful: boolean | null;
	/** The highest working set the ticks saw (null: never measured). */
	peakWorkingSetBytes?: number | null;
}

/**
 * What ended a worker, from what was seen of it: the hive's own reason
 * first, then an OOM kill the kernel counted, then a signal, else a plain
 * exit. OOM is null (not false) when the kernel gave no count.
 */
export function buildExitRecord(f: ExitFacts): ExitRecord {
	const oomKills = f.final?.oomKills ?? null;
	const oomKilled = oomKills === null ? null : oomKills > 0;
	let reason: ExitReason;
	if (f.killReason) reason = f.killReason;
	else if (oomKilled) reason = "oom";
	else if (f.signal) reason = "signaled";
	else reason = "exited";
	return {
		exitCode: f.code,
		signal: f.signal,
		reason,
		message: f.message,
		startedAt: f.startedAt,
		endedAt: f.unobserved ? null : new Date(f.endedWall).toISOString(),
		durationMs: f.unobserved ? null : Math.max(0, f.endedWall - Date.parse(f.startedAt)),
		...(f.unobserved
			? {
					endedAfter: new Date(Math.max(Date.parse(f.startedAt), f.unobserved.lastAliveWall ?? 0)).toISOString(),
					endedBefore: new Date(f.endedWall).toISOString(),
				}
			: {}),
		peakMemoryBytes: f.final?.memoryPeak ?? null,
		peakWorkingSetBytes: f.peakWorkingSetBytes ?? null,
		oomKilled,
		graceful: f.graceful,
	};
}
