/** Node's timers hold at most 2^31 − 1 ms (~24.8 days); a longer one fires at once (TimeoutOverflowWarning). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface LongTimer {
	clear(): void;
}

/**
 * setTimeout for any delay: waits in steps of at most MAX_TIMER_MS, so a
 * 30-day timeout fires after 30 days, not at once. Unref'd: it never keeps
 * the process alive by itself.
 */
export function longTimeout(fn: () => void, ms: number): LongTimer {
	let left = Math.max(0, ms);
	let t: NodeJS.Timeout;
	const step = () => {
		if (left <= MAX_TIMER_MS) {
			t = setTimeout(fn, left);
		} else {
			left -= MAX_TIMER_MS;
			t = setTimeout(step, MAX_TIMER_MS);
		}
		t.unref();
	};
	step();
	return { clear: () => clearTimeout(t) };
}
