// Durations and sizes as people type them on the command line.

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "500ms", "2s", "5m", "1h", "7d", "1.5s" → milliseconds. A bare number is seconds. */
export function parseDuration(text: string): number {
	const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
	if (!m) throw new Error(`not a duration: ${JSON.stringify(text)} (use e.g. 500ms, 2s, 5m, 1h, 7d)`);
	const ms = Number(m[1]) * durationUnits[m[2] ?? "s"]!;
	return Math.round(ms);
}

const sizeUnits: Record<string, number> = { "": 1, B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/** "512M", "1G", "64K", "1.5G", "1GiB", "4096" → bytes (binary units). */
export function parseSize(text: string): number {
	const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
	if (!m) throw new Error(`not a size: ${JSON.stringify(text)} (use e.g. 512M, 1G, 64K)`);
	return Math.round(Number(m[1]) * sizeUnits[m[2]!.toUpperCase()]!);
}

export function formatBytes(n: number | null | undefined): string {
	if (n == null) return "-";
	const units = ["B", "K", "M", "G", "T"];
	let v = n;
	let i = 0;
	while (v >= 1024 && i < units.length - 1) {
		v /= 1024;
		i++;
	}
	return `${v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1)}${units[i]}`;
}

export function formatDuration(ms: number | null | undefined): string {
	if (ms == null) return "-";
	if (ms < 1000) return `${Math.round(ms)}ms`;
	const s = ms / 1000;
	if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)}s`;
	const m = Math.floor(s / 60);
	if (m < 60) return `${m}m${Math.floor(s % 60)}s`;
	return `${Math.floor(m / 60)}h${m % 60}m`;
}

/** An argv as a person would type it back into a shell: each argument that needs it single-quoted. */
export function shellJoin(argv: readonly string[]): string {
	return argv.map((a) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`)).join(" ");
}
