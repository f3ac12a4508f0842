// gRPC server reflection on the server's one port: buf curl discovers the API and calls it with no schema but the
// server's (what grpcurl, Postman and Kreya do), and the reflection protocol itself answers files, symbols and
// extensions as grpc.reflection.v1 and v1alpha say. Reflection needs no token; the calls it describes still do.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { fromBinary } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as v1 from '../../sdk/gen/grpc/reflection/v1/reflection_pb.js';
import * as v1alpha from '../../sdk/gen/grpc/reflection/v1alpha/reflection_pb.js';
import { aliceToken, startTestServer } from '../helpers/test-server.js';
import type { TestServer } from '../helpers/test-server.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const buf = path.join(root, 'node_modules/.bin/buf');
const servedServices = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection', 'recite.v1.DatasetService', 'recite.v1.ReciteService'];

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  await server?.close();
});

/** Run buf curl (asynchronously: the server answers from this process); resolve with its exit code and output. */
async function bufCurl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(buf, ['curl', '--http2-prior-knowledge', ...args], { cwd: root });
    return { code: 0, stdout, stderr };
  } catch (error: unknown) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('buf curl against the server, with reflection only', () => {
  it('lists every service without a token, by reflection v1 and by v1alpha', async () => {
    for (const protocol of ['grpc-v1', 'grpc-v1alpha']) {
      const listed = await bufCurl('--reflect-protocol', protocol, '--list-services', server.url);
      expect(listed.stderr).toBe('');
      expect(listed.stdout.trim().split('\n')).toEqual(servedServices);
    }
    const methods = await bufCurl('--list-methods', server.url);
    expect(methods.stdout.split('\n')).toEqual(expect.arrayContaining([
      'recite.v1.ReciteService/SubmitJob', 'recite.v1.ReciteService/WatchJob', 'recite.v1.DatasetService/SubmitDataset']));
  });

  it('calls Tokenize, SubmitJob and GetJob with the schema it fetched from the server', async () => {
    const auth = ['-H', `authorization: Bearer ${aliceToken}`];
    const tokenized = await bufCurl(...auth, '-d', '{"model":"tiny","text":"Hello world"}',
      `${server.url}/recite.v1.ReciteService/Tokenize`);
    expect(tokenized.stderr).toBe('');
    expect(JSON.parse(tokenized.stdout).tokens).toEqual(['Hello', ' world']);
    // nested messages, a oneof and an enum of recite.proto, over gRPC this time
    const submitted = await bufCurl('--protocol', 'grpc', ...auth,
      '-d', '{"spec":{"text":"Hello world","settings":{"optimizer":"OPTIMIZER_ADAM","maxIterations":5}}}',
      `${server.url}/recite.v1.ReciteService/SubmitJob`);
    expect(submitted.stderr).toBe('');
    const { jobId } = JSON.parse(submitted.stdout) as { jobId: string };
    expect(jobId).toMatch(/\S/);
    const got = await bufCurl(...auth, '-d', JSON.stringify({ jobId }), `${server.url}/recite.v1.ReciteService/GetJob`);
    const { job } = JSON.parse(got.stdout);
    expect(job).toMatchObject({ jobId, targetText: 'Hello world', settings: { optimizer: 'OPTIMIZER_ADAM', maxIterations: 5 } });
  });

  it('still needs a token for the calls themselves', async () => {
    const refused = await bufCurl('-d', '{}', `${server.url}/recite.v1.ReciteService/ListModels`);
    expect(refused.code).not.toBe(0);
    expect(refused.stdout + refused.stderr).toMatch(/unauthenticated[\s\S]*missing bearer token/);
  });
});

describe('the reflection protocol', () => {
  const transport = () => createGrpcTransport({ baseUrl: server.url });

  /** Send `requests` on one v1 reflection stream; return the answers in order. */
  async function reflect(requests: MessageInitShape<typeof v1.ServerReflectionRequestSchema>['messageRequest'][]) {
    const client = createClient(v1.ServerReflection, transport());
    const answers = [];
    async function* send() {
      for (const messageRequest of requests) yield { host: 'recite', messageRequest };
    }
    for await (const res of client.serverReflectionInfo(send())) answers.push(res);
    return answers;
  }

  const fileNames = (res: { messageResponse: v1.ServerReflectionResponse['messageResponse'] }) => {
    if (res.messageResponse.case !== 'fileDescriptorResponse') throw new Error(`expected files, got ${res.messageResponse.case}`);
    return res.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
  };

  it('answers a symbol with its file first, then its imports, each sent once per stream', async () => {
    const [bySymbol, byMethod, byFile] = await reflect([
      { case: 'fileContainingSymbol', value: 'recite.v1.ReciteService' },
      { case: 'fileContainingSymbol', value: 'recite.v1.ReciteService.SubmitJob' },
      { case: 'fileByFilename', value: 'recite/v1/dataset.proto' },
    ]);
    const first = fileNames(bySymbol!);
    expect(first[0]!.name).toBe('recite/v1/recite.proto');
    expect(first[0]!.service[0]!.method.map((m) => m.name)).toEqual(expect.arrayContaining(['SubmitJob', 'WatchJob', 'CancelJob']));
    expect(first.map((f) => f.name)).toEqual(expect.arrayContaining(['buf/validate/validate.proto', 'google/protobuf/timestamp.proto', 'google/protobuf/descriptor.proto']));
    expect(bySymbol!.validHost).toBe('recite');
    expect(bySymbol!.originalRequest?.messageRequest.value).toBe('recite.v1.ReciteService');
    // the stream has recite.proto's imports already: only the file asked for comes again
    expect(fileNames(byMethod!).map((f) => f.name)).toEqual(['recite/v1/recite.proto']);
    expect(fileNames(byFile!).map((f) => f.name)).toEqual(['recite/v1/dataset.proto']);
  });

  it('answers extensions and refuses what it does not serve with NOT_FOUND', async () => {
    const [ext, numbers, unknown, unknownFile] = await reflect([
      { case: 'fileContainingExtension', value: { containingType: 'google.protobuf.FieldOptions', extensionNumber: 1159 } },
      { case: 'allExtensionNumbersOfType', value: 'google.protobuf.FieldOptions' },
      { case: 'fileContainingSymbol', value: 'recite.v1.NoSuchThing' },
      { case: 'fileByFilename', value: 'secret/thing.proto' },
    ]);
    expect(fileNames(ext!)[0]!.name).toBe('buf/validate/validate.proto');
    expect(numbers!.messageResponse).toMatchObject({ case: 'allExtensionNumbersResponse',
      value: { baseTypeName: 'google.protobuf.FieldOptions', extensionNumber: [1159, 1160] } });
    for (const [res, what] of [[unknown, 'recite.v1.NoSuchThing'], [unknownFile, 'secret/thing.proto']] as const) {
      expect(res!.messageResponse.case).toBe('errorResponse');
      expect(res!.messageResponse.value).toMatchObject({ errorCode: 5, errorMessage: expect.stringContaining(what) });
    }
  });

  it('answers v1alpha the same as v1', async () => {
    const client = createClient(v1alpha.ServerReflection, transport());
    async function* send() {
      yield { messageRequest: { case: 'listServices' as const, value: '*' } };
    }
    const answers = [];
    for await (const res of client.serverReflectionInfo(send())) answers.push(res);
    expect(answers).toHaveLength(1);
    const listed = answers[0]!.messageResponse;
    expect(listed.case).toBe('listServicesResponse');
    expect(listed.case === 'listServicesResponse' && listed.value.service.map((s) => s.name)).toEqual(servedServices);
  });
});
