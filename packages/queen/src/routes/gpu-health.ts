import { ErrorBody, Type } from "@apiary/protocol";
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
		{ config: { role: "admin" }, schema: { params: GpuParams, response: { 200: Cleared, 404: ErrorBody } } },
		async (req) => {
			const g = o.registry.listGpus().find((x) => x.uuid === req.params.uuid && !x.migParent);
			if (!g) throw new RegistryError(404, `no GPU ${req.params.uuid}`);
			const r = await o.commands.command(g.hiveId, { op: "gpu-clear", uuid: g.uuid }, { auth: req.headers.authorization, timeoutMs: 10_000 });
			if (r.status !== 200) throw new PlacementError(r.status, `hive ${g.hiveId}: ${r.error}`);
			return { hiveId: g.hiveId, uuid: g.uuid, cleared: (r.body as { cleared?: boolean })?.cleared === true };
		},
	);
};
