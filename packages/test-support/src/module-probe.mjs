// Preloaded with `node --import`: records every module a process resolves
// and writes the list to $APIARY_PROBE_OUT when it exits (client-light tests).
import { writeFileSync } from "node:fs";
import { registerHooks } from "node:module";

const urls = new Set();
registerHooks({
	resolve(specifier, context, next) {
		const r = next(specifier, context);
		urls.add(r.url);
		return r;
	},
});
process.on("exit", () => writeFileSync(process.env.APIARY_PROBE_OUT, [...urls].join("\n")));
