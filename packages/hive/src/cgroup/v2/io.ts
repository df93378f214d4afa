import { CgroupParseError } from "../parse.ts";

export interface IoRaw {
	readBytes: number;
	writeBytes: number;
	readOps: number;
	writeOps: number;
}

/** io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N" per device, summed. */
export function parseIoStat(text: string): IoRaw {
	const out = { readBytes: 0, writeBytes: 0, readOps: 0, writeOps: 0 };
	for (const line of text.split("\n")) {
		if (line === "") continue;
		const fields = line.split(" ");
		if (!/^\d+:\d+$/.test(fields[0]!)) throw new CgroupParseError("io.stat", `malformed line ${JSON.stringify(line)}`);
		for (let i = 1; i < fields.length; i++) {
			const f = fields[i]!;
			const eq = f.indexOf("=");
			if (eq < 0) continue; // io.stat may grow other sections (e.g. cost.*): ignore
			const v = Number(f.slice(eq + 1));
			if (!Number.isFinite(v)) throw new CgroupParseError("io.stat", `malformed field ${JSON.stringify(f)}`);
			switch (f.slice(0, eq)) {
				case "rbytes":
					out.readBytes += v;
					break;
				case "wbytes":
					out.writeBytes += v;
					break;
				case "rios":
					out.readOps += v;
					break;
				case "wios":
					out.writeOps += v;
					break;
			}
		}
	}
	return out;
}
