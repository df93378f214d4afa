import type { WorkerInfo } from "@apiary/protocol";

/** A worker as the API shows it: its environment's keys, never its values (they may be secrets). */
export function shown(w: WorkerInfo): WorkerInfo {
	const env: Record<string, string> = {};
	for (const k of Object.keys(w.env)) env[k] = "<redacted>";
	return { ...w, env };
}
