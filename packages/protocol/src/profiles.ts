import type { Limits } from "./types.ts";

// Named bundles of limits for the usual kinds of test worker. Flags given with
// a profile override the profile's values.
export const PROFILE_NAMES = ["fast_feedback", "core_integration", "service_integration", "e2e_background"] as const;
export type ProfileName = (typeof PROFILE_NAMES)[number];

export const PROFILES: Record<ProfileName, Limits> = {
	fast_feedback: { memoryBytes: 512 * 2 ** 20, cpu: 0.5, pids: null, timeoutMs: 2 * 60_000 },
	core_integration: { memoryBytes: 2 ** 30, cpu: 0.7, pids: null, timeoutMs: 10 * 60_000 },
	service_integration: { memoryBytes: 2 * 2 ** 30, cpu: 0.8, pids: null, timeoutMs: 20 * 60_000 },
	e2e_background: { memoryBytes: 4 * 2 ** 30, cpu: 0.9, pids: null, timeoutMs: 60 * 60_000 },
};

/** Profile values, overridden field by field by explicit limits (undefined = not given). */
export function resolveLimits(profile: string | null, given: Partial<Limits>): Limits {
	const base: Limits = profile ? { ...PROFILES[profile as ProfileName] } : { cpu: null, memoryBytes: null, pids: null, timeoutMs: null };
	for (const k of ["cpu", "memoryBytes", "pids", "timeoutMs"] as const) {
		if (given[k] !== undefined) base[k] = given[k];
	}
	return base;
}
