import { setTimeout as sleep } from "node:timers/promises";
import { type Clock, systemClock } from "./clock.ts";

export interface WaitOptions {
	timeoutMs: number;
	intervalMs?: number;
	clock?: Clock;
}

/**
 * Polls `done` until it is true or the deadline (on the monotonic clock)
 * passes; returns whether it became true. `each` runs between polls (e.g.
 * kill again what forked since the last look).
 */
export async function waitUntil(done: () => boolean | Promise<boolean>, o: WaitOptions, each?: () => void): Promise<boolean> {
	const clock = o.clock ?? systemClock;
	const deadline = clock.now() + o.timeoutMs;
	for (;;) {
		if (await done()) return true;
		if (clock.now() >= deadline) return false;
		each?.();
		await sleep(o.intervalMs ?? 5);
	}
}
