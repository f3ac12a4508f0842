// grpc.health.v1.Health: SERVING once every model is ready, NOT_SERVING while one loads, while the job store cannot
// be written (disk full: new jobs are refused until it can), or while the server drains. Every served service (and
// "", the server as a whole) shares that one status: they all run on the same models, store and process.
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from '../../sdk/gen/health/v1/health_pb.js';
import type { HealthCheckRequest } from '../../sdk/gen/health/v1/health_pb.js';
import { ReciteService } from '../../sdk/gen/recite/v1/recite_pb.js';
import type { ModelRegistry } from './model-registry.js';

const watchIntervalMs = 1000;

export class HealthServiceImpl implements ServiceImpl<typeof Health> {
  private draining = false;

  /** The services health answers for besides "" (the server as a whole); the server names all it serves. */
  private served: ReadonlySet<string> = new Set([ReciteService.typeName]);

  /** `storeReady` says whether the job store can be written now (a server without one passes nothing). */
  constructor(private readonly models: ModelRegistry, private readonly storeReady: () => boolean = () => true) {}

  /** Answer for these services (the fully-qualified names of every service the server serves). */
  serve(services: Iterable<string>): void {
    this.served = new Set(services);
  }

  /** Report NOT_SERVING from now on (graceful shutdown). */
  drain(): void {
    this.draining = true;
  }

  async check(req: HealthCheckRequest) {
    return { status: this.statusOf(req.service) };
  }

  async *watch(req: HealthCheckRequest, ctx: HandlerContext) {
    let last: ServingStatus | undefined;
    while (!ctx.signal.aborted) {
      // Watch answers a service it does not serve with SERVICE_UNKNOWN and goes on (it may be served after a restart)
      const status = this.isServed(req.service) ? this.statusOf(req.service) : ServingStatus.SERVICE_UNKNOWN;
      if (status !== last) yield { status };
      last = status;
      await new Promise((resolve) => setTimeout(resolve, watchIntervalMs));
    }
  }

  async list() {
    const status = { status: this.statusOf('') };
    return { statuses: Object.fromEntries(['', ...this.served].map((name) => [name, status])) };
  }

  private isServed(service: string): boolean {
    return service === '' || this.served.has(service);
  }

  private statusOf(service: string): ServingStatus {
    if (!this.isServed(service)) {
      throw new ConnectError(`service: "${service}" is not served here (served: ${[...this.served].join(', ')})`, Code.NotFound);
    }
    if (this.draining || !this.storeReady()) return ServingStatus.NOT_SERVING;
    return this.models.list().every((m) => m.state === 'READY') ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }
}
