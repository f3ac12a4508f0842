// The one integer check and its wording, as the CLI, the API and the engine report it.
import { describe, expect, it } from 'vitest';
import { firstIntegerProblem, integerProblem, integerRange, isIntegerIn, tokenIdProblem } from '../../server/util/numbers.js';

describe('integer checks', () => {
  it('word the range with and without an upper bound', () => {
    expect(integerRange(1)).toBe('an integer ≥ 1');
    expect(integerRange(0, 65535)).toBe('an integer in [0, 65535]');
  });

  it('accept integers in range only, naming the value as it came', () => {
    expect(isIntegerIn(3, 1, 3)).toBe(true);
    for (const bad of [0, 4, 2.5, Number.NaN, Number.POSITIVE_INFINITY, '2', null]) expect(isIntegerIn(bad, 1, 3), String(bad)).toBe(false);
    expect(integerProblem(3, 1, 2)).toBe('3 is not an integer in [1, 2]');
    expect(integerProblem('5', 0)).toBe('"5" is not an integer ≥ 0');
    expect(integerProblem(1.5, 1)).toBe('1.5 is not an integer ≥ 1');
    expect(integerProblem(7, 1)).toBeUndefined();
    expect(firstIntegerProblem([1, 2, 0, -1], 1)).toBe('0 is not an integer ≥ 1');
    expect(firstIntegerProblem([1, 2], 1)).toBeUndefined();
  });

  it('check token ids against the vocabulary', () => {
    expect(tokenIdProblem(50256, 50257)).toBeUndefined();
    expect(tokenIdProblem(50257, 50257)).toBe('50257 is outside the vocabulary 0..50256');
    expect(tokenIdProblem(-1, 50257)).toBe('-1 is outside the vocabulary 0..50256');
  });
});
