// gRPC server reflection, grpc.reflection.v1 and the older v1alpha that many tools still ask first, for every service
// mounted on the router: grpcurl, buf curl --reflect, Postman and Kreya discover the API from the server alone. The
// descriptors come from the generated code (each service's file and the files it imports), so they are always the
// ones the server runs; they carry no comments (proto/ has them). Reflection needs no token, like health: it shows
// the schema that proto/ publishes anyway, and tools fetch it before a user has set any header. The .proto files of
// the reflection API come from @grpc/reflection (its service implementation is for grpc-js servers, not Connect).
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import type { DescFile, DescService, MessageInitShape, MessageShape } from '@bufbuild/protobuf';
import { nestedTypes } from '@bufbuild/protobuf/reflect';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import type { ConnectRouter, ServiceImpl } from '@connectrpc/connect';
import { Code } from '@connectrpc/connect';
import * as v1 from '../../sdk/gen/grpc/reflection/v1/reflection_pb.js';
import * as v1alpha from '../../sdk/gen/grpc/reflection/v1alpha/reflection_pb.js';

type Request = MessageShape<typeof v1.ServerReflectionRequestSchema>;
type Response = MessageShape<typeof v1.ServerReflectionResponseSchema>;
type Answer = NonNullable<MessageInitShape<typeof v1.ServerReflectionResponseSchema>['messageResponse']>;

/** The services reflection names, so that clients that check for it before using it see it listed. */
const reflectionServices: readonly DescService[] = [v1.ServerReflection, v1alpha.ServerReflection];

/** What reflection answers from: the served services and, by name, every file, symbol and extension they use. */
class SchemaIndex {
  readonly serviceNames: string[];

  private readonly files = new Map<string, DescFile>();

  /** Fully-qualified names of services, methods, messages, fields, oneofs, enums and extensions: their file. */
  private readonly symbols = new Map<string, DescFile>();

  /** Extended message name, then field number: the file that declares the extension. */
  private readonly extensions = new Map<string, Map<number, DescFile>>();

  constructor(services: readonly DescService[]) {
    this.serviceNames = [...new Set(services.map((s) => s.typeName))].sort();
    for (const service of services) this.addFile(service.file);
  }

  private addFile(file: DescFile): void {
    if (this.files.has(file.proto.name)) return;
    this.files.set(file.proto.name, file);
    file.dependencies.forEach((dep) => this.addFile(dep));
    for (const type of nestedTypes(file)) {
      this.symbols.set(type.typeName, file);
      if (type.kind === 'service') {
        for (const method of type.methods) this.symbols.set(`${type.typeName}.${method.name}`, file);
      } else if (type.kind === 'message') {
        for (const field of type.fields) this.symbols.set(`${type.typeName}.${field.name}`, file);
        for (const oneof of type.oneofs) this.symbols.set(`${type.typeName}.${oneof.name}`, file);
      } else if (type.kind === 'extension') {
        const byNumber = this.extensions.get(type.extendee.typeName) ?? new Map<number, DescFile>();
        byNumber.set(type.number, file);
        this.extensions.set(type.extendee.typeName, byNumber);
      }
    }
  }

  fileByName(name: string): DescFile | undefined {
    return this.files.get(name);
  }

  fileOfSymbol(symbol: string): DescFile | undefined {
    return this.symbols.get(symbol);
  }

  fileOfExtension(extendee: string, number: number): DescFile | undefined {
    return this.extensions.get(extendee)?.get(number);
  }

  extensionNumbers(extendee: string): number[] | undefined {
    const byNumber = this.extensions.get(extendee);
    // a message this server knows with no extensions has none; one it does not know is not found
    if (!byNumber) return this.symbols.has(extendee) ? [] : undefined;
    return [...byNumber.keys()].sort((a, b) => a - b);
  }
}

/** Answer one request of a stream; `sent` holds the files this stream already has, which are not sent again. */
function answer(index: SchemaIndex, req: Request, sent: Set<string>): Answer {
  const notFound = (what: string): Answer => ({
    case: 'errorResponse',
    value: { errorCode: Code.NotFound, errorMessage: `${what} is not served here` },
  });
  // The file asked for and, dependencies first, whichever of its imports the stream does not have yet.
  const withImports = (file: DescFile): Answer => {
    const files: DescFile[] = [];
    const visit = (f: DescFile) => {
      if (sent.has(f.proto.name)) return;
      sent.add(f.proto.name);
      f.dependencies.forEach(visit);
      files.push(f);
    };
    sent.delete(file.proto.name);
    visit(file);
    files.unshift(...files.splice(files.indexOf(file), 1)); // the file asked for comes first, as clients expect
    return {
      case: 'fileDescriptorResponse',
      value: { fileDescriptorProto: files.map((f) => toBinary(FileDescriptorProtoSchema, f.proto)) },
    };
  };
  const request = req.messageRequest;
  switch (request.case) {
    case 'listServices':
      return {
        case: 'listServicesResponse',
        value: { service: index.serviceNames.map((name) => ({ name })) },
      };
    case 'fileByFilename': {
      const file = index.fileByName(request.value);
      return file ? withImports(file) : notFound(`file "${request.value}"`);
    }
    case 'fileContainingSymbol': {
      const file = index.fileOfSymbol(request.value);
      return file ? withImports(file) : notFound(`symbol "${request.value}"`);
    }
    case 'fileContainingExtension': {
      const { containingType, extensionNumber } = request.value;
      const file = index.fileOfExtension(containingType, extensionNumber);
      return file ? withImports(file) : notFound(`extension ${extensionNumber} of "${containingType}"`);
    }
    case 'allExtensionNumbersOfType': {
      const numbers = index.extensionNumbers(request.value);
      if (!numbers) return notFound(`message "${request.value}"`);
      return {
        case: 'allExtensionNumbersResponse',
        value: { baseTypeName: request.value, extensionNumber: numbers },
      };
    }
    default:
      return {
        case: 'errorResponse',
        value: { errorCode: Code.InvalidArgument,
          errorMessage: 'message_request: none of file_by_filename, file_containing_symbol, file_containing_extension, ' +
            'all_extension_numbers_of_type or list_services is set' },
      };
  }
}

/** grpc.reflection.v1.ServerReflection over the schema of the given services. */
export class ServerReflectionImpl implements ServiceImpl<typeof v1.ServerReflection> {
  private readonly index: SchemaIndex;

  constructor(services: readonly DescService[]) {
    this.index = new SchemaIndex(services);
  }

  /** The fully-qualified names of the services reflection describes, sorted. */
  get serviceNames(): string[] {
    return this.index.serviceNames;
  }

  async *serverReflectionInfo(requests: AsyncIterable<Request>): AsyncIterable<Response> {
    const sent = new Set<string>();
    for await (const req of requests) {
      yield create(v1.ServerReflectionResponseSchema,
        { validHost: req.host, originalRequest: req, messageResponse: answer(this.index, req, sent) });
    }
  }
}

/** grpc.reflection.v1alpha.ServerReflection: v1's messages under another package, so the same wire bytes. */
export class ServerReflectionV1AlphaImpl implements ServiceImpl<typeof v1alpha.ServerReflection> {
  constructor(private readonly v1Impl: ServerReflectionImpl) {}

  async *serverReflectionInfo(requests: AsyncIterable<MessageShape<typeof v1alpha.ServerReflectionRequestSchema>>) {
    async function* asV1() {
      for await (const req of requests) {
        yield fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, req));
      }
    }
    for await (const res of this.v1Impl.serverReflectionInfo(asV1())) {
      yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, res));
    }
  }
}

/**
 * Mount grpc.reflection v1 and v1alpha on `router` for every service mounted on it so far (mount the others first),
 * and return the names of all the services it serves now, reflection's included.
 */
export function serveReflection(router: ConnectRouter): string[] {
  const reflection = new ServerReflectionImpl([...router.handlers.map((h) => h.service), ...reflectionServices]);
  router.service(v1.ServerReflection, reflection).service(v1alpha.ServerReflection, new ServerReflectionV1AlphaImpl(reflection));
  return reflection.serviceNames;
}
