// The dashboard's WebSocket stream, from the browser: authenticates with the `bearer.<token>` subprotocol,
// reconnects with backoff, and on reconnecting asks again for the job list and for each followed job's events
// after the last sequence number it saw, so nothing is shown twice or missed.

const protocolTokenChars = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/; // what a Sec-WebSocket-Protocol value may hold

export class DashboardStream {
  /**
   * @param {string} token the bearer token
   * @param {object} handlers onStatus(state, detail), onHello(clientId), onJobs(jobs), onJob(job), onError(message)
   */
  constructor(token, handlers) {
    this.token = token;
    this.handlers = handlers;
    this.ws = undefined;
    this.followsJobs = false;
    this.jobs = new Map(); // job id → { onEvent, onError, lastSequence }
    this.pending = new Map(); // request id → { resolve, reject }
    this.nextId = 1;
    this.retryMs = 500;
    this.stopped = false;
    this.everOpened = false;
  }

  connect() {
    this.stopped = false;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    // A token with characters a subprotocol cannot carry goes in the query instead.
    const ws = protocolTokenChars.test(this.token)
      ? new WebSocket(url, [`bearer.${this.token}`])
      : new WebSocket(`${url}?token=${encodeURIComponent(this.token)}`);
    this.ws = ws;
    this.handlers.onStatus?.('connecting');
    ws.onopen = () => {
      this.everOpened = true;
      this.retryMs = 500;
      this.handlers.onStatus?.('open');
      if (this.followsJobs) this.send({ type: 'subscribe_jobs' });
      for (const [jobId, s] of this.jobs) this.send({ type: 'subscribe', jobId, afterSequence: s.lastSequence });
    };
    ws.onmessage = (e) => this.onMessage(JSON.parse(e.data));
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      for (const { reject } of this.pending.values()) reject(new Error('the connection to the server closed'));
      this.pending.clear();
      if (this.stopped) return;
      // A refused upgrade (HTTP 401) and an unreachable server look alike from here: the page checks the token.
      this.handlers.onStatus?.('closed', this.everOpened ? `closed (${e.code}); reconnecting` : 'could not connect; retrying');
      setTimeout(() => { if (!this.stopped) this.connect(); }, this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, 10_000);
    };
  }

  close() {
    this.stopped = true;
    this.ws?.close(1000);
  }

  /** Follow the client's job list: `onJobs` with the whole list, then `onJob` per change. */
  subscribeJobs() {
    this.followsJobs = true;
    this.send({ type: 'subscribe_jobs' });
  }

  /** Follow a job's events from the start of its history (replayed), then live. */
  subscribeJob(jobId, onEvent, onError) {
    this.jobs.set(jobId, { onEvent, onError, lastSequence: 0 });
    this.send({ type: 'subscribe', jobId, afterSequence: 0 });
  }

  unsubscribeJob(jobId) {
    if (!this.jobs.delete(jobId)) return;
    this.send({ type: 'unsubscribe', jobId });
  }

  /** Send a request (submit, cancel) and resolve with its reply; an error reply rejects with its message. */
  request(message) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.ws?.readyState !== WebSocket.OPEN) {
        reject(new Error('not connected to the server'));
        return;
      }
      this.pending.set(id, { resolve, reject });
      this.send({ ...message, id });
    });
  }

  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  onMessage(m) {
    switch (m.type) {
      case 'hello':
        this.handlers.onHello?.(m.clientId);
        return;
      case 'event': {
        const s = this.jobs.get(m.jobId);
        if (!s) return;
        const sequence = m.event.sequence ?? 0;
        if (sequence <= s.lastSequence) return;
        s.lastSequence = sequence;
        s.onEvent(m.event);
        return;
      }
      case 'jobs':
        this.handlers.onJobs?.(m.jobs ?? []);
        return;
      case 'job':
        this.handlers.onJob?.(m.job);
        return;
      case 'error': {
        const waiting = m.id !== undefined ? this.pending.get(m.id) : undefined;
        if (waiting) {
          this.pending.delete(m.id);
          const error = new Error(m.message);
          error.code = m.code;
          waiting.reject(error);
        } else if (m.jobId && this.jobs.has(m.jobId)) {
          this.jobs.get(m.jobId).onError?.(`${m.code}: ${m.message}`);
        } else {
          this.handlers.onError?.(`${m.code}: ${m.message}`);
        }
        return;
      }
      default: {
        const waiting = m.id !== undefined ? this.pending.get(m.id) : undefined;
        if (waiting) {
          this.pending.delete(m.id);
          waiting.resolve(m);
        }
      }
    }
  }
}
