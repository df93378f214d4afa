import { afterEach, describe, expect, it, vi } from "vitest";
import { longTimeout, MAX_TIMER_MS } from "../../src/timer.ts";

afterEach(() => vi.useRealTimers());

describe("long timers", () => {
	it("a 30-day timeout fires after exactly 30 days, not at once (Node's timers hold ~24.8 days)", () => {
		vi.useFakeTimers();
		const thirtyDays = 30 * 24 * 3600 * 1000;
		expect(thirtyDays).toBeGreaterThan(MAX_TIMER_MS);
		let fired = 0;
		longTimeout(() => fired++, thirtyDays);
		vi.advanceTimersByTime(thirtyDays - 1);
		expect(fired).toBe(0);
		vi.advanceTimersByTime(1);
		expect(fired).toBe(1);
	});
	it("clear stops it at any step", () => {
		vi.useFakeTimers();
		let fired = 0;
		const t = longTimeout(() => fired++, MAX_TIMER_MS * 2 + 5);
		vi.advanceTimersByTime(MAX_TIMER_MS + 10);
		t.clear();
		vi.advanceTimersByTime(MAX_TIMER_MS * 3);
		expect(fired).toBe(0);
	});
});
