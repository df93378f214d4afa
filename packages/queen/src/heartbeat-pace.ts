import type { LivenessRules } from "./liveness.ts";

// Adaptive heartbeats (issue #23): a queen asks its hives to send heartbeats
// no more often than keeps its intake under a target, as Nomad scales each
// client's heartbeat TTL with the number of clients. Pure: the socket tells,
// the registry judges liveness by what each hive was told.

/**
 * The default target: half of one core at the measured cost of a heartbeat of
 * 50 workers (0.23–0.56 ms of queen CPU, docs/BENCHMARKS.md rows 4, 7, 11).
 */
export const DEFAULT_MAX_HEARTBEATS_PER_SECOND = 1000;

/** Paces are told in steps of this, so one hive more or less does not re-tell every hive a new one. */
const STEP_MS = 250;

/**
 * The least interval (ms) at which `hives` hives send at most `maxPerSecond`
 * heartbeats a second in all; 0 while they fit at their own tick.
 */
export function heartbeatPace(hives: number, maxPerSecond: number): number {
	if (!(maxPerSecond > 0) || hives <= maxPerSecond) return 0;
	return Math.ceil(((hives / maxPerSecond) * 1000) / STEP_MS) * STEP_MS;
}

/**
 * Liveness for a hive told to send every `paceMs`: stale after at least three
 * intervals without a word, lost after as many stale-afters as before, so a
 * hive the queen slowed down is never stale for it.
 */
export function pacedLiveness(r: LivenessRules, paceMs: number): LivenessRules {
	const factor = Math.max(1, (3 * paceMs) / r.staleAfterMs);
	return factor === 1 ? r : { staleAfterMs: Math.round(r.staleAfterMs * factor), evictAfterMs: Math.round(r.evictAfterMs * factor) };
}
