// The documentation's links lead somewhere: every relative link and image in README.md and docs/*.md names a file
// or folder of the repository, every #anchor a heading of the file it points into, and every repository path quoted
// in code (`server/model/gpt2-graph.ts`) exists. The README was split into docs/, and a link or a file name left
// behind by a move would otherwise point nowhere without anyone noticing.
import fs from 'node:fs';
import path from 'node:path';
import GithubSlugger from 'github-slugger';
import MarkdownIt from 'markdown-it';
import type { Token } from 'markdown-it';
import { describe, expect, test } from 'vitest';

const root = path.resolve('.');
const markdown = new MarkdownIt({ html: true });
const documents = ['README.md', ...fs.readdirSync('docs').filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** Every token of a parsed document, inline children included, in document order. */
function tokensOf(file: string): Token[] {
  const out: Token[] = [];
  const walk = (tokens: Token[]) => {
    for (const token of tokens) {
      out.push(token);
      if (token.children) walk(token.children);
    }
  };
  walk(markdown.parse(fs.readFileSync(file, 'utf8'), {}));
  return out;
}

const anchorCache = new Map<string, Set<string>>();

/** The anchors GitHub gives a Markdown file's headings (duplicates numbered as GitHub numbers them). */
function anchorsOf(file: string): Set<string> {
  const cached = anchorCache.get(file);
  if (cached) return cached;
  const slugger = new GithubSlugger();
  const tokens = markdown.parse(fs.readFileSync(file, 'utf8'), {});
  const anchors = new Set<string>();
  tokens.forEach((token, i) => {
    if (token.type !== 'heading_open') return;
    // The heading's text as rendered: code spans keep their text, emphasis and link marks go.
    const text = (tokens[i + 1]!.children ?? []).filter((c) => c.type === 'text' || c.type === 'code_inline')
      .map((c) => c.content).join('');
    anchors.add(slugger.slug(text));
  });
  anchorCache.set(file, anchors);
  return anchors;
}

/** The link targets of a document: hrefs of links and srcs of images, as written. */
function linksOf(file: string): string[] {
  return tokensOf(file).flatMap((token) => {
    if (token.type === 'link_open') return [String(token.attrGet('href') ?? '')];
    if (token.type === 'image') return [String(token.attrGet('src') ?? '')];
    return [];
  });
}

const external = /^[a-z][a-z0-9+.-]*:|^\/\//i; // https:, mailto:, protocol-relative

/** What is wrong with one relative link of `file`, or undefined when it leads to an existing file and heading. */
function brokenLink(file: string, href: string): string | undefined {
  const [target = '', anchor] = href.split('#', 2);
  const resolved = target === '' ? path.resolve(file) : path.resolve(path.dirname(file), decodeURIComponent(target));
  if (!resolved.startsWith(root)) return `${href}: leads outside the repository`;
  if (!fs.existsSync(resolved)) return `${href}: ${path.relative(root, resolved)} does not exist`;
  if (anchor !== undefined && resolved.endsWith('.md') && !anchorsOf(resolved).has(decodeURIComponent(anchor))) {
    return `${href}: ${path.relative(root, resolved)} has no heading with the anchor #${anchor}`;
  }
  return undefined;
}

// A path into the repository quoted in code: it starts with one of the project's folders and holds no placeholder.
const repositoryPath = /^(?:\.ci|cli|docs|examples|proto|sdk|server|test)\/[\w./-]*$/;

/** Quoted repository paths of a document that name nothing (a `.js` name may stand for its `.ts` source). */
function missingQuotedPaths(file: string): string[] {
  return tokensOf(file)
    .filter((token) => token.type === 'code_inline' && repositoryPath.test(token.content))
    .map((token) => token.content)
    .filter((quoted) => !fs.existsSync(quoted) && !fs.existsSync(quoted.replace(/\.js$/, '.ts')));
}

describe('the documentation', () => {
  test('is the README and several files in docs/', () => {
    expect(documents).toContain('docs/design.md');
    expect(documents.length).toBeGreaterThanOrEqual(6);
  });

  test.each(documents)('%s: every relative link and image names an existing file, and its anchor a heading there', (file) => {
    const links = linksOf(file).filter((href) => !external.test(href));
    const broken = links.map((href) => brokenLink(file, href)).filter((problem) => problem !== undefined);
    expect(broken).toEqual([]);
  });

  test.each(documents)('%s: every repository path quoted in code exists', (file) => {
    expect(missingQuotedPaths(file)).toEqual([]);
  });

  test('the checks catch a link to a missing file, a missing anchor and a missing quoted path', () => {
    // A check that finds nothing in documents it cannot read would pass whatever they say.
    expect(linksOf('README.md').filter((href) => !external.test(href)).length).toBeGreaterThan(10);
    expect(brokenLink('README.md', 'docs/no-such-file.md')).toMatch(/does not exist/);
    expect(brokenLink('README.md', 'docs/design.md#no-such-heading')).toMatch(/no heading with the anchor/);
    expect(brokenLink('README.md', 'docs/design.md#numerics')).toBeUndefined();
    expect(brokenLink('docs/api.md', '../README.md#install')).toBeUndefined();
    expect(anchorsOf('docs/dashboard.md')).toContain('the-stream-ws');
    expect(repositoryPath.test('server/model/no-such-file.ts')).toBe(true);
  });
});
