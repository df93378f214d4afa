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

/** A process's argv, [] when gone. */
export function procCmdline(proc: string, pid: number | null): string[] {
	if (pid === null) return [];
	const text = readOptional(`${proc}/${pid}/cmdline`);
	return text ? text.split("\0").filter(Boolean) : [];
}
