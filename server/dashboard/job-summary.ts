// The job summaries the dashboard's job list receives: proto JSON of `Job`, without the bulky float arrays.
import { clone, toJson } from '@bufbuild/protobuf';
import type { JsonValue } from '@bufbuild/protobuf';
import { JobSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { Job } from '../../sdk/gen/recite/v1/recite_pb.js';

/**
 * Encode a job for the list: the result's embeddings and a warm start's values keep their shapes but lose their
 * numbers (a list of gpt2-xl results would otherwise weigh megabytes); subscribe to the job for the embedding.
 */
export function jobSummaryJson(job: Job): JsonValue {
  const init = job.settings?.init?.kind;
  const heavy = job.result?.restarts.some((r) => (r.embedding?.values.length ?? 0) > 0) || init?.case === 'embedding';
  if (!heavy) return toJson(JobSchema, job);
  const light = clone(JobSchema, job);
  for (const restart of light.result?.restarts ?? []) {
    if (restart.embedding) restart.embedding.values = [];
  }
  const lightInit = light.settings?.init?.kind;
  if (lightInit?.case === 'embedding') lightInit.value.values = [];
  return toJson(JobSchema, light);
}
