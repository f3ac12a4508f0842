// GPT-2's byte-level BPE (the r50k_base encoding) through the gpt-tokenizer package.
//
// Two things are done here rather than by the package (4.0.0), which gets them wrong:
// - allowed special tokens are found only at the very start of the text, so `<|endoftext|>` is split out here;
// - decode shares one streaming TextDecoder across calls, so a token ending mid-character leaks its bytes into
//   the next decode; here every decode joins the tokens' bytes and decodes them alone.
import { encode as encodeR50k } from 'gpt-tokenizer/encoding/r50k_base';
import r50kRanks from 'gpt-tokenizer/bpeRanks/r50k_base';
import { tokenIdProblem } from '../util/numbers.js';

/** Report a token id or text the tokenizer cannot handle. */
export class TokenizerError extends Error {
  override name = 'TokenizerError';
}

/** Configure one encode call. */
export interface Gpt2EncodeOptions {
  /** Encode `<|endoftext|>` as the end-of-text token (50256) rather than as the 7 tokens of its text. */
  allowEndOfText?: boolean;
}

/** Convert between text and GPT-2 token ids. */
export interface Gpt2Tokenizer {
  readonly eosTokenId: number;
  readonly vocabSize: number;
  /** Encode text to ids; `<|endoftext|>` is ordinary text unless options.allowEndOfText. */
  encode(text: string, options?: Gpt2EncodeOptions): number[];
  /** Decode ids to text; bytes that do not form UTF-8 become U+FFFD, as GPT-2's errors='replace' does. */
  decode(ids: readonly number[]): string;
  /** Return the text of one token (U+FFFD for a token that holds part of a character). */
  tokenText(id: number): string;
}

const endOfText = '<|endoftext|>';
const eosTokenId = 50256; // the only special token; every lower id is a byte-pair merge rank
const vocabSize = 50257; // tokens, including end-of-text
const plainText = Object.freeze({ allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() });
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8'); // decode() without { stream } keeps no state between calls
let tokenBytesTable: Uint8Array[] | undefined; // built on first decode

/** Create a GPT-2 tokenizer (vocab 50257, end-of-text 50256). */
export function createGpt2Tokenizer(): Gpt2Tokenizer {
  return {
    eosTokenId,
    vocabSize,
    encode(text: string, options: Gpt2EncodeOptions = {}): number[] {
      if (typeof text !== 'string') {
        throw new TokenizerError(`encode GPT-2 text: expected a string, got ${typeof text}`);
      }
      if (!options.allowEndOfText) return encodeR50k(text, plainText);
      const ids: number[] = [];
      text.split(endOfText).forEach((piece, i) => {
        if (i > 0) ids.push(eosTokenId);
        if (piece.length > 0) ids.push(...encodeR50k(piece, plainText));
      });
      return ids;
    },
    decode(ids: readonly number[]): string {
      const table = getTokenBytesTable();
      let length = 0;
      ids.forEach((id, index) => {
        checkId(id, `decode GPT-2 ids: ids[${index}]`);
        length += table[id].length;
      });
      const bytes = new Uint8Array(length);
      let offset = 0;
      for (const id of ids) {
        bytes.set(table[id], offset);
        offset += table[id].length;
      }
      return utf8Decoder.decode(bytes);
    },
    tokenText(id: number): string {
      checkId(id, 'token text of GPT-2 id');
      return utf8Decoder.decode(getTokenBytesTable()[id]);
    },
  };
}

function checkId(id: number, where: string): void {
  const problem = tokenIdProblem(id, vocabSize);
  if (problem) throw new TokenizerError(`${where}: ${problem}`);
}

function getTokenBytesTable(): Uint8Array[] {
  if (tokenBytesTable !== undefined) return tokenBytesTable;
  if (r50kRanks.length !== eosTokenId) {
    throw new TokenizerError(
      `load GPT-2 vocabulary: gpt-tokenizer's r50k_base has ${r50kRanks.length} merge ranks; expected ${eosTokenId}`,
    );
  }
  // The package stores a token as its string when its bytes are valid UTF-8, else as the raw byte values.
  const table = r50kRanks.map((entry) => (typeof entry === 'string' ? utf8Encoder.encode(entry) : Uint8Array.from(entry)));
  table.push(utf8Encoder.encode(endOfText));
  tokenBytesTable = table;
  return table;
}
