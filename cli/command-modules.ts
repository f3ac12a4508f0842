// The CLI's command modules and the commands each defines.
import type { Command } from 'commander';

// Each module is loaded only for the commands it defines (or all of them for help): `recite jobs --server …` starts as
// a client alone, without onnxruntime, SQLite or the charts. The order is the order of `recite --help`.
export const commandModules: readonly { commands: readonly string[]; load: () => Promise<(program: Command) => void> }[] = [
  { commands: ['invert'], load: async () => (await import('./commands/invert.js')).registerInvertCommand },
  { commands: ['serve'], load: async () => (await import('./commands/serve.js')).registerServeCommand },
  { commands: ['jobs', 'watch', 'cancel', 'delete'], load: async () => (await import('./commands/jobs.js')).registerJobCommands },
  { commands: ['decode', 'models'], load: async () => (await import('./commands/decode.js')).registerDecodeCommands },
  { commands: ['score'], load: async () => (await import('./commands/score.js')).registerScoreCommand },
  { commands: ['model'], load: async () => (await import('./commands/model-fetch.js')).registerModelFetchCommand },
  { commands: ['eval'], load: async () => (await import('./commands/eval.js')).registerEvalCommand },
  { commands: ['bench'], load: async () => (await import('./commands/bench.js')).registerBenchCommand },
  { commands: ['dataset'], load: async () => (await import('./commands/dataset.js')).registerDatasetCommands },
  { commands: ['study'], load: async () => (await import('./commands/study.js')).registerStudyCommand },
  { commands: ['study-report'], load: async () => (await import('./commands/study-report.js')).registerStudyReportCommand },
  { commands: ['capacity'], load: async () => (await import('./commands/capacity.js')).registerCapacityCommand },
  { commands: ['corpus', 'train', 'model-card'], load: async () => (await import('./commands/train.js')).registerTrainCommands },
];
