import { ErrorBody, HiveIdQuery, Type } from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { HiveCommander } from "../hive-commands.ts";
import { PlacementError } from "../placement/placer.ts";
import { type Registry, RegistryError } from "../registry.ts";

const GpuParams = Type.Object({ uuid: Type.String({ pattern: "^(GPU|MIG)-[0-9a-fA-F-]{8,64}$" }) });
const Cleared = Type.Object({ hiveId: Type.String(), uuid: Type.String(), cleared: Type.Boolean({ description: "false: it had no latched cause" }) });

/**
 * `queen gpu clear UUID` (admin): the GPU's hive forgets its latched health
 * causes, as an admin does once a GPU is repaired or reset (DCGM's
 * dcgmi health --clear). A cause still present comes back with the next reading.
 */
export const gpuHealthRoutes: FastifyPluginAsyncTypebox<{ registry: Registry; commands: HiveCommander }> = async (app, o) => {
	app.post(
		"/v1/gpus/:uuid/clear",
		{ config: { role: "admin" }, schema: { params: GpuParams, querystring: HiveIdQuery, response: { 200: Cleared, 404: ErrorBody, 409: ErrorBody } } },
		async (req) => {
			const hive = req.query.hive;
			const found = o.registry.listGpus({ hive }).filter((x) => x.uuid === req.params.uuid && !x.migParent);
			if (found.length === 0) throw new RegistryError(404, `no GPU ${req.params.uuid}${hive ? ` on hive ${hive}` : ""}`);
			// A uuid is the GPU's own; two hives reporting one (a copied fixture, a lie) are named, not guessed between.
			if (found.length > 1)
				throw new RegistryError(
					409,
					`GPU ${req.params.uuid} is reported by ${found.length} hives (${found.map((x) => x.hiveId).join(", ")}): name one with ?hive=`,
				);
			const g = found[0]!;
			const r = await o.commands.command(g.hiveId, { op: "gpu-clear", uuid: g.uuid }, { auth: req.headers.authorization, timeoutMs: 10_000 });
			if (r.status !== 200) throw new PlacementError(r.status, `hive ${g.hiveId}: ${r.error}`);
			return { hiveId: g.hiveId, uuid: g.uuid, cleared: (r.body as { cleared?: boolean })?.cleared === true };
		},
	);
};
