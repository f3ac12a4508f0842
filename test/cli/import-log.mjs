// `node --import ./test/cli/import-log.mjs …` logs every module the process resolves (import-log-hooks.mjs).
import { register } from 'node:module';

register('./import-log-hooks.mjs', import.meta.url);
