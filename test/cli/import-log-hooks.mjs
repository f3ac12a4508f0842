// Module hooks that append every URL the process resolves to the file named by RECITE_IMPORT_LOG (see
// lazy-loading.test.ts; registered by import-log.mjs through `node --import`).
import fs from 'node:fs';

export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  fs.appendFileSync(process.env.RECITE_IMPORT_LOG, `${result.url}\n`);
  return result;
}
