// Pure parsers for procfs files used by the `none` driver and by tests.

export interface ProcStat {
	pid: number;
	comm: string;
	state: string;
	ppid: number;
	pgrp: number;
	/** user + system time in clock ticks */
	utimeTicks: number;
	stimeTicks: number;
	/** process start, clock ticks since boot (with pid, identifies a process across pid reuse) */
	startTicks: number;
	rssPages: number;
}

/** /proc/<pid>/stat. comm may contain spaces and parentheses, so split after the last ")". */
export function parseProcStat(text: string): ProcStat {
	const open = text.indexOf("(");
	const close = text.lastIndexOf(")");
	if (open < 0 || close < open) throw new Error(`malformed /proc/<pid>/stat: ${JSON.stringify(text.slice(0, 80))}`);
	const rest = text
		.slice(close + 2)
		.trim()
		.split(" ");
	// rest[0] is field 3 (state); field n is rest[n - 3].
	const f = (n: number) => Number(rest[n - 3]);
	return {
		pid: Number(text.slice(0, open).trim()),
		comm: text.slice(open + 1, close),
		state: rest[0]!,
		ppid: f(4),
		pgrp: f(5),
		utimeTicks: f(14),
		stimeTicks: f(15),
		startTicks: f(22),
		rssPages: f(24),
	};
}

/** /proc/<pid>/io: read_bytes/write_bytes reach the block layer; syscr/syscw count read/write syscalls. */
export function parseProcIo(text: string): { readBytes: number; writeBytes: number; syscr: number; syscw: number } {
	const m = new Map<string, number>();
	for (const line of text.split("\n")) {
		const i = line.indexOf(": ");
		if (i > 0) m.set(line.slice(0, i), Number(line.slice(i + 2)));
	}
	return { readBytes: m.get("read_bytes") ?? 0, writeBytes: m.get("write_bytes") ?? 0, syscr: m.get("syscr") ?? 0, syscw: m.get("syscw") ?? 0 };
}

/** /proc/<pid>/cgroup → list of [hierarchy-id, controllers, path]. */
export function parseProcCgroup(text: string): { id: string; controllers: string[]; path: string }[] {
	return text
		.split("\n")
		.filter((l) => l !== "")
		.map((l) => {
			const a = l.indexOf(":");
			const b = l.indexOf(":", a + 1);
			return {
				id: l.slice(0, a),
				controllers: l
					.slice(a + 1, b)
					.split(",")
					.filter(Boolean),
				path: l.slice(b + 1),
			};
		});
}

// Linux reports times in USER_HZ, which is 100 on every mainstream architecture.
export const CLK_TCK = 100;
export const PAGE_SIZE = 4096;
