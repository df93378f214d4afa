import { readFileSync } from "node:fs";

/** "127.0.0.1:7071", "[::1]:7071", ":7071", "7071" → host and port. */
export function parseListen(text: string, defaultHost = "127.0.0.1"): { host: string; port: number } {
	const m = /^(?:\[([^\]]+)\]|([^:]*))?:?(\d{1,5})$/.exec(text.trim());
	const port = m ? Number(m[3]) : Number.NaN;
	if (!m || port > 65535) throw new Error(`--listen: ${JSON.stringify(text)} is not HOST:PORT`);
	return { host: m[1] ?? (m[2] || defaultHost), port };
}

export function isLoopback(host: string): boolean {
	return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The token from --token-file, else APIARY_TOKEN, else null. */
export function loadToken(file: string | undefined, env: NodeJS.ProcessEnv = process.env): string | null {
	if (file) {
		const t = readFileSync(file, "utf8").trim();
		if (!t) throw new Error(`--token-file ${file} is empty`);
		return t;
	}
	return env.APIARY_TOKEN?.trim() || null;
}

/**
 * The CA a client verifies a daemon's certificate against: --ca FILE, else
 * APIARY_CA, else undefined (the system's CAs).
 */
export function loadCa(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
	const f = file ?? (env.APIARY_CA?.trim() || undefined);
	return f ? readFileSync(f) : undefined;
}
