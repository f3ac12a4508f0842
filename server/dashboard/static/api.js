// Unary ReciteService calls from the page: the Connect protocol with JSON bodies over fetch (no client library
// needed), authenticated like every RPC with `authorization: Bearer <token>`.

/** An RPC that failed: `code` is the Connect code ("unauthenticated", …) or "unavailable" when nothing answered. */
export class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
  }
}

/** Call ReciteService.`method` with a JSON request; resolve with the JSON response. */
export async function call(method, request, token) {
  let response;
  try {
    response = await fetch(`/recite.v1.ReciteService/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'connect-protocol-version': '1', authorization: `Bearer ${token}` },
      body: JSON.stringify(request),
    });
  } catch (error) {
    throw new RpcError('unavailable', `the server did not answer (${error.message})`);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new RpcError(body.code ?? `http_${response.status}`, body.message ?? `HTTP ${response.status}`);
  return body;
}
