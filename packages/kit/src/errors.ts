/**
 * An error a client caused. Fastify's own error path renders it with the
 * status's label: `{statusCode: 404, error: "Not Found", message}`, 409
 * "Conflict", 507 "Insufficient Storage" …
 */
export class HttpError extends Error {
	override name = "HttpError";
	readonly statusCode: number;
	constructor(statusCode: number, message: string, options?: ErrorOptions) {
		super(message, options);
		this.statusCode = statusCode;
	}
}

/** The message of an unknown thrown value, for logs. */
export function messageOf(err: unknown): string {
	return err instanceof Error ? err.message : String(err);
}
