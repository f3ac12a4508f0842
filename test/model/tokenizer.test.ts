import { describe, expect, it } from 'vitest';
import r50kRanks from 'gpt-tokenizer/bpeRanks/r50k_base';
import { createGpt2Tokenizer, TokenizerError } from '../../server/model/tokenizer.js';

const tokenizer = createGpt2Tokenizer();
const utf8 = new TextEncoder();

// The bytes a token stands for, read from the package's own r50k_base rank table (the GPT-2 vocabulary).
function tableBytes(id: number): number[] {
  const entry = r50kRanks[id];
  return typeof entry === 'string' ? [...utf8.encode(entry)] : [...entry];
}

// GPT-2's bytes_to_unicode order: ids 0-255 are the single bytes, printable Latin-1 first, then the rest.
function gpt2ByteOrder(): number[] {
  const order: number[] = [];
  const range = (from: number, to: number): void => {
    for (let b = from; b <= to; b++) order.push(b);
  };
  range(33, 126);
  range(161, 172);
  range(174, 255);
  range(0, 32);
  range(127, 160);
  order.push(173);
  return order;
}

describe('createGpt2Tokenizer', () => {
  it('reports the GPT-2 vocabulary size and end-of-text id', () => {
    expect(tokenizer.vocabSize).toBe(50257);
    expect(tokenizer.eosTokenId).toBe(50256);
    expect(r50kRanks.length).toBe(50256);
  });

  it("uses GPT-2's byte order for ids 0-255 (so r50k_base is GPT-2's vocabulary)", () => {
    const order = gpt2ByteOrder();
    for (let id = 0; id < 256; id++) expect(tableBytes(id), `id ${id}`).toEqual([order[id]]);
  });

  it('encodes the reference sentences to the ids GPT-2 gives', () => {
    expect(tokenizer.encode('Hello world')).toEqual([15496, 995]);
    expect(tokenizer.encode(' Hello world')).toEqual([18435, 995]);
    expect(tokenizer.encode('does it make sense to compare apples and oranges?')).toEqual([
      22437, 340, 787, 2565, 284, 8996, 22514, 290, 48389, 30,
    ]);
  });

  // Each case lists the ids and, from the package's rank table, the bytes or text each id stands for, so every
  // hard-coded id is checked against the vocabulary file rather than trusted.
  const cases: { text: string; ids: number[]; pieces: (string | number[])[] }[] = [
    { text: 'café', ids: [66, 1878, 2634], pieces: ['c', 'af', 'é'] },
    { text: 'naïve résumé', ids: [2616, 38776, 40560, 16345, 2634], pieces: ['na', 'ïve', ' ré', 'sum', 'é'] },
    { text: 'e\u0301', ids: [68, 136, 223], pieces: ['e', [0xcc], [0x81]] }, // e + combining acute
    { text: '漢字', ids: [162, 120, 95, 27764, 245], pieces: [[0xe6], [0xbc], [0xa2], [0xe5, 0xad], [0x97]] },
    {
      text: '日本語',
      ids: [33768, 98, 17312, 105, 45739, 252],
      pieces: [[0xe6, 0x97], [0xa5], [0xe6, 0x9c], [0xac], [0xe8, 0xaa], [0x9e]],
    },
    { text: '😀', ids: [47249, 222], pieces: [[0xf0, 0x9f, 0x98], [0x80]] },
    { text: '\n', ids: [198], pieces: ['\n'] },
    { text: '\n\n', ids: [628], pieces: ['\n\n'] },
    { text: 'x\n\n\ny', ids: [87, 628, 198, 88], pieces: ['x', '\n\n', '\n', 'y'] },
    { text: '\t', ids: [197], pieces: ['\t'] },
    { text: '   ', ids: [220, 220, 220], pieces: [' ', ' ', ' '] }, // GPT-2 has no token for ASCII space runs
    { text: 'a  b', ids: [64, 220, 275], pieces: ['a', ' ', ' b'] },
    { text: '12345', ids: [10163, 2231], pieces: ['123', '45'] },
    { text: "I'm", ids: [40, 1101], pieces: ['I', "'m"] },
  ];
  for (const { text, ids, pieces } of cases) {
    it(`encodes ${JSON.stringify(text)} to ${JSON.stringify(ids)}`, () => {
      expect(tokenizer.encode(text)).toEqual(ids);
      expect(ids.map(tableBytes)).toEqual(pieces.map((p) => (typeof p === 'string' ? [...utf8.encode(p)] : p)));
      expect(ids.flatMap(tableBytes)).toEqual([...utf8.encode(text)]);
    });
  }

  it('round-trips a varied corpus through decode(encode(x))', () => {
    const corpus = [
      '',
      'Hello world',
      'The quick brown fox jumps over the lazy dog.',
      'café crème brûlée',
      'Ünïcödé façade, naïve coöperation',
      'e\u0301 a\u0308 o\u0302\u0323', // combining marks
      'Zalgo: Z\u0351\u0363a\u0367l\u0364g\u0300o',
      '日本語のテキスト',
      '漢字と한국어와 中文',
      'Привет, мир!',
      'مرحبا بالعالم',
      'שלום עולם',
      'नमस्ते दुनिया',
      'ελληνικά',
      '😀😃😄 emoji',
      '👍🏽 skin tone, 👨‍👩‍👧‍👦 family ZWJ, 🇫🇷 flag',
      'tabs\tand\t\ttabs',
      'lines\nand\n\n\nmore lines\r\nCRLF',
      '    four leading spaces',
      'trailing spaces    ',
      'a  b   c    d',
      '\n\n\n',
      ' ',
      'function add(a: number, b: number): number {\n  return a + b;\n}\n',
      'for (let i = 0; i < n; i++) { sum += xs[i] ** 2; }',
      '<div class="x">&amp; &lt;tag&gt;</div>',
      '3.14159 2.71828 1e-5 -42 1,000,000 0x7fff',
      '2024-01-31T12:00:00Z',
      "It's, we'll, they're, I've, she'd, don't",
      '<|endoftext|>',
      'before<|endoftext|>after',
      '<|endoftext|><|endoftext|>',
      '\u00a0non-breaking\u00a0spaces\u2003em space',
      'zero\u200bwidth',
      '“smart quotes” — and ‘dashes’ … ellipsis',
      '∑ ∫ √ ∞ ≠ ≤ ≥ ± × ÷',
      'https://example.com/path?query=1&x=y#frag',
      'MiXeD CaSe AND UPPER',
      '\u0000 control \u0007 chars \u001b[0m',
    ];
    expect(corpus.length).toBeGreaterThanOrEqual(30);
    for (const text of corpus) expect(tokenizer.decode(tokenizer.encode(text)), JSON.stringify(text)).toBe(text);
  });

  it('encodes <|endoftext|> as text by default and as 50256 with allowEndOfText', () => {
    const asText = [27, 91, 437, 1659, 5239, 91, 29];
    expect(asText.flatMap(tableBytes)).toEqual([...utf8.encode('<|endoftext|>')]);
    expect(tokenizer.encode('<|endoftext|>')).toEqual(asText);
    expect(tokenizer.encode('<|endoftext|>', { allowEndOfText: false })).toEqual(asText);
    expect(tokenizer.encode('<|endoftext|>', { allowEndOfText: true })).toEqual([50256]);
    // The end-of-text token is found anywhere in the text, not only at its start, and splits the text around it.
    expect(tokenizer.encode('Hello world<|endoftext|> Hello world', { allowEndOfText: true })).toEqual([
      15496, 995, 50256, 18435, 995,
    ]);
    expect(tokenizer.encode('<|endoftext|><|endoftext|>', { allowEndOfText: true })).toEqual([50256, 50256]);
    expect(tokenizer.encode('Hello world', { allowEndOfText: true })).toEqual([15496, 995]);
  });

  it('decodes 50256 to <|endoftext|>', () => {
    expect(tokenizer.decode([50256])).toBe('<|endoftext|>');
    expect(tokenizer.decode([15496, 995, 50256])).toBe('Hello world<|endoftext|>');
    expect(tokenizer.tokenText(50256)).toBe('<|endoftext|>');
    expect(tokenizer.decode(tokenizer.encode('a<|endoftext|>b', { allowEndOfText: true }))).toBe('a<|endoftext|>b');
  });

  it('gives the text of single tokens', () => {
    expect(tokenizer.tokenText(15496)).toBe('Hello');
    expect(tokenizer.tokenText(995)).toBe(' world');
    expect(tokenizer.tokenText(198)).toBe('\n');
    expect(tokenizer.tokenText(162)).toBe('\ufffd'); // one byte of a three-byte character
  });

  it('decodes partial characters to U+FFFD without leaking bytes into the next call', () => {
    const [first, ...rest] = tokenizer.encode('漢字');
    expect(tokenizer.decode([first])).toBe('\ufffd');
    expect(tokenizer.decode(rest)).toBe('\ufffd\ufffd字'); // 0xbc 0xa2 are continuation bytes without a lead
    expect(tokenizer.decode([first, ...rest])).toBe('漢字');
    expect(tokenizer.decode([])).toBe('');
  });

  it('rejects ids outside the vocabulary with the index and the limit, in the wording of every token-id check', () => {
    for (const bad of [50257, -1, 1.5, Number.NaN, 1e9]) {
      expect(() => tokenizer.decode([15496, bad])).toThrow(TokenizerError);
      expect(() => tokenizer.decode([15496, bad])).toThrow(`ids[1]: ${String(bad)} is outside the vocabulary 0..50256`);
      expect(() => tokenizer.tokenText(bad)).toThrow(TokenizerError);
    }
    expect(() => tokenizer.decode([70000])).toThrow(expect.objectContaining({ name: 'TokenizerError' }));
  });
});
