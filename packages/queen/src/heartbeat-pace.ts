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

/** A hive message waiting this long in the intake (intake.ts): the queen is behind. */
export const BEHIND_MS = 1000;

export interface GovernorOptions {
	/** --max-heartbeats-per-second: the most it ever asks for. */
	max: number;
	/** The least it lowers the target to (default max ÷ 20). */
	floor?: number;
	/** Busier than this (the event loop's share of the period), the target comes down (default 0.75). */
	high?: number;
	/** Less busy than this, it goes back up (default 0.5). */
	low?: number;
	/** Where a cut aims the loop's busy share (default 0.6). */
	aim?: number;
}

/**
 * The target a queen paces its hives to, moved by what it measures of
 * itself: the configured most is a guess at this machine's cost per
 * heartbeat (it was 2–4× off on the 2-core bench host with the simulator
 * beside the queen: docs/BENCHMARKS.md row 16), and a queen whose event loop
 * is full answers spawns and exits late. Each period (the daemon's 2 s) it
 * is given the loop's busy share, the heartbeats taken a second and the
 * share of the period spent applying them. Busy past `high` with heartbeats
 * a real part of it, the target becomes the intake that would have kept the
 * loop at `aim` (proportional, at most halving at once). It is computed from
 * what came in, not from the last target, so a cut the hives have not yet
 * heard of is not cut again. Below `low` it rises by a quarter a period,
 * or faster, up to double, where what a heartbeat costs now says the loop
 * has room for twice that many at `aim`: after a surge leaves, a target cut
 * to a quarter comes back in a few periods, not in the 10–20 s that a
 * quarter a period took. The room is reckoned from the heartbeats' own share
 * and cost, and only half of it is taken: a heartbeat's cost measured at a
 * low intake nearly doubled at a high one (0.39 → 0.68 ms after a 3× join),
 * and rising to the whole room overshot into the next cut (500 → 1000 →
 * 500 in 6 s: docs/BENCHMARKS.md row 16). Heartbeats that are not what keeps the loop busy (a burst
 * of joins, a flood of queries) are not cut for it.
 * Messages waiting in the intake (intake.ts) longer than BEHIND_MS mean the
 * queen is behind whatever its busy share says: the target is cut then if
 * heartbeats are a real part of the work, or if paced heartbeats are most of
 * what waits (a queen busy reading other queens' events while its hives'
 * heartbeats pile up: 48,000 waited 33 s in one 10,000-hive run); not for a
 * join's first snapshots or a mass leave's byes, which no pace relieves.
 * Behind, it is never raised.
 */
export class PaceGovernor {
	private readonly o: Required<GovernorOptions>;
	private current: number;

	constructor(o: GovernorOptions) {
		this.o = { floor: Math.max(1, o.max / 20), high: 0.75, low: 0.5, aim: 0.6, ...o };
		this.current = o.max;
	}

	get target(): number {
		return this.current;
	}

	/**
	 * One period's measures, how long the oldest waiting hive message has
	 * waited, and what share of the waiting messages are paced heartbeats;
	 * answers the target for the next.
	 */
	observe(busy: number, heartbeatsPerSec: number, heartbeatShare: number, waitMs = 0, pacedWaitingShare = 0): number {
		const { max, floor, high, low, aim } = this.o;
		const behind = waitMs > BEHIND_MS;
		const mostlyHeartbeats = heartbeatShare >= 0.25 * busy;
		// Behind with paced heartbeats most of what waits: a slower pace is what relieves it, whatever else keeps the loop busy.
		const heartbeatsPileUp = behind && pacedWaitingShare >= 0.5;
		if (heartbeatsPerSec > 0 && ((mostlyHeartbeats && (behind || busy >= high)) || heartbeatsPileUp)) {
			const want = (heartbeatsPerSec * aim) / Math.max(busy, high);
			this.current = Math.max(floor, Math.min(this.current, Math.max(want, this.current / 2)));
		} else if (busy < low && !behind) {
			this.current = Math.min(max, Math.max(this.current * 1.25, Math.min(this.current * 2, this.room(busy, heartbeatsPerSec, heartbeatShare) / 2)));
		}
		return this.current;
	}

	/**
	 * The intake that would bring the loop to `aim`: what a heartbeat costs now
	 * (the share applying them ÷ how many) into what the rest of the load
	 * leaves. 0 with none taken (nothing to go by).
	 */
	private room(busy: number, heartbeatsPerSec: number, heartbeatShare: number): number {
		if (!(heartbeatsPerSec > 0 && heartbeatShare > 0)) return 0;
		return (this.o.aim - Math.max(0, busy - heartbeatShare)) / (heartbeatShare / heartbeatsPerSec);
	}
}
