// A raw `ws` client of the dashboard stream for tests: every message it receives is kept in order, and `next`
// waits for the first one after a cursor that matches.
import { WebSocket } from 'ws';

/** A message from the server (the protocol's JSON objects). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ServerMessage = Record<string, any> & { type: string };

export interface WsClient {
  ws: WebSocket;
  messages: ServerMessage[];
  send(message: Record<string, unknown>): void;
  /** Wait for the first message at index >= `from` that matches; resolves with it and its index. */
  next(match: (m: ServerMessage) => boolean, options?: { from?: number; timeoutMs?: number }): Promise<{ message: ServerMessage; index: number }>;
  close(): Promise<void>;
}

/** Turn a server's http:// URL into its dashboard stream's ws:// URL. */
export function streamUrl(baseUrl: string, query = ''): string {
  return `${baseUrl.replace(/^http/, 'ws')}/ws${query}`;
}

/** Open the stream with a token as the `bearer.<token>` subprotocol (or as ?token= with `via: 'query'`). */
export async function openStream(baseUrl: string, token: string, via: 'protocol' | 'query' = 'protocol'): Promise<WsClient> {
  const ws = via === 'protocol'
    ? new WebSocket(streamUrl(baseUrl), [`bearer.${token}`])
    : new WebSocket(streamUrl(baseUrl, `?token=${encodeURIComponent(token)}`));
  const messages: ServerMessage[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data) => {
    messages.push(JSON.parse(String(data)) as ServerMessage);
    for (const wake of waiters) wake();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    ws,
    messages,
    send: (message) => ws.send(JSON.stringify(message)),
    next(match, { from = 0, timeoutMs = 60_000 } = {}) {
      return new Promise((resolve, reject) => {
        let at = from;
        const check = () => {
          for (; at < messages.length; at++) {
            if (match(messages[at]!)) {
              waiters.delete(check);
              clearTimeout(timer);
              resolve({ message: messages[at]!, index: at });
              return;
            }
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching message within ${timeoutMs} ms; last: ${JSON.stringify(messages.at(-1))?.slice(0, 300)}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () => new Promise<void>((resolve) => {
      if (ws.readyState === ws.CLOSED) resolve();
      else {
        ws.once('close', () => resolve());
        ws.close();
      }
    }),
  };
}

/** Try an upgrade and return the HTTP status of the refusal (101 when it was accepted) and the body. */
export function upgradeStatus(url: string, protocols?: string[], headers?: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, headers ? { headers } : {});
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => { body += chunk.toString('utf8'); });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.on('open', () => {
      ws.close();
      resolve({ status: 101, body: '' });
    });
    ws.on('error', (error) => {
      if (!/Unexpected server response/.test(error.message)) reject(error);
    });
  });
}
