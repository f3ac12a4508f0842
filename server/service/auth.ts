// Bearer-token authentication: each token names a client; a client sees and cancels only its own jobs.
// Tokens come from a file ("TOKEN CLIENT" per line, # comments) or RECITE_TOKENS ("TOKEN=CLIENT,TOKEN=CLIENT").
import { timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import type { HandlerContext, Interceptor } from '@connectrpc/connect';
import { Code, ConnectError, createContextKey } from '@connectrpc/connect';

/** The authenticated client of a request (set by the auth interceptor). */
export const clientIdKey = createContextKey<string>('', { description: 'authenticated client id' });

/** Services that need no token (load balancers probe health without credentials). */
const publicServices = new Set(['grpc.health.v1.Health']);

/** Shortest token accepted: guessing one of 16 random characters is out of reach; "a" or "test" is not. */
export const minTokenLength = 16;

export class TokenTable {
  private entries: { token: Buffer; clientId: string }[];

  constructor(tokens: ReadonlyMap<string, string>) {
    this.entries = TokenTable.entriesOf(tokens);
  }

  /** Put `tokens` in place of the table's (a reload): requests from now on are checked against them. */
  replace(tokens: ReadonlyMap<string, string>): void {
    this.entries = TokenTable.entriesOf(tokens);
  }

  private static entriesOf(tokens: ReadonlyMap<string, string>) {
    return [...tokens].map(([token, clientId]) => ({ token: Buffer.from(token), clientId }));
  }

  get size(): number {
    return this.entries.length;
  }

  /** Return the client of a token, comparing in constant time. */
  clientOf(token: string): string | undefined {
    const presented = Buffer.from(token);
    let found: string | undefined;
    for (const entry of this.entries) {
      if (entry.token.length === presented.length && timingSafeEqual(entry.token, presented)) found = entry.clientId;
    }
    return found;
  }

  /** Read "TOKEN CLIENT" lines. */
  static parseFile(text: string, file = 'tokens file'): Map<string, string> {
    const tokens = new Map<string, string>();
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) return;
      const [token, clientId, extra] = line.split(/\s+/);
      if (!token || !clientId || extra !== undefined) {
        throw new Error(`${file}:${i + 1}: expected "TOKEN CLIENT", got ${JSON.stringify(raw)}`);
      }
      if (token.length < minTokenLength) {
        throw new Error(`${file}:${i + 1}: token of ${token.length} characters; at least ${minTokenLength} are needed`);
      }
      // A token given twice would silently belong to the later line's client.
      if (tokens.has(token)) throw new Error(`${file}:${i + 1}: this token is already given (to client ${tokens.get(token)}); each token names one client`);
      tokens.set(token, clientId);
    });
    return tokens;
  }

  /** Read "TOKEN=CLIENT,TOKEN=CLIENT". */
  static parseEnv(text: string): Map<string, string> {
    const tokens = new Map<string, string>();
    for (const pair of text.split(',').map((p) => p.trim()).filter(Boolean)) {
      const at = pair.indexOf('=');
      if (at <= 0 || at === pair.length - 1) throw new Error(`RECITE_TOKENS: expected TOKEN=CLIENT, got ${JSON.stringify(pair)}`);
      const token = pair.slice(0, at);
      const clientId = pair.slice(at + 1);
      if (token.length < minTokenLength) {
        throw new Error(`RECITE_TOKENS: the token of client ${clientId} has ${token.length} characters; at least ` +
          `${minTokenLength} are needed`);
      }
      if (tokens.has(token)) throw new Error(`RECITE_TOKENS: the token of client ${clientId} is already given (to client ${tokens.get(token)})`);
      tokens.set(token, clientId);
    }
    return tokens;
  }

  /** Load the tokens of a file and of RECITE_TOKENS together. */
  static load(file: string | undefined, env: string | undefined): TokenTable {
    return new TokenTable(TokenTable.read(file, env));
  }

  /** Read the tokens of a file and of RECITE_TOKENS together; a token in both is refused. */
  static read(file: string | undefined, env: string | undefined): Map<string, string> {
    const tokens = file ? TokenTable.parseFile(fs.readFileSync(file, 'utf8'), file) : new Map<string, string>();
    if (env) {
      for (const [t, c] of TokenTable.parseEnv(env)) {
        if (tokens.has(t)) throw new Error(`RECITE_TOKENS: the token of client ${c} is also in ${file} (client ${tokens.get(t)})`);
        tokens.set(t, c);
      }
    }
    return tokens;
  }
}

/** Return the bearer token of an Authorization header value, or undefined. */
export function bearerToken(header: string | null | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}

/** Return an interceptor that refuses requests without a valid token and records the client for the handlers. */
export function createAuthInterceptor(tokens: TokenTable): Interceptor {
  return (next) => async (req) => {
    if (publicServices.has(req.service.typeName)) return next(req);
    const token = bearerToken(req.header.get('authorization'));
    if (!token) throw new ConnectError('missing bearer token: send "authorization: Bearer <token>"', Code.Unauthenticated);
    const clientId = tokens.clientOf(token);
    if (!clientId) throw new ConnectError('the bearer token is not valid on this server', Code.Unauthenticated);
    req.contextValues.set(clientIdKey, clientId);
    return next(req);
  };
}

/** Return the client a handler runs for. */
export function clientOf(ctx: HandlerContext): string {
  const clientId = ctx.values.get(clientIdKey);
  if (!clientId) throw new ConnectError('unauthenticated request reached a handler', Code.Unauthenticated);
  return clientId;
}
