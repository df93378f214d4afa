import type { Pressure, PsiLine } from "@apiary/protocol";
import { bytesOf, CgroupParseError, malformed, NL, SP, startsWith } from "./parse.ts";

/**
 * cpu.pressure / memory.pressure / io.pressure (and /proc/pressure/*), kernel 4.20+:
 *   some avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 * "full" for cpu appeared in 5.13; absent means not measured (null).
 */
const SOME = bytesOf("some ");
const FULL = bytesOf("full ");
const KEYS = ["avg10=", "avg60=", "avg300=", "total="].map(bytesOf);
const vals = new Float64Array(4);

/** Scanned from the read buffer b[0..n) (three of these per worker per tick). */
export function scanPressure(b: Uint8Array, n: number, file = "pressure"): Pressure {
	let some: PsiLine | null = null;
	let full: PsiLine | null = null;
	let i = 0;
	while (i < n) {
		let end = i;
		while (end < n && b[end] !== NL) end++;
		if (end > i) {
			const isSome = startsWith(b, i, SOME);
			if (!isSome && !startsWith(b, i, FULL)) throw malformed(file, b, i, end);
			let at = i + 5;
			for (let k = 0; k < 4; k++) {
				// the key, then digits with at most one "."; exact as Number() (v / 10^d)
				const key = KEYS[k]!;
				for (let j = 0; j < key.length; j++, at++) if (at >= end || b[at] !== key[j]) throw malformed(file, b, i, end);
				let v = 0;
				let scale = 1;
				let dot = false;
				const from = at;
				for (; at < end; at++) {
					const c = b[at]!;
					if (c === SP) break;
					if (c === 46 && !dot) dot = true;
					else if (c >= 48 && c <= 57) {
						v = v * 10 + (c - 48);
						if (dot) scale *= 10;
					} else throw malformed(file, b, i, end);
				}
				if (at === from || (dot && scale === 1)) throw malformed(file, b, i, end);
				vals[k] = v / scale;
				at++;
			}
			const psi: PsiLine = { avg10: vals[0]!, avg60: vals[1]!, avg300: vals[2]!, totalUs: vals[3]! };
			if (isSome) some = psi;
			else full = psi;
		}
		i = end + 1;
	}
	if (!some) throw new CgroupParseError(file, "no 'some' line");
	return { some, full };
}

/** The string form of scanPressure. */
export function parsePressure(text: string, file = "pressure"): Pressure {
	return scanPressure(bytesOf(text), text.length, file);
}
