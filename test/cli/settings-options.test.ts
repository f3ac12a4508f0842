// The settings flags onto the SDK's options: --repetition-penalty maps to repetitionPenalty, is left out when off
// (so a data set's settings, and its content hash, are what they were before the flag existed), and a value out of
// range names the flag, the value and the range.
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { addSettingsOptions, settingsFromFlags } from '../../cli/settings-options.js';
import type { SettingsFlags } from '../../cli/settings-options.js';

function flags(...args: string[]): SettingsFlags {
  const command = addSettingsOptions(new Command()).exitOverride();
  command.parse(args, { from: 'user' });
  return command.opts<SettingsFlags>();
}

describe('--repetition-penalty', () => {
  it('sets repetitionPenalty, and leaves it out at its default 1', () => {
    expect(settingsFromFlags(flags('--repetition-penalty', '1.3')).repetitionPenalty).toBe(1.3);
    expect(settingsFromFlags(flags('--repetition-penalty', '0.7')).repetitionPenalty).toBe(0.7);
    expect(settingsFromFlags(flags())).not.toHaveProperty('repetitionPenalty');
    expect(settingsFromFlags(flags('--repetition-penalty', '1'))).not.toHaveProperty('repetitionPenalty');
  });

  it.each(['11', '0.05', '0', '-1.3', 'NaN', 'x', ''])('refuses %j, naming the flag, the value and the range', (value) => {
    expect(() => settingsFromFlags(flags('--repetition-penalty', value)))
      .toThrow(`--repetition-penalty ${value}: expected a number in [0.1, 10] (1: off)`);
  });
});
