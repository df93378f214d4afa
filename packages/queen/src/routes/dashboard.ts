import { readFileSync } from "node:fs";
import type { FastifyInstance } from "fastify";

// The dashboard is three static files, read once; no build step.
const dir = new URL("../dashboard/", import.meta.url);
const files: Record<string, [string, string]> = {
	"/": ["index.html", "text/html; charset=utf-8"],
	"/dashboard/app.js": ["app.js", "text/javascript; charset=utf-8"],
	"/dashboard/style.css": ["style.css", "text/css; charset=utf-8"],
};

export async function dashboardRoutes(app: FastifyInstance): Promise<void> {
	for (const [path, [file, type]] of Object.entries(files)) {
		const body = readFileSync(new URL(file, dir));
		app.get(path, { config: { role: "open" }, schema: { hide: true } as object }, async (_req, reply) =>
			reply.type(type).header("cache-control", "no-cache").send(body),
		);
	}
}
