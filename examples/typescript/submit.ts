// Submit a job to a recite server, follow its events to the result, and print what the model recites.
//   RECITE_SERVER=http://127.0.0.1:7070 RECITE_TOKEN=… npm start -- "Hello world"
import { Code, ConnectError, Status, createReciteClient } from '@recite/sdk';

const server = process.env.RECITE_SERVER ?? 'http://127.0.0.1:7070';
const token = process.env.RECITE_TOKEN;
const text = process.argv[2] ?? 'Hello world';
if (!token) {
  console.error('set RECITE_TOKEN to a bearer token the server accepts');
  process.exit(1);
}

const client = createReciteClient(server, { token });
try {
  // SubmitJob returns at once; the job runs on the server whether or not anyone watches it.
  const { jobId } = await client.submitJob(text, { parameterization: 'full', maxIterations: 1000, reportEvery: 50 });
  console.log(`job:     ${jobId}`);
  for await (const event of client.watchJob(jobId)) {
    if (event.type === 'progress') {
      console.log(`  iteration ${event.iteration}: NLL ${event.nllSum.toFixed(3)}, ` +
        `${event.correctPrefix}/${event.optimizedTokens} tokens right`);
    } else if (event.type === 'result') {
      const best = event.restarts[event.best]!;
      console.log(`status:  ${Status[event.status]}`);
      console.log(`target:  ${JSON.stringify(event.targetText)} (${event.targetIds.length} tokens)`);
      console.log(`decoded: ${JSON.stringify(best.decodedText)}`);
      console.log(`best:    NLL ${best.bestNll.toFixed(4)} at iteration ${best.bestIteration}, ` +
        `embedding ${best.embedding?.shape.join(' x ')} on ${event.provider} (model ${event.model})`);
    }
  }
} catch (error: unknown) {
  // Connect errors carry a code (Unauthenticated, InvalidArgument, Unavailable, …) and the server's message.
  const e = ConnectError.from(error);
  console.error(`recite: ${e.rawMessage} (${Code[e.code]})`);
  process.exitCode = 1;
}
