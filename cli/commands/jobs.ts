// `recite jobs`, `recite watch ID`, `recite cancel ID`, `recite delete ID`: follow and steer jobs on a server.
import { timestampMs } from '@bufbuild/protobuf/wkt';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { JobState, JobStateSchema, Status, StatusSchema } from '../../sdk/index.js';
import type { Job } from '../../sdk/index.js';
import { connectToServer, withServerOptions } from '../connection.js';
import type { ConnectionOptions } from '../connection.js';
import { interruptedExitStatus, onInterrupt } from '../interrupt.js';
import { eventToJson, printJsonLine, protoEnumName } from '../json-events.js';
import { positiveInteger } from '../options.js';
import { exitStatus } from './invert.js';

interface JsonOption {
  json?: boolean;
}

export function registerJobCommands(program: Command): void {
  withServerOptions(program.command('jobs')
    .description('list your jobs on the server, newest first')
    .option('--limit <n>', 'jobs to show', '50')
    .option('--all', 'every client\'s jobs (admin clients only)')
    .option('--json', 'one JSON object per job'))
    .action(async (options: ConnectionOptions & JsonOption & { limit: string; all?: boolean }) => {
      const { client } = connectToServer(options);
      const jobs = await client.listJobs({ pageSize: positiveInteger('--limit', options.limit), allClients: options.all ?? false });
      if (options.json) {
        for (const job of jobs) {
          printJsonLine({ ...jobSummary(job), state: protoEnumName(JobStateSchema, job.state),
            status: job.result ? protoEnumName(StatusSchema, job.result.status) : undefined });
        }
        return;
      }
      const table = new Table({
        head: ['job', ...(options.all ? ['client'] : []), 'state', 'status', 'model', 'target', 'iteration', 'NLL',
          'correct', 'created'],
        style: { head: [], border: [] },
      });
      for (const job of jobs) {
        const s = jobSummary(job);
        table.push([s.jobId, ...(options.all ? [job.client] : []), s.state, s.status ?? '', s.model, truncate(s.target, 32),
          s.iteration ?? '', s.nll?.toFixed(3) ?? '', s.correct ?? '', s.createdAt]);
      }
      process.stdout.write(`${table.toString()}\n`);
    });

  withServerOptions(program.command('watch')
    .description('replay a job\'s history and follow it to its result (exit status as for invert); Ctrl-C stops ' +
      'following and leaves the job running (exit 130)')
    .argument('<job>', 'job id')
    .option('--after <sequence>', 'replay only events after this sequence number', '0')
    .option('--json', 'print one JSON object per event'))
    .action(async (jobId: string, options: ConnectionOptions & JsonOption & { after: string }) => {
      const { client } = connectToServer(options);
      // Watching is looking: Ctrl-C stops following and leaves the job alone (`recite cancel` stops it). It says
      // where it stopped, so `--after` picks the history up there.
      const controller = new AbortController();
      const release = onInterrupt(() => controller.abort());
      let sequence = positiveInteger('--after', options.after, 0);
      try {
        for await (const event of client.watchJob(jobId, { afterSequence: sequence, signal: controller.signal })) {
          sequence = Number(event.sequence);
          if (options.json) printJsonLine(eventToJson(event));
          else if (event.type === 'progress') {
            process.stdout.write(`#${event.sequence} restart ${event.restart} iteration ${event.iteration} NLL ` +
              `${event.nllSum.toFixed(4)} correct ${event.correctPrefix}/${event.optimizedTokens} ${JSON.stringify(event.argmaxText)}\n`);
          } else if (event.type === 'result') {
            process.stdout.write(`#${event.sequence} result ${Status[event.status]}: ${JSON.stringify(event.restarts[event.best]?.decodedText)}\n`);
          } else {
            process.stdout.write(`#${event.sequence} ${event.type}\n`);
          }
          if (event.type === 'result') process.exitCode = exitStatus[event.status];
        }
      } finally {
        release();
      }
      if (controller.signal.aborted && process.exitCode === undefined) {
        process.stderr.write(`recite watch: stopped following job ${jobId} after event #${sequence}; the job runs on ` +
          `(\`recite watch ${jobId} --after ${sequence}\` follows it again, \`recite cancel ${jobId}\` stops it)\n`);
        process.exitCode = interruptedExitStatus;
      }
    });

  withServerOptions(program.command('cancel')
    .description('ask a queued or running job to stop')
    .argument('<job>', 'job id')
    .option('--json', 'print {jobId, state} as JSON'))
    .action(async (jobId: string, options: ConnectionOptions & JsonOption) => {
      const { client } = connectToServer(options);
      const state = await client.cancelJob(jobId);
      if (options.json) printJsonLine({ jobId, state: protoEnumName(JobStateSchema, state) });
      else process.stdout.write(`job ${jobId}: cancel requested (${JobState[state]})\n`);
    });

  withServerOptions(program.command('delete')
    .description('delete a finished job with its events (a queued or running job is refused: cancel it first)')
    .argument('<job>', 'job id')
    .option('--json', 'print {jobId, deleted} as JSON'))
    .action(async (jobId: string, options: ConnectionOptions & JsonOption) => {
      const { client } = connectToServer(options);
      await client.deleteJob(jobId);
      if (options.json) printJsonLine({ jobId, deleted: true });
      else process.stdout.write(`job ${jobId}: deleted\n`);
    });
}

/** Flatten a job into the fields a listing shows. */
export function jobSummary(job: Job) {
  const p = job.lastProgress;
  return {
    jobId: job.jobId,
    state: JobState[job.state],
    status: job.result ? Status[job.result.status] : undefined,
    model: job.model,
    label: job.label,
    target: job.targetText,
    iteration: p?.iteration,
    nll: p?.nllSum,
    correct: p ? `${p.correctPrefix}/${job.targetIds.length}` : undefined,
    createdAt: job.createdAt ? new Date(timestampMs(job.createdAt)).toISOString() : '',
  };
}

function truncate(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
