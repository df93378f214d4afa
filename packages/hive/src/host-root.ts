import { join } from "node:path";

/**
 * Where the host's /proc and /sys are: one injectable root (as cAdvisor's
 * rootFs), so tests point every procfs and sysfs read at fixtures and a hive
 * in a container can read the host's through a bind mount.
 */
export interface HostRoot {
	proc: string;
	sys: string;
	/** The host's /etc (its users and groups, for whom workers run as). */
	etc?: string;
}

export function hostRoot(root = "/"): HostRoot {
	return { proc: join(root, "proc"), sys: join(root, "sys"), etc: join(root, "etc") };
}

export const HOST: HostRoot = hostRoot("/");
