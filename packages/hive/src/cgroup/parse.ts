// Tolerant parsers shared by the v1 and v2 cgroup files. Pure: text in, values out.

/** Error that names the cgroup file whose content was malformed. */
export class CgroupParseError extends Error {
	readonly file: string;
	constructor(file: string, detail: string) {
		super(`${file}: ${detail}`);
		this.file = file;
	}
}

/** "key value\n" lines (cpu.stat, memory.stat, memory.events) → map. Malformed lines are errors. */
export function parseKeyValue(text: string, file: string): Map<string, number> {
	const out = new Map<string, number>();
	for (const line of text.split("\n")) {
		if (line === "") continue;
		const sp = line.indexOf(" ");
		const value = sp > 0 ? Number(line.slice(sp + 1)) : Number.NaN;
		if (!Number.isFinite(value)) throw new CgroupParseError(file, `malformed line ${JSON.stringify(line)}`);
		out.set(line.slice(0, sp), value);
	}
	return out;
}

/** A file holding one integer, or "max" (v2) meaning no limit → null. */
export function parseSingleValue(text: string, file: string): number | null {
	const t = text.trim();
	if (t === "max") return null;
	const n = Number(t);
	if (t === "" || !Number.isFinite(n)) throw new CgroupParseError(file, `expected a number, got ${JSON.stringify(t)}`);
	return n;
}

/** Sum of the values of the keys present; null when none is present. */
export function pick(map: Map<string, number>, key: string): number | null {
	return map.get(key) ?? null;
}
