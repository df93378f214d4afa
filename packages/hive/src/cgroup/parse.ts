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

/** Sum of the values of the keys present; null when none is present. */
export function pick(map: Map<string, number>, key: string): number | null {
	return map.get(key) ?? null;
}
