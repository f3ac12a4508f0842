// The job list: one row per job (status, model, target, iteration, NLL, correct prefix, elapsed), newest first,
// updated in place from the stream's job summaries. On a narrow screen the style sheet stacks each row on two lines
// and names the numbers with their cells' data-label, as the column heads are hidden there.
import { el } from './dom.js';
import { duration, jobBadge, labelText, number, timeMs } from './format.js';

export class JobList {
  /**
   * @param {HTMLTableElement} table
   * @param {HTMLElement} empty shown while there is no job
   * @param {HTMLElement} count the "(n)" beside the heading
   * @param {(jobId: string) => void} onSelect
   */
  constructor(table, empty, count, onSelect) {
    this.body = table.tBodies[0];
    this.empty = empty;
    this.count = count;
    this.onSelect = onSelect;
    this.jobs = new Map(); // job id → proto JSON of Job
    this.rows = new Map(); // job id → <tr>
    this.selected = undefined;
  }

  /** Replace the list (the stream's first message, and again after a reconnect). */
  setAll(jobs) {
    this.jobs.clear();
    for (const row of this.rows.values()) row.remove();
    this.rows.clear();
    for (const job of jobs) this.jobs.set(job.jobId, job);
    this.render();
  }

  /** Add or update one job. */
  upsert(job) {
    const known = this.jobs.has(job.jobId);
    this.jobs.set(job.jobId, job);
    if (known) this.fill(this.rows.get(job.jobId), job);
    else this.render();
  }

  select(jobId) {
    this.selected = jobId;
    for (const [id, row] of this.rows) row.classList.toggle('selected', id === jobId);
  }

  /** Scroll the page just enough to show a job's row (back from its view, which sits below the list). */
  reveal(jobId) {
    this.rows.get(jobId)?.scrollIntoView({ block: 'nearest' });
  }

  /** Advance the elapsed time of unfinished jobs. */
  tick() {
    for (const [id, job] of this.jobs) {
      if (job.state !== 'JOB_STATE_FINISHED') this.rows.get(id).cells[6].textContent = elapsed(job);
    }
  }

  render() {
    const ordered = [...this.jobs.values()].sort((a, b) => timeMs(b.createdAt) - timeMs(a.createdAt) || (a.jobId < b.jobId ? -1 : 1));
    for (const job of ordered) {
      let row = this.rows.get(job.jobId);
      if (!row) {
        row = el('tr', { 'data-job-id': job.jobId, tabindex: 0, onclick: () => this.onSelect(job.jobId),
          onkeydown: (e) => { if (e.key === 'Enter') this.onSelect(job.jobId); } },
        el('td', {}, el('span', { class: 'badge' })), el('td', { class: 'model' }), el('td', { class: 'target' }),
        el('td', { class: 'num', 'data-label': 'iteration' }), el('td', { class: 'num', 'data-label': 'NLL' }),
        el('td', { class: 'num', 'data-label': 'correct' }), el('td', { class: 'num' }));
        this.rows.set(job.jobId, row);
      }
      this.fill(row, job);
      this.body.append(row); // appending in order moves existing rows into place
    }
    this.empty.hidden = this.jobs.size > 0;
    this.count.textContent = this.jobs.size ? `(${this.jobs.size})` : '';
    this.select(this.selected);
  }

  fill(row, job) {
    const badge = jobBadge(job);
    const [status, model, target, iteration, nll, correct, time] = row.cells;
    const b = status.firstChild;
    b.className = `badge ${badge.tone}`;
    b.textContent = badge.label;
    model.textContent = job.model ?? '';
    target.replaceChildren(job.targetText ?? '', ...(job.label ? [' ', el('span', { class: 'job-label' }, labelText(job.label))] : []));
    target.title = job.label ? `${job.targetText}\nlabel ${job.label}` : job.targetText;
    const p = job.lastProgress;
    const tokens = (job.targetIds ?? []).length;
    const restarts = job.settings?.restarts ?? 1;
    const best = job.result?.restarts?.[job.result.best ?? 0];
    if (best) {
      // Finished: the best restart's numbers (the last report may come from another restart).
      const r = best.restart ?? 0;
      iteration.textContent = `${restarts > 1 ? `r${r} · ` : ''}${best.iterationsToHit ?? Math.max((best.iterations ?? 1) - 1, 0)}`;
      nll.textContent = number(best.bestNll);
      correct.textContent = job.result.status === 'STATUS_HIT' ? `${tokens}/${tokens}`
        : p && (p.restart ?? 0) === r ? `${p.correctPrefix ?? 0}/${tokens}` : '–';
    } else {
      iteration.textContent = p ? `${restarts > 1 ? `r${p.restart ?? 0} · ` : ''}${p.iteration ?? 0}` : '–';
      nll.textContent = p ? number(p.nllSum) : '–';
      correct.textContent = p ? `${p.correctPrefix ?? 0}/${tokens}` : '–';
    }
    time.textContent = elapsed(job);
  }
}

function elapsed(job) {
  const end = job.finishedAt ? timeMs(job.finishedAt) : Date.now();
  return duration(end - timeMs(job.createdAt));
}
