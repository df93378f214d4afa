import type { Pressure, PsiLine } from "@apiary/protocol";
import { CgroupParseError } from "./parse.ts";

/**
 * cpu.pressure / memory.pressure / io.pressure (and /proc/pressure/*), kernel 4.20+:
 *   some avg10=0.00 avg60=0.00 avg300=0.00 total=0
 *   full avg10=0.00 avg60=0.00 avg300=0.00 total=0
 * "full" for cpu appeared in 5.13; absent means not measured (null).
 */
const PSI_LINE = /^(some|full) avg10=(\d+(?:\.\d+)?) avg60=(\d+(?:\.\d+)?) avg300=(\d+(?:\.\d+)?) total=(\d+)$/;

export function parsePressure(text: string, file = "pressure"): Pressure {
	let some: PsiLine | null = null;
	let full: PsiLine | null = null;
	for (const line of text.split("\n")) {
		if (line === "") continue;
		const m = PSI_LINE.exec(line);
		if (!m) throw new CgroupParseError(file, `malformed line ${JSON.stringify(line)}`);
		const psi = { avg10: Number(m[2]), avg60: Number(m[3]), avg300: Number(m[4]), totalUs: Number(m[5]) };
		if (m[1] === "some") some = psi;
		else full = psi;
	}
	if (!some) throw new CgroupParseError(file, "no 'some' line");
	return { some, full };
}
