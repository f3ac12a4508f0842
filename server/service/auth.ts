// Bearer-token authentication: each token names a client; a client sees and cancels only its own jobs (an admin
// client any job). Tokens come from a file ("TOKEN CLIENT [OPTIONS]" per line, # comments; the options are the
// client's quotas and admin mark, see client-policy.ts) or RECITE_TOKENS ("TOKEN=CLIENT,TOKEN=CLIENT").
import { timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import type { HandlerContext, Interceptor } from '@connectrpc/connect';
import { Code, ConnectError, createContextKey } from '@connectrpc/connect';
import type { ClientPolicy } from './client-policy.js';
import { mergeClientPolicy, parseClientOptions } from './client-policy.js';

/** The authenticated client of a request (set by the auth interceptor). */
export const clientIdKey = createContextKey<string>('', { description: 'authenticated client id' });

/** Whether the authenticated client is an admin (set by the auth interceptor). */
export const clientAdminKey = createContextKey<boolean>(false, { description: 'authenticated client is an admin' });

/**
 * Services that need no token: load balancers probe health without credentials, and reflection shows only the schema
 * that proto/ publishes, to tools that fetch it before a user has set any header.
 */
export const publicServices: ReadonlySet<string> = new Set(['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection']);

/** Shortest token accepted: guessing one of 16 random characters is out of reach; "a" or "test" is not. */
export const minTokenLength = 16;

export class TokenTable {
  private entries: { token: Buffer; clientId: string }[];

  private policies: ReadonlyMap<string, ClientPolicy>;

  constructor(tokens: ReadonlyMap<string, string>, policies: ReadonlyMap<string, ClientPolicy> = new Map()) {
    this.entries = TokenTable.entriesOf(tokens);
    this.policies = policies;
  }

  /**
   * Put `tokens` and the clients' `policies` in place of the table's (a reload): requests from now on are checked
   * against them, and quotas and admin marks are the new ones.
   */
  replace(tokens: ReadonlyMap<string, string>, policies: ReadonlyMap<string, ClientPolicy> = new Map()): void {
    this.entries = TokenTable.entriesOf(tokens);
    this.policies = policies;
  }

  private static entriesOf(tokens: ReadonlyMap<string, string>) {
    return [...tokens].map(([token, clientId]) => ({ token: Buffer.from(token), clientId }));
  }

  /** A client's options from the tokens file (no quotas of its own and not an admin when it has none). */
  policyOf(clientId: string): ClientPolicy {
    return this.policies.get(clientId) ?? { admin: false };
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

  /** Read "TOKEN CLIENT [OPTIONS]" lines: the tokens. */
  static parseFile(text: string, file = 'tokens file'): Map<string, string> {
    return TokenTable.parseFileWithPolicies(text, file).tokens;
  }

  /** Read "TOKEN CLIENT [OPTIONS]" lines: the tokens, and each client's options merged over its lines. */
  static parseFileWithPolicies(text: string, file = 'tokens file'):
    { tokens: Map<string, string>; policies: Map<string, ClientPolicy> } {
    const tokens = new Map<string, string>();
    const policies = new Map<string, ClientPolicy>();
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/#.*/, '').trim();
      if (!line) return;
      const [token, clientId, ...options] = line.split(/\s+/);
      if (!token || !clientId) {
        throw new Error(`${file}:${i + 1}: expected "TOKEN CLIENT [OPTIONS]", got ${JSON.stringify(raw)}`);
      }
      if (token.length < minTokenLength) {
        throw new Error(`${file}:${i + 1}: token of ${token.length} characters; at least ${minTokenLength} are needed`);
      }
      // A token given twice would silently belong to the later line's client.
      if (tokens.has(token)) throw new Error(`${file}:${i + 1}: this token is already given (to client ${tokens.get(token)}); each token names one client`);
      tokens.set(token, clientId);
      const where = `${file}:${i + 1}`;
      const policy = parseClientOptions(options, where);
      const earlier = policies.get(clientId);
      policies.set(clientId, earlier ? mergeClientPolicy(clientId, earlier, policy, where) : policy);
    });
    return { tokens, policies };
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
    const { tokens, policies } = TokenTable.read(file, env);
    return new TokenTable(tokens, policies);
  }

  /**
   * Read the tokens of a file and of RECITE_TOKENS together, with the clients' options from the file; a token in
   * both is refused.
   */
  static read(file: string | undefined, env: string | undefined):
    { tokens: Map<string, string>; policies: Map<string, ClientPolicy> } {
    const { tokens, policies } = file
      ? TokenTable.parseFileWithPolicies(fs.readFileSync(file, 'utf8'), file)
      : { tokens: new Map<string, string>(), policies: new Map<string, ClientPolicy>() };
    if (env) {
      for (const [t, c] of TokenTable.parseEnv(env)) {
        if (tokens.has(t)) throw new Error(`RECITE_TOKENS: the token of client ${c} is also in ${file} (client ${tokens.get(t)})`);
        tokens.set(t, c);
      }
    }
    return { tokens, policies };
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
    req.contextValues.set(clientAdminKey, tokens.policyOf(clientId).admin);
    return next(req);
  };
}

/** Return whether the client a handler runs for is an admin. */
export function isAdmin(ctx: HandlerContext): boolean {
  return ctx.values.get(clientAdminKey);
}

/** Return the client a handler runs for. */
export function clientOf(ctx: HandlerContext): string {
  const clientId = ctx.values.get(clientIdKey);
  if (!clientId) throw new ConnectError('unauthenticated request reached a handler', Code.Unauthenticated);
  return clientId;
}
