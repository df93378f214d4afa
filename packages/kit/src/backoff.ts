/**
 * Exponential backoff with full jitter: uniform in [50 ms, min(cap, base·2^attempt)].
 * `random` returning 1 gives the ceiling itself (a deterministic schedule).
 */
export function backoffDelay(attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
	const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30));
	return Math.max(50, random() * ceiling);
}
