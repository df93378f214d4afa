// Tolerant parsers shared by the v1 and v2 cgroup files. Pure: text in, values out.

/** Error that names the cgroup file whose content was malformed. */
export class CgroupParseError extends Error {
	readonly file: string;
	constructor(file: string, detail: string) {
		super(`${file}: ${detail}`);
		this.file = file;
	}
}

/**
 * "key value\n" lines (cpu.stat, memory.stat, memory.events) → the values of
 * `keys` (absent keys are absent). Scanned by hand: memory.stat has dozens of
 * lines per worker per tick. A line without a value, or a wanted key whose
 * value is not a number, is an error naming the file.
 */
export function parseKeyValue(text: string, file: string, keys?: readonly string[]): Map<string, number> {
	const out = new Map<string, number>();
	let i = 0;
	while (i < text.length) {
		let end = text.indexOf("\n", i);
		if (end < 0) end = text.length;
		if (end > i) {
			const sp = text.indexOf(" ", i);
			if (sp < 0 || sp >= end - 1 || sp === i) throw new CgroupParseError(file, `malformed line ${JSON.stringify(text.slice(i, end))}`);
			const k = text.slice(i, sp);
			if (!keys || keys.includes(k)) {
				const v = Number(text.slice(sp + 1, end));
				if (!Number.isFinite(v)) throw new CgroupParseError(file, `malformed line ${JSON.stringify(text.slice(i, end))}`);
				out.set(k, v);
			}
		}
		i = end + 1;
	}
	return out;
}

/**
 * Only `keys` from a long "key value" file (memory.stat has dozens of lines),
 * found by searching for each key at a line start rather than walking every
 * line. A found key with a malformed value is an error naming the file.
 */
export function findKeys(text: string, file: string, keys: readonly string[]): Map<string, number> {
	const out = new Map<string, number>();
	for (const k of keys) {
		let at = text.startsWith(`${k} `) ? 0 : text.indexOf(`\n${k} `);
		if (at < 0) continue;
		if (at > 0 || text[0] === "\n") at++;
		const from = at + k.length + 1;
		let end = text.indexOf("\n", from);
		if (end < 0) end = text.length;
		const v = Number(text.slice(from, end));
		if (text.slice(from, end) === "" || !Number.isFinite(v)) throw new CgroupParseError(file, `malformed line ${JSON.stringify(text.slice(at, end))}`);
		out.set(k, v);
	}
	return out;
}

/** The value of `key`, or null when the file has no such key (not measured). */
export function pick(map: Map<string, number>, key: string): number | null {
	return map.get(key) ?? null;
}
