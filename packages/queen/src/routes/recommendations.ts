import { RecommendationsAnswer, RecommendationsQuery } from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Registry } from "../registry.ts";

/** Right-sizing: limits each profile and suite should have, from the runs' history. Recommendations only: nothing applies them. */
export const recommendationRoutes: FastifyPluginAsyncTypebox<{ registry: Registry }> = async (app, o) => {
	const { registry } = o;
	app.get(
		"/v1/recommendations",
		{ config: { role: "read" }, schema: { querystring: RecommendationsQuery, response: { 200: RecommendationsAnswer } } },
		async (req) => {
			const { profile, label } = req.query;
			const i = label?.indexOf("=") ?? -1;
			return registry.advisor.recommend({ profile, label: label ? [label.slice(0, i), label.slice(i + 1)] : undefined }, registry.o.clock.wall());
		},
	);
};
