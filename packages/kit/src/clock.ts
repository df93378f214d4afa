import { performance } from "node:perf_hooks";

/** Monotonic and wall clocks, injectable so tests drive time by hand. */
export interface Clock {
	/** Monotonic ms: rates, timeouts, liveness and expiry never follow wall-clock jumps. */
	now(): number;
	/** Wall-clock ms since the epoch: only for timestamps shown to people. */
	wall(): number;
}

export const systemClock: Clock = { now: () => performance.now(), wall: () => Date.now() };

/** A clock that moves only when told to (tests). */
export class ManualClock implements Clock {
	private mono: number;
	private epoch: number;
	constructor(wallStart = Date.parse("2026-01-01T00:00:00Z"), monoStart = 1000) {
		this.mono = monoStart;
		this.epoch = wallStart;
	}
	now(): number {
		return this.mono;
	}
	wall(): number {
		return this.epoch;
	}
	advance(ms: number): void {
		this.mono += ms;
		this.epoch += ms;
	}
}
