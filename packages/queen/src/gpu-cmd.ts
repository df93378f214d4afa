import { parseFlags, UsageError } from "@apiary/kit/cli";
import { call } from "@apiary/kit/client";
import { loadToken } from "@apiary/kit/listen";

// `queen gpu clear UUID` (admin): the GPU's hive forgets its latched health
// causes (POST /v1/gpus/:uuid/clear).

export const GPU_HELP = (d: string) => `Usage: queen gpu clear UUID [--hive ID]

The GPU's hive forgets the health causes it latched (an Xid, an ECC error,
a lost GPU): for a GPU that was reset, repaired or replaced. A cause that is
still present comes back with the next reading. The hive clears them by
itself when the host reboots and they are gone, and slowdowns after 5
minutes without one.

  --hive ID          the GPU's hive (needed only if two hives report the UUID)
  --json             print the answer as JSON
  --queen URL        queen (default $APIARY_QUEEN or ${d})
  --token-file FILE  an admin token (default $APIARY_TOKEN)`;

export async function gpu(argv: string[], defaultQueen: string, out: (s: string) => void): Promise<number> {
	const [sub, ...rest] = argv;
	if (sub !== "clear") throw new UsageError(`queen gpu: expected "clear UUID"${sub ? `, got ${JSON.stringify(sub)}` : ""}`);
	const { values: v, positionals } = parseFlags("queen gpu clear", rest, {
		json: { type: "boolean" },
		hive: { type: "string" },
		queen: { type: "string" },
		"token-file": { type: "string" },
	});
	if (positionals.length !== 1) throw new UsageError("queen gpu clear: give one GPU UUID");
	const uuid = positionals[0]!;
	if (!/^(GPU|MIG)-[0-9a-fA-F-]{8,64}$/.test(uuid)) throw new UsageError(`queen gpu clear: ${JSON.stringify(uuid)} is not a GPU UUID (GPU-…)`);
	const base = v.queen ?? process.env.APIARY_QUEEN ?? defaultQueen;
	const r = await call<{ hiveId: string; uuid: string; cleared: boolean }>(
		base,
		"POST",
		`/v1/gpus/${encodeURIComponent(uuid)}/clear${v.hive ? `?hive=${encodeURIComponent(v.hive)}` : ""}`,
		undefined,
		loadToken(v["token-file"]),
	);
	out(v.json ? `${JSON.stringify(r)}\n` : `${r.uuid} on hive ${r.hiveId}: ${r.cleared ? "health causes cleared" : "had no latched cause"}\n`);
	return 0;
}
