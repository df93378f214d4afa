import { parseProcStat } from "./proc.ts";
import { readOptional } from "./statfile.ts";

// The few per-process facts the supervisor reads from procfs, under an
// injectable /proc.

/** A process's start time (clock ticks since boot), which with its pid identifies it across pid reuse; null when gone or a zombie. */
export function procStartTicks(proc: string, pid: number): number | null {
	const text = readOptional(`${proc}/${pid}/stat`);
	if (text === null) return null;
	const s = parseProcStat(text);
	return s.state === "Z" ? null : s.startTicks;
}
