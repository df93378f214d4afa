// A small HTTP client for the CLIs: JSON in and out, errors as messages.

export class ClientError extends Error {
	override name = "ClientError";
	/** The daemon's HTTP status; 0 when it could not be reached. */
	readonly status: number;
	constructor(status: number, message: string, options?: ErrorOptions) {
		super(message, options);
		this.status = status;
	}
}

/** "cannot reach URL: ECONNREFUSED …" from a failed fetch, keeping the cause. */
export function unreachable(base: string, err: unknown): ClientError {
	const e = err as Error & { cause?: Error };
	return new ClientError(0, `cannot reach ${base}: ${e.cause?.message ?? e.message}`, { cause: err });
}

export async function call<T>(base: string, method: string, path: string, body?: unknown, token?: string | null): Promise<T> {
	const headers: Record<string, string> = {};
	if (body !== undefined) headers["content-type"] = "application/json";
	if (token) headers.authorization = `Bearer ${token}`;
	let res: Response;
	try {
		res = await fetch(new URL(path, base), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
	} catch (err) {
		throw unreachable(base, err);
	}
	const text = await res.text();
	const data = text ? JSON.parse(text) : null;
	if (!res.ok) throw new ClientError(res.status, data?.message ?? `${res.status} ${res.statusText}`);
	return data as T;
}
