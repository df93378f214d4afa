import { ID_PATTERN } from "@apiary/protocol";
import type { FastifyInstance } from "fastify";
import type { Registry } from "../registry.ts";

const idParam = { type: "object", required: ["id"], properties: { id: { type: "string", pattern: ID_PATTERN, maxLength: 63 } } } as const;

const workersQuery = {
	type: "object",
	additionalProperties: false,
	properties: {
		hive: { type: "string", pattern: ID_PATTERN },
		state: { type: "string", enum: ["running", "exited", "evicted", "all"] },
		label: { type: "string", pattern: "^[^=]+=.*$", maxLength: 512 },
	},
} as const;

const gpusQuery = {
	type: "object",
	additionalProperties: false,
	properties: {
		free: { type: "string", enum: ["true", "false"] },
		minMemoryMiB: { type: "string", pattern: "^[0-9]{1,9}$" },
		name: { type: "string", maxLength: 128 },
		hive: { type: "string", pattern: ID_PATTERN },
	},
} as const;

const notFound = (what: string) => ({ statusCode: 404, error: "Not Found", message: `no ${what}` });

/** Hives, workers and GPUs: the read side of the registry. */
export async function fleetRoutes(app: FastifyInstance, o: { registry: Registry }): Promise<void> {
	const { registry } = o;
	app.get("/v1/hives", async () => registry.listHives());
	app.get("/v1/hives/:id", { schema: { params: idParam } }, async (req, reply) => {
		const { id } = req.params as { id: string };
		return registry.getHive(id) ?? reply.code(404).send(notFound(`hive ${id}`));
	});
	app.get("/v1/workers", { schema: { querystring: workersQuery } }, async (req) => {
		const q = req.query as { hive?: string; state?: string; label?: string };
		const i = q.label?.indexOf("=") ?? -1;
		return registry.listWorkers({ hive: q.hive, state: q.state ?? "all", label: q.label ? [q.label.slice(0, i), q.label.slice(i + 1)] : undefined });
	});
	app.get("/v1/workers/:id", { schema: { params: idParam, querystring: { type: "object", additionalProperties: false, properties: { hive: { type: "string", pattern: ID_PATTERN } } } } }, async (req, reply) => {
		const { id } = req.params as { id: string };
		const w = registry.getWorker(id, (req.query as { hive?: string }).hive);
		if (!w) return reply.code(404).send(notFound(`worker ${id}`));
		return { ...w, exits: registry.exitsOf(w.hiveId, w.id) };
	});
	app.get("/v1/gpus", { schema: { querystring: gpusQuery } }, async (req) => {
		const q = req.query as { free?: string; minMemoryMiB?: string; name?: string; hive?: string };
		return registry.listGpus({
			free: q.free === undefined ? undefined : q.free === "true",
			minMemoryMiB: q.minMemoryMiB === undefined ? undefined : Number(q.minMemoryMiB),
			name: q.name,
			hive: q.hive,
		});
	});
}
