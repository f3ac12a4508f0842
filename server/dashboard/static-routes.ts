// The dashboard's files over plain HTTP: the page and its modules from server/dashboard/static/ (read from the
// source tree, so `npm run build` has nothing to copy), the server's modules the page shares (under /model/, where
// the page's relative imports land), and uPlot's browser build from node_modules.
import fs from 'node:fs';
import type http from 'node:http';
import { createRequire } from 'node:module';
import path from 'node:path';
import { packageRoot } from '../model/builtin-models.js';

/** Where the files come from. */
export interface StaticRoots {
  /** The page's own files: index.html, *.js, *.css. */
  page: string;
  /** uPlot's dist/ folder. */
  uplot: string;
  /** server/model/, for the modules the page shares with the server. */
  model: string;
}

/** Find the page's folder in the package and uPlot's dist/ through Node's resolution. */
export function defaultStaticRoots(): StaticRoots {
  const uplotMain = createRequire(import.meta.url).resolve('uplot'); // …/uplot/dist/uPlot.cjs.js
  const server = path.join(packageRoot(), 'server');
  return { page: path.join(server, 'dashboard', 'static'), uplot: path.dirname(uplotMain), model: path.join(server, 'model') };
}

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

// The page loads only its own files and talks only to this origin (fetch for unary calls, the WebSocket for
// streams); uPlot sizes its elements through inline styles.
const contentSecurityPolicy = "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; " +
  "img-src 'self' data: blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** uPlot files the page may load, by the name it asks for. */
const uplotFiles = new Set(['uPlot.esm.js', 'uPlot.min.css']);

/** Modules of server/model/ written to run in the browser as well (plain JavaScript, no imports). */
const sharedModelFiles = new Set(['safetensors-layout.js']);

/** Return an HTTP route handler for the page: true when it answered the request. */
export function createStaticRoutes(roots: StaticRoots): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false;
    const pathname = (req.url ?? '/').split('?')[0]!;
    let file: string | undefined;
    if (pathname === '/' || pathname === '/index.html') file = path.join(roots.page, 'index.html');
    else if (pathname.startsWith('/static/')) file = inside(roots.page, pathname.slice('/static/'.length));
    else if (pathname.startsWith('/vendor/uplot/') && uplotFiles.has(pathname.slice('/vendor/uplot/'.length))) {
      file = path.join(roots.uplot, pathname.slice('/vendor/uplot/'.length));
    } else if (pathname.startsWith('/model/') && sharedModelFiles.has(pathname.slice('/model/'.length))) {
      file = path.join(roots.model, pathname.slice('/model/'.length));
    } else {
      return false;
    }
    const type = file ? contentTypes[path.extname(file)] : undefined;
    let body: Buffer | undefined;
    try {
      if (file && type) body = fs.readFileSync(file);
    } catch {
      body = undefined; // a missing file is a 404 like any unknown path
    }
    if (!body || !type) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
      res.end(`no dashboard file ${pathname}\n`);
      return true;
    }
    res.writeHead(200, {
      'content-type': type,
      'content-length': body.length,
      // Always revalidate: a server upgrade must not leave an old module beside new ones.
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
      ...(type.startsWith('text/html') ? { 'content-security-policy': contentSecurityPolicy } : {}),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return true;
  };
}

// Resolve a URL path below a root, refusing anything that would step outside it.
function inside(root: string, relative: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(relative);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0')) return undefined;
  const file = path.resolve(root, decoded);
  return file.startsWith(root + path.sep) ? file : undefined;
}
