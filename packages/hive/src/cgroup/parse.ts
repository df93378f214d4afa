// Parsers shared by the v1 and v2 cgroup files. Pure: bytes (or text) in,
// values out. The tick parses straight from the buffer a StatFile read into,
// without decoding it to a string: with ~14 files per worker per tick,
// decoding and slicing strings was most of what sampling cost above the raw
// reads themselves (docs/BENCHMARKS.md). The string forms wrap the byte
// scanners, for tests and one-off reads.

/** Error that names the cgroup file whose content was malformed. */
export class CgroupParseError extends Error {
	override name = "CgroupParseError";
	readonly file: string;
	constructor(file: string, detail: string) {
		super(`${file}: ${detail}`);
		this.file = file;
	}
}

export const NL = 10;
export const SP = 32;

/** The Latin-1 bytes of a string (cgroup files are ASCII). */
export const bytesOf = (s: string): Buffer => Buffer.from(s, "latin1");

/** The error for line b[from..to) of `file`. */
export function malformed(file: string, b: Uint8Array, from: number, to: number): CgroupParseError {
	return new CgroupParseError(file, `malformed line ${JSON.stringify(Buffer.from(b.subarray(from, to)).toString("latin1"))}`);
}

/** Whether b at `at` starts with the bytes of `s`. */
export function startsWith(b: Uint8Array, at: number, s: Uint8Array): boolean {
	if (at + s.length > b.length) return false;
	for (let j = 0; j < s.length; j++) if (b[at + j] !== s[j]) return false;
	return true;
}

/** b[from..to) as a decimal integer (optionally negative), or NaN. */
export function integer(b: Uint8Array, from: number, to: number): number {
	const neg = b[from] === 45; // "-"
	if (neg) from++;
	if (from >= to) return Number.NaN;
	let v = 0;
	for (let i = from; i < to; i++) {
		const c = b[i]! - 48;
		if (c < 0 || c > 9) return Number.NaN;
		v = v * 10 + c;
	}
	return neg ? -v : v;
}

/** out[0..len) = null (a loop: Array#fill costs more than the scan of a short file). */
function clear(out: (number | null)[], len: number): void {
	for (let k = 0; k < len; k++) out[k] = null;
}

/** The keys wanted from a "key value" file, encoded once. */
export class Keys {
	readonly names: readonly string[];
	private readonly bytes: Uint8Array[];
	/** "key " (text and bytes) and "\nkey ", for findKeyValues. */
	readonly atStart: string[];
	readonly atStartBytes: Buffer[];
	readonly atLine: string[];
	constructor(names: readonly string[]) {
		this.names = names;
		this.bytes = names.map(bytesOf);
		this.atStart = names.map((k) => `${k} `);
		this.atStartBytes = this.atStart.map(bytesOf);
		this.atLine = names.map((k) => `\n${k} `);
	}

	/** Index of the key b[from..to), or -1. */
	find(b: Uint8Array, from: number, to: number): number {
		const len = to - from;
		next: for (let k = 0; k < this.bytes.length; k++) {
			const kb = this.bytes[k]!;
			if (kb.length !== len) continue;
			for (let j = 0; j < len; j++) if (b[from + j] !== kb[j]) continue next;
			return k;
		}
		return -1;
	}
}

/**
 * "key value\n" lines (cpu.stat, memory.stat, memory.events …) in b[0..n):
 * out[k] becomes the value of keys.names[k], or null when the file has no
 * such key (not measured). One pass over the bytes; every line must be
 * "key value" and a wanted key's value a decimal integer, or the error names
 * the file.
 */
export function scanKeyValues(b: Uint8Array, n: number, file: string, keys: Keys, out: (number | null)[]): (number | null)[] {
	clear(out, keys.names.length);
	let i = 0;
	while (i < n) {
		let sp = i;
		while (sp < n && b[sp] !== SP && b[sp] !== NL) sp++;
		if (sp >= n || b[sp] === NL) {
			if (sp > i) throw malformed(file, b, i, sp); // a key without a value
			i = sp + 1;
			continue;
		}
		let end = sp + 1;
		while (end < n && b[end] !== NL) end++;
		if (sp === i || end === sp + 1) throw malformed(file, b, i, end);
		const k = keys.find(b, i, sp);
		if (k >= 0) {
			const v = integer(b, sp + 1, end);
			if (Number.isNaN(v)) throw malformed(file, b, i, end);
			out[k] = v;
		}
		i = end + 1;
	}
	return out;
}

/**
 * Only `keys` from a long "key value" file (memory.stat has dozens of lines
 * per worker per tick); out[k] as in scanKeyValues. A found key with a
 * malformed value is an error naming the file.
 *
 * `hints` (one per key, kept by the caller between reads of the same file)
 * remembers where each key's line began: the layout only moves when a value
 * before it changes width, so most reads check the remembered place and
 * search nothing. Otherwise the key is searched for at a line start.
 */
export function findKeyValues(b: Buffer, n: number, file: string, keys: Keys, out: (number | null)[], hints?: Int32Array): (number | null)[] {
	clear(out, keys.names.length);
	let text: string | null = null;
	for (let k = 0; k < keys.names.length; k++) {
		const key = keys.atStart[k]!;
		let at = hints ? hints[k]! : -1;
		if (!(at >= 0 && (at === 0 || b[at - 1] === NL) && at + key.length <= n && startsWith(b, at, keys.atStartBytes[k]!))) {
			// V8's string search beats Buffer#indexOf here: that one pays a binding
			// call per search. Latin-1 keeps positions equal to byte offsets.
			text ??= b.toString("latin1", 0, n);
			at = text.startsWith(key) ? 0 : text.indexOf(keys.atLine[k]!);
			if (at < 0) {
				if (hints) hints[k] = -1;
				continue;
			}
			if (at > 0 || text.charCodeAt(0) === NL) at++;
			if (hints) hints[k] = at;
		}
		const from = at + key.length;
		let end = from;
		while (end < n && b[end] !== NL) end++;
		const v = integer(b, from, end);
		if (Number.isNaN(v)) throw malformed(file, b, at, end);
		out[k] = v;
	}
	return out;
}

/** The string form of scanKeyValues: the wanted keys present, as a Map. */
export function parseKeyValue(text: string, file: string, keys: readonly string[]): Map<string, number> {
	const table = new Keys(keys);
	const vals = scanKeyValues(bytesOf(text), text.length, file, table, []);
	const out = new Map<string, number>();
	vals.forEach((v, k) => {
		if (v !== null) out.set(keys[k]!, v);
	});
	return out;
}

/** The value of `key`, or null when the file has no such key (not measured). */
export function pick(map: Map<string, number>, key: string): number | null {
	return map.get(key) ?? null;
}
