import type { Pressure, PsiLine } from "@apiary/protocol";
import { CgroupParseError } from "./parse.ts";

/**
 * cpu.pressure / memory.pressure / io.pressure (and /proc/pressure/*), kernel 4.20+:
 *   some avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 * "full" for cpu appeared in 5.13; absent means not measured (null).
 */
const KEYS = ["avg10=", "avg60=", "avg300=", "total="] as const;

/** Parsed by hand (three of these per worker per tick): each line's four values after their keys. */
export function parsePressure(text: string, file = "pressure"): Pressure {
	let some: PsiLine | null = null;
	let full: PsiLine | null = null;
	let i = 0;
	while (i < text.length) {
		let end = text.indexOf("\n", i);
		if (end < 0) end = text.length;
		if (end > i) {
			const kind = text.startsWith("some ", i) ? "some" : text.startsWith("full ", i) ? "full" : null;
			const v: number[] = [];
			let at = i + 5;
			for (const k of KEYS) {
				if (kind === null || !text.startsWith(k, at)) break;
				at += k.length;
				let stop = text.indexOf(" ", at);
				if (stop < 0 || stop > end) stop = end;
				const n = Number(text.slice(at, stop));
				if (at === stop || !Number.isFinite(n)) break;
				v.push(n);
				at = stop + 1;
			}
			if (v.length !== 4) throw new CgroupParseError(file, `malformed line ${JSON.stringify(text.slice(i, end))}`);
			const psi = { avg10: v[0]!, avg60: v[1]!, avg300: v[2]!, totalUs: v[3]! };
			if (kind === "some") some = psi;
			else full = psi;
		}
		i = end + 1;
	}
	if (!some) throw new CgroupParseError(file, "no 'some' line");
	return { some, full };
}
