// Build the training corpus: read the sources, split by document, tokenize with GPT-2's tokenizer and write each
// split as one stream of uint16 token ids (every document preceded by <|endoftext|>, as GPT-2 was trained), with
// a manifest that records each source, its license and its size in tokens.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createGpt2Tokenizer } from '../model/tokenizer.js';
import { createSeededRandom } from '../util/seeded-random.js';
import { corpusSources, isValidationDocument, readCorpusDocuments } from './corpus-sources.js';
import type { CorpusDocument, CorpusSourceName } from './corpus-sources.js';

export type CorpusSplit = 'train' | 'validation';

/** What build-corpus wrote: per source and split, documents and tokens; the token files' digests. */
export interface CorpusManifest {
  tokenizer: 'gpt2 (r50k_base)';
  sources: {
    name: CorpusSourceName;
    title: string;
    package: string;
    license: string;
    documents: Record<CorpusSplit, number>;
    tokens: Record<CorpusSplit, number>;
    characters: Record<CorpusSplit, number>;
  }[];
  splits: Record<CorpusSplit, { file: string; tokens: number; sha256: string }>;
  validationDocuments: string[];
}

const eosTokenId = 50256;
const manifestFile = 'manifest.json';

/** Read the sources, tokenize and write `train.u16`, `validation.u16` and `manifest.json` into `outDir`. */
export function buildCorpus(outDir: string, log: (line: string) => void = () => {}): CorpusManifest {
  const tokenizer = createGpt2Tokenizer();
  const documents = readCorpusDocuments();
  const streams: Record<CorpusSplit, number[]> = { train: [], validation: [] };
  const perSource = new Map(corpusSources.map((s) => [s.name, {
    ...s,
    documents: { train: 0, validation: 0 },
    tokens: { train: 0, validation: 0 },
    characters: { train: 0, validation: 0 },
  }]));
  const validationDocuments: string[] = [];
  for (const [source, docs] of groupBySource(documents)) {
    docs.forEach((doc, index) => {
      const split: CorpusSplit = isValidationDocument(index) ? 'validation' : 'train';
      if (split === 'validation') validationDocuments.push(doc.id);
      const ids = tokenizer.encode(doc.text);
      const stream = streams[split];
      stream.push(eosTokenId);
      for (const id of ids) stream.push(id);
      const stats = perSource.get(source)!;
      stats.documents[split] += 1;
      stats.tokens[split] += ids.length + 1;
      stats.characters[split] += doc.text.length;
    });
    const stats = perSource.get(source)!;
    log(`${source}: ${stats.documents.train + stats.documents.validation} documents, ` +
      `${stats.tokens.train} + ${stats.tokens.validation} tokens (train + validation)`);
  }
  fs.mkdirSync(outDir, { recursive: true });
  const splits = {} as CorpusManifest['splits'];
  for (const split of ['train', 'validation'] as const) {
    const data = Uint16Array.from(streams[split]);
    const file = `${split}.u16`;
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    fs.writeFileSync(path.join(outDir, file), bytes);
    splits[split] = { file, tokens: data.length, sha256: createHash('sha256').update(bytes).digest('hex') };
  }
  const manifest: CorpusManifest = {
    tokenizer: 'gpt2 (r50k_base)',
    sources: [...perSource.values()],
    splits,
    validationDocuments,
  };
  fs.writeFileSync(path.join(outDir, manifestFile), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** Read one split's token stream written by buildCorpus. */
export function readCorpusSplit(dir: string, split: CorpusSplit): Uint16Array {
  const file = path.join(dir, `${split}.u16`);
  if (!fs.existsSync(file)) {
    throw new Error(`read corpus split ${split}: ${file} does not exist; build the corpus first (recite corpus build)`);
  }
  const bytes = fs.readFileSync(file);
  return new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** Read the manifest written by buildCorpus. */
export function readCorpusManifest(dir: string): CorpusManifest {
  return JSON.parse(fs.readFileSync(path.join(dir, manifestFile), 'utf8')) as CorpusManifest;
}

/** Which held-out sentences to take. */
export interface SentenceFilter {
  minWords: number;
  maxWords: number;
  /**
   * Only whole prose sentences, each once: ending in . ! or ? (a closing quote allowed), without digits. Brown's
   * short lines are mostly datelines and headlines ("Miami, Fla., March 17"), repeated across articles.
   */
  proseOnly: boolean;
}

export const sentenceFilterDefaults: Readonly<SentenceFilter> = Object.freeze({ minWords: 8, maxWords: 30, proseOnly: false });

/** Return held-out sentences: the sentences of the Brown validation documents (the one source that marks them) that
 * pass the filter, in corpus order. */
export function heldOutSentences(count: number, filter: Partial<SentenceFilter> = {}): string[] {
  const { minWords, maxWords, proseOnly } = { ...sentenceFilterDefaults, ...filter };
  const brown = groupBySource(readCorpusDocuments(['brown'])).get('brown') ?? [];
  const seen = new Set<string>();
  const sentences = brown.filter((_, index) => isValidationDocument(index))
    .flatMap((doc) => doc.sentences ?? [])
    .filter((s) => {
      const words = s.split(' ').length;
      if (words < minWords || words > maxWords) return false;
      if (!proseOnly) return true;
      if (!/^[A-Z"']/.test(s) || !/[.!?]["']?$/.test(s) || /\d/.test(s) || seen.has(s)) return false;
      seen.add(s);
      return true;
    });
  if (sentences.length < count) {
    throw new Error(`held-out sentences: ${count} asked, the Brown validation documents hold ${sentences.length} ` +
      `of ${minWords} to ${maxWords} words${proseOnly ? ' (prose only)' : ''}`);
  }
  return sentences.slice(0, count);
}

/** Shuffle a sentence's words (split on spaces) with a seeded Fisher-Yates; never returns the same order. */
export function shuffleWords(sentence: string, seed: number): string {
  const words = sentence.split(' ');
  if (new Set(words).size < 2) return sentence;
  const random = createSeededRandom(seed);
  for (let attempt = 0; ; attempt++) {
    for (let i = words.length - 1; i > 0; i--) {
      const j = random.int(i + 1);
      [words[i], words[j]] = [words[j]!, words[i]!];
    }
    const shuffled = words.join(' ');
    if (shuffled !== sentence || attempt > 8) return shuffled;
  }
}

function groupBySource(documents: readonly CorpusDocument[]): Map<CorpusSourceName, CorpusDocument[]> {
  const groups = new Map<CorpusSourceName, CorpusDocument[]>();
  for (const doc of documents) {
    const group = groups.get(doc.source) ?? [];
    groups.set(doc.source, group);
    group.push(doc);
  }
  return groups;
}
