// One job, live: its NLL curve and gradient statistics over iterations, the target's tokens coloured by their
// NLL, the text the model produces now, the settings and, at the end, the result with the embedding to download.
// Events arrive replayed from the store first (a finished job, a reloaded tab), then live; the page redraws at
// most once per animation frame however fast they come.
import { call } from './api.js';
import { LogChart, palette } from './charts.js';
import { byId, el } from './dom.js';
import { duration, jobBadge, labelText, number, quoted, settingsRows, statusBadge, timeMs, visibleToken } from './format.js';
import { resultSafetensors } from './safetensors.js';

const nllForRed = 10; // per-token NLL (nats) drawn fully red: about ln(vocab) for GPT-2, a uniform guess

// The hue of a token's chip: green (130) at NLL 0 through yellow to red (0) at nllForRed and above.
function nllHue(nll) {
  return Math.round(130 * (1 - Math.min(Math.max(nll, 0) / nllForRed, 1)));
}

// The legend of the chips' colours, written from the same scale: a swatch and its NLL at each end and midway.
function legendKeys() {
  return [0, nllForRed / 2, nllForRed].map((nll, i, all) => {
    const swatch = el('span', { class: 'swatch', 'aria-hidden': 'true' });
    swatch.style.setProperty('--h', String(nllHue(nll)));
    return el('span', { class: 'key' }, swatch, i === all.length - 1 ? `${nll}+ nats` : String(nll));
  });
}

export class JobView {
  constructor(stream, token) {
    this.stream = stream;
    this.token = token;
    this.jobId = undefined;
    this.nllChart = undefined;
    this.gradChart = undefined;
    this.downloadUrl = undefined;
    this.frame = 0;
    byId('jv-close').addEventListener('click', () => this.onClose?.());
    byId('jv-cancel').addEventListener('click', () => this.cancel());
    byId('jv-legend-nll').replaceChildren('token NLL ', ...legendKeys());
  }

  /** Show a job: its summary at once, then its whole history and live events. */
  open(jobId) {
    if (jobId === this.jobId) return;
    this.close();
    this.jobId = jobId;
    this.job = undefined;
    this.tokenTexts = undefined;
    this.chips = undefined;
    this.s = { restarts: new Map(), focus: 0, points: 0, coalesced: 0, latest: undefined, result: undefined,
      position: undefined, started: false };
    byId('job-view').hidden = false;
    byId('job-placeholder').hidden = true;
    byId('jv-title').textContent = '…';
    byId('jv-meta').textContent = jobId;
    byId('jv-error').hidden = true;
    byId('jv-settings').replaceChildren();
    byId('jv-tokens').replaceChildren();
    byId('jv-now').replaceChildren();
    byId('jv-now-note').textContent = '';
    byId('jv-result').replaceChildren(el('p', { class: 'muted' }, 'Not finished yet.'));
    delete byId('jv-result').dataset.jobId;
    for (const id of ['st-iteration', 'st-nll', 'st-bits', 'st-correct', 'st-lr', 'st-norm']) byId(id).textContent = '–';
    this.nllChart = new LogChart(byId('chart-nll'), []);
    this.gradChart = new LogChart(byId('chart-grad'), [
      { label: 'mean |g|', color: palette[0] }, { label: 'L2', color: palette[1] }, { label: 'max |g|', color: palette[2] },
    ]);
    this.nllSeries = 0;
    call('GetJob', { jobId }, this.token).then(({ job }) => {
      if (this.jobId !== jobId) return;
      this.job = job;
      this.loadTokenTexts(job);
      this.render();
    }, (error) => this.showError(`${error.code}: ${error.message}`));
    this.stream.subscribeJob(jobId, (event) => this.onEvent(event), (message) => this.showError(message));
  }

  close() {
    if (!this.jobId) return;
    this.stream.unsubscribeJob(this.jobId);
    this.jobId = undefined;
    this.nllChart?.destroy();
    this.gradChart?.destroy();
    if (this.downloadUrl) URL.revokeObjectURL(this.downloadUrl);
    this.downloadUrl = undefined;
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    byId('job-view').hidden = true;
    byId('job-placeholder').hidden = false;
  }

  /** A newer summary of the open job from the job list. */
  onSummary(job) {
    if (job.jobId !== this.jobId || !this.job) return;
    this.job = { ...job, result: job.result ?? this.job.result };
    this.schedule();
  }

  tick() {
    if (this.jobId && !this.s.result) this.renderHeader();
  }

  resize() {
    this.nllChart?.resize();
    this.gradChart?.resize();
  }

  onEvent(event) {
    const s = this.s;
    if (event.queued) {
      s.position = event.queued.position ?? 0;
    } else if (event.started) {
      s.started = true;
      s.focus = event.started.restart ?? 0;
      this.restart(s.focus).started = event.started;
    } else if (event.progress) {
      const p = event.progress;
      const r = this.restart(p.restart ?? 0);
      r.it.push(p.iteration ?? 0);
      r.nll.push(positive(p.nllSum));
      r.gMean.push(positive(p.gradMeanAbs));
      r.gL2.push(positive(p.gradL2));
      r.gMax.push(positive(p.gradMaxAbs));
      r.latest = p;
      s.latest = p;
      s.points++;
      s.coalesced += p.coalesced ?? 0;
      s.started = true;
    } else if (event.restartResult) {
      this.restart(event.restartResult.restart ?? 0).result = event.restartResult;
    } else if (event.result) {
      s.result = event.result;
    }
    this.schedule();
  }

  restart(r) {
    let entry = this.s.restarts.get(r);
    if (!entry) {
      entry = { it: [], nll: [], gMean: [], gL2: [], gMax: [], latest: undefined, started: undefined, result: undefined };
      this.s.restarts.set(r, entry);
    }
    return entry;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  render() {
    if (!this.jobId) return;
    this.renderHeader();
    this.renderStats();
    this.renderCharts();
    this.renderTokens();
    this.renderNow();
    this.renderSettings();
    this.renderResult();
  }

  renderHeader() {
    const { job, s } = this;
    const badge = s.result ? statusBadge(s.result.status)
      : s.started ? { label: 'running', tone: 'running' }
      : job ? jobBadge(job) : { label: 'queued', tone: 'queued' };
    const status = byId('jv-status');
    status.className = `badge ${badge.tone}`;
    status.textContent = s.position !== undefined && badge.tone === 'queued' ? `queued (#${s.position + 1})` : badge.label;
    byId('jv-cancel').hidden = Boolean(s.result) || job?.state === 'JOB_STATE_FINISHED';
    if (!job) return;
    byId('jv-title').textContent = quoted(job.targetText, 120);
    byId('jv-title').title = job.targetText;
    const created = timeMs(job.createdAt);
    const ran = s.result ? `ran ${duration(s.result.elapsedMs ?? 0)} on ${s.result.provider || '?'}`
      : `${duration(Date.now() - created)} since submitted`;
    byId('jv-meta').textContent = [
      `job ${job.jobId}`, `model ${job.model}`, `${(job.targetIds ?? []).length} target tokens`,
      job.label ? `label ${labelText(job.label)}` : '', `created ${new Date(created).toLocaleTimeString()}`, ran,
    ].filter(Boolean).join(' · ');
  }

  renderStats() {
    const p = this.s.restarts.get(this.s.focus)?.latest ?? this.s.latest;
    if (!p) return;
    const restarts = this.s.restarts.size;
    byId('st-iteration').textContent = `${restarts > 1 ? `r${p.restart ?? 0} · ` : ''}${p.iteration ?? 0}`;
    byId('st-nll').textContent = number(p.nllSum);
    byId('st-bits').textContent = number(p.bitsPerToken, 3);
    byId('st-correct').textContent = `${p.correctPrefix ?? 0} / ${(this.job?.targetIds ?? p.argmaxIds ?? []).length}`;
    byId('st-lr').textContent = number(p.lr, 3);
    byId('st-norm').textContent = number(p.promptNorm, 3);
  }

  renderCharts() {
    const { restarts, focus, points, coalesced } = this.s;
    const keys = [...restarts.keys()].sort((a, b) => a - b);
    if (keys.length === 0) return;
    if (keys.length !== this.nllSeries) {
      this.nllSeries = keys.length;
      this.nllChart.destroy();
      this.nllChart = new LogChart(byId('chart-nll'), keys.map((r, i) => ({
        label: keys.length > 1 ? `restart ${r}` : 'NLL', color: palette[i % palette.length],
      })));
    }
    if (keys.length === 1) {
      const r = restarts.get(keys[0]);
      this.nllChart.setData(r.it, [r.nll]);
    } else {
      // Restarts share the x axis: the union of their iterations, null where one has no report.
      const xs = [...new Set(keys.flatMap((k) => restarts.get(k).it))].sort((a, b) => a - b);
      const at = new Map(xs.map((x, i) => [x, i]));
      const ys = keys.map((k) => {
        const r = restarts.get(k);
        const y = new Array(xs.length).fill(null);
        r.it.forEach((x, i) => { y[at.get(x)] = r.nll[i]; });
        return y;
      });
      this.nllChart.setData(xs, ys);
    }
    byId('chart-nll').dataset.points = String(points);
    const f = restarts.get(focus) ?? restarts.get(keys[0]);
    this.gradChart.setData(f.it, [f.gMean, f.gL2, f.gMax]);
    byId('chart-grad').dataset.points = String(f.it.length);
    byId('grad-caption').textContent = keys.length > 1 ? `(restart ${focus}, log scale)` : '(log scale)';
    const note = byId('jv-coalesced');
    note.hidden = coalesced === 0;
    note.textContent = `${coalesced} progress reports were merged on the way (the connection fell behind); the curves skip them.`;
  }

  loadTokenTexts(job) {
    const ids = job.targetIds ?? [];
    const fallback = () => { this.tokenTexts = ids.map((id) => `#${id}`); this.schedule(); };
    call('Tokenize', { model: job.model, text: job.targetText, allowEndOfText: true }, this.token).then((t) => {
      const same = (t.ids ?? []).length === ids.length && ids.every((id, i) => t.ids[i] === id);
      if (!same) return fallback(); // a target given as ids need not be what its text tokenizes to
      this.tokenTexts = t.tokens;
      this.schedule();
    }, fallback);
  }

  renderTokens() {
    const ids = this.job?.targetIds;
    if (!ids || !this.tokenTexts) return;
    const box = byId('jv-tokens');
    if (!this.chips) {
      this.chips = ids.map((id, i) => {
        const chip = el('span', { class: 'tok pending', title: `token ${i}: id ${id}` },
          el('span', { class: 'text' }, visibleToken(this.tokenTexts[i] ?? `#${id}`)),
          el('span', { class: 'mark' }), el('span', { class: 'nll' }, '–'));
        return chip;
      });
      box.replaceChildren(...this.chips);
    }
    const p = this.s.restarts.get(this.s.focus)?.latest ?? this.s.latest;
    if (!p) return;
    const nlls = p.tokenNll ?? [];
    const argmax = p.argmaxIds ?? [];
    this.chips.forEach((chip, i) => {
      const optimized = i < nlls.length;
      const right = argmax[i] === ids[i];
      chip.className = `tok ${optimized ? (right ? 'right' : 'wrong') : 'pending'}`;
      if (optimized) {
        const nll = Number(nlls[i]);
        chip.style.setProperty('--h', String(nllHue(nll)));
        chip.children[1].textContent = right ? '✓' : '✗';
        chip.children[2].textContent = number(nll, 3);
        chip.title = `token ${i}: id ${ids[i]} · NLL ${number(nll)} · argmax ${right ? 'right' : `id ${argmax[i]}`}`;
      } else {
        chip.children[1].textContent = '';
        chip.children[2].textContent = '–';
        chip.title = `token ${i}: id ${ids[i]} · not optimized yet (curriculum)`;
      }
    });
  }

  renderNow() {
    const p = this.s.restarts.get(this.s.focus)?.latest ?? this.s.latest;
    if (!p) return;
    const text = p.argmaxText ?? '';
    const k = p.correctPrefix ?? 0;
    const prefix = this.tokenTexts ? this.tokenTexts.slice(0, k).join('') : '';
    const split = prefix && text.startsWith(prefix) ? prefix.length : 0;
    byId('jv-now').replaceChildren(
      el('span', { class: 'ok' }, text.slice(0, split)),
      el('span', { class: 'rest' }, text.slice(split)),
    );
    const total = (this.job?.targetIds ?? []).length;
    byId('jv-now-note').textContent = [
      `teacher-forced argmax at iteration ${p.iteration ?? 0}: ${k} of ${total} leading tokens right`,
      p.decodedText !== undefined ? `beam search decodes ${quoted(p.decodedText)}` : '',
    ].filter(Boolean).join(' · ');
  }

  renderSettings() {
    const job = this.job;
    const dl = byId('jv-settings');
    if (!job || dl.childElementCount) return;
    const rows = [['model', job.model], ...(job.label ? [['label', job.label]] : []),
      ...settingsRows(job.settings, (job.targetIds ?? []).length)];
    dl.replaceChildren(...rows.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
  }

  renderResult() {
    const result = this.s.result;
    const box = byId('jv-result');
    if (!result || box.dataset.jobId === this.jobId) return;
    box.dataset.jobId = this.jobId;
    const restarts = result.restarts ?? [];
    const best = restarts[result.best ?? 0] ?? {};
    const badge = statusBadge(result.status);
    const hitAt = best.iterationsToHit;
    const nodes = [
      el('p', { class: 'result-head' }, el('span', { class: `badge ${badge.tone}`, id: 'jv-result-status' }, badge.label), ' ',
        hitAt !== undefined ? `hit at iteration ${hitAt}` : `after ${best.iterations ?? 0} iterations`,
        restarts.length > 1 ? ` (best of ${restarts.length} restarts: restart ${best.restart ?? 0})` : ''),
      el('dl', { class: 'kv' },
        el('dt', {}, 'best NLL'), el('dd', {}, `${number(best.bestNll)} at iteration ${best.bestIteration ?? 0}`),
        el('dt', {}, 'decoded'), el('dd', { class: 'decoded' }, quoted(best.decodedText ?? '', 200)),
        el('dt', {}, 'iterations'), el('dd', {}, String(best.iterations ?? 0)),
        el('dt', {}, 'time'), el('dd', {}, `${duration(result.elapsedMs ?? 0)} on ${result.provider || '?'} (model ${result.model})`),
        best.error ? [el('dt', {}, 'error'), el('dd', { class: 'error-text' }, best.error)] : null),
    ];
    const nearest = best.nearestTokens ?? [];
    if (nearest.length) {
      nodes.push(el('h4', {}, 'Nearest vocabulary tokens per prompt vector (cosine)'));
      nodes.push(el('table', { class: 'nearest', id: 'jv-nearest' }, el('tbody', {}, nearest.map((n, i) => el('tr', {},
        el('th', {}, `v${i}`),
        el('td', {}, (n.tokens ?? []).map((t) => el('span', { class: 'near' },
          el('code', {}, visibleToken(t.text ?? '')), ' ', el('span', { class: 'muted' }, number(t.cosine ?? 0, 2))))))))));
    }
    if (restarts.length > 1) {
      nodes.push(el('h4', {}, 'Restarts'));
      nodes.push(el('table', { class: 'restarts' },
        el('thead', {}, el('tr', {}, ['restart', 'seed', 'status', 'iterations', 'hit at', 'best NLL'].map((h) => el('th', {}, h)))),
        el('tbody', {}, restarts.map((r) => el('tr', { class: r === best ? 'best' : '' },
          el('td', {}, String(r.restart ?? 0)), el('td', {}, String(r.seed ?? 0)), el('td', {}, statusBadge(r.status).label),
          el('td', {}, String(r.iterations ?? 0)), el('td', {}, r.iterationsToHit !== undefined ? String(r.iterationsToHit) : '–'),
          el('td', {}, number(r.bestNll)))))));
    }
    const shape = best.embedding?.shape ?? [];
    if (best.embedding?.values?.length) {
      const bytes = resultSafetensors(result);
      this.downloadUrl = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
      nodes.push(el('p', { class: 'download' }, el('a', {
        id: 'jv-download', class: 'button primary', href: this.downloadUrl,
        download: `recite-${this.jobId.slice(0, 8)}.safetensors`,
      }, 'Download embedding'), ' ', el('span', { class: 'muted small' },
        `${shape.join(' × ')} float32 · safetensors · ${bytes.length.toLocaleString()} bytes`)));
    }
    box.replaceChildren(...nodes);
    this.renderHeader();
  }

  cancel() {
    if (!this.jobId) return;
    this.stream.request({ type: 'cancel', jobId: this.jobId }).catch((error) => this.showError(error.message));
  }

  showError(message) {
    const p = byId('jv-error');
    p.textContent = message;
    p.hidden = false;
  }
}

function positive(v) {
  const x = Number(v);
  return x > 0 && Number.isFinite(x) ? x : null; // a log scale has no place for 0
}
