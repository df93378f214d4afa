import type { Pressure, PsiLine } from "@apiary/protocol";
import { CgroupParseError } from "./parse.ts";

/**
 * cpu.pressure / memory.pressure / io.pressure (and /proc/pressure/*), kernel 4.20+:
 *   some avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 * "full" for cpu appeared in 5.13; absent means not measured (null).
 */
export function parsePressure(text: string, file = "pressure"): Pressure {
	let some: PsiLine | null = null;
	let full: PsiLine | null = null;
	for (const line of text.split("\n")) {
		if (line === "") continue;
		const [kind, ...fields] = line.split(" ");
		const v: Record<string, number> = {};
		for (const f of fields) {
			const [k, n] = f.split("=");
			v[k!] = Number(n);
		}
		const psi = { avg10: v.avg10!, avg60: v.avg60!, avg300: v.avg300!, totalUs: v.total! };
		if (Object.values(psi).some((n) => n === undefined || !Number.isFinite(n))) {
			throw new CgroupParseError(file, `malformed line ${JSON.stringify(line)}`);
		}
		if (kind === "some") some = psi;
		else if (kind === "full") full = psi;
	}
	if (!some) throw new CgroupParseError(file, "no 'some' line");
	return { some, full };
}
