import type { Limits } from "@apiary/protocol";

// Named bundles of limits for the usual kinds of test worker. Flags given with
// a profile override the profile's values.
export const PROFILES: Record<string, Limits> = {
	fast_feedback: { memoryBytes: 512 * 2 ** 20, cpu: 0.5, pids: null, timeoutMs: 2 * 60_000 },
	core_integration: { memoryBytes: 2 ** 30, cpu: 0.7, pids: null, timeoutMs: 10 * 60_000 },
	service_integration: { memoryBytes: 2 * 2 ** 30, cpu: 0.8, pids: null, timeoutMs: 20 * 60_000 },
	e2e_background: { memoryBytes: 4 * 2 ** 30, cpu: 0.9, pids: null, timeoutMs: 60 * 60_000 },
};

export const PROFILE_NAMES = Object.keys(PROFILES);

/** Profile values, overridden field by field by explicit limits (undefined = not given). */
export function resolveLimits(profile: string | null, given: Partial<Limits>): Limits {
	const base: Limits = profile ? { ...PROFILES[profile]! } : { cpu: null, memoryBytes: null, pids: null, timeoutMs: null };
	for (const k of ["cpu", "memoryBytes", "pids", "timeoutMs"] as const) {
		if (given[k] !== undefined) base[k] = given[k];
	}
	return base;
}
