// Formatting for the dashboard: statuses, numbers, durations and token texts, from the proto JSON encoding
// (where zero values are omitted: read every number with a default).

const statusNames = {
  STATUS_HIT: 'HIT',
  STATUS_MAX_ITERATIONS: 'max iterations',
  STATUS_PATIENCE: 'patience',
  STATUS_THRESHOLD: 'NLL threshold',
  STATUS_CANCELLED: 'cancelled',
  STATUS_FAILED: 'failed',
};

/** Describe a result status: its label and the badge class that colours it. */
export function statusBadge(status) {
  const label = statusNames[status] ?? 'finished';
  const tone = status === 'STATUS_HIT' ? 'hit' : status === 'STATUS_FAILED' ? 'failed'
    : status === 'STATUS_CANCELLED' ? 'cancelled' : 'budget';
  return { label, tone };
}

/** Describe a job's state (proto JSON of Job): queued, running, or its result's status. */
export function jobBadge(job) {
  if (job.state === 'JOB_STATE_FINISHED') return statusBadge(job.result?.status);
  if (job.state === 'JOB_STATE_RUNNING') return { label: 'running', tone: 'running' };
  return { label: 'queued', tone: 'queued' };
}

/** Write a number with `digits` significant digits, without exponents for everyday magnitudes. */
export function number(x, digits = 4) {
  if (x === undefined || x === null || x === '') return '–';
  const v = Number(x);
  if (!Number.isFinite(v)) return String(x);
  if (v === 0) return '0';
  const magnitude = Math.abs(v);
  if (magnitude >= 1e6 || magnitude < 1e-4) return v.toExponential(digits - 1);
  return String(Number(v.toPrecision(digits)));
}

/** Write milliseconds as "0.4 s", "12 s", "3 min 05 s" or "1 h 02 min". */
export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '–';
  const s = ms / 1000;
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.round(s % 60)).padStart(2, '0')} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, '0')} min`;
}

/** Milliseconds since the epoch of a google.protobuf.Timestamp in its JSON form (RFC 3339). */
export function timeMs(timestamp) {
  return timestamp ? Date.parse(timestamp) : NaN;
}

/** Make a token's whitespace visible: "·" for a space, "⏎" for a newline, "⇥" for a tab. */
export function visibleToken(text) {
  return text.replace(/ /g, '·').replace(/\n/g, '⏎').replace(/\t/g, '⇥') || '∅';
}

// A data set's row job is labelled "NAME/ROW"; a data set submitted without a name is named after its content
// hash, "sha256:" and 64 hex digits, which would push the row id out of sight.
const hashedRowLabel = /^sha256:([0-9a-f]{64})\/(.+)$/s;

/** Write a job's label for display: a hash-named data set's row as "data set 1a2b3c4d · row ROW", others as given. */
export function labelText(label) {
  const m = hashedRowLabel.exec(label ?? '');
  return m ? `data set ${m[1].slice(0, 8)} · row ${m[2]}` : label ?? '';
}

/** Quote a text for display, shortened to `max` characters. */
export function quoted(text, max = 80) {
  const t = text.length > max ? `${text.slice(0, max - 1)}…` : text;
  return `“${t}”`;
}

/** Name an enum value of the proto JSON by its short name, as the CLI does: "OPTIMIZER_ADAM" → "adam". */
export function enumLabel(value, prefix) {
  return String(value ?? '').replace(new RegExp(`^${prefix}_`), '').toLowerCase();
}

/**
 * Describe the settings (proto JSON of JobSettings as the job runs them: the server fills in the defaults, so an
 * absent number is a zero) as label/value pairs. Enum values are shown by their short names, whatever the proto
 * holds: a new optimizer needs no edit here.
 */
export function settingsRows(settings = {}, targetTokens = 0) {
  const p = settings.parameterization ?? {};
  const param = p.flat ? 'flat (one vector)'
    : p.projected ? `projected, K = ${p.projected.dims ?? 0} (${enumLabel(p.projected.basis, 'BASIS') || 'random'} basis)`
    : `full, P = ${p.full?.promptVectors || `${targetTokens} (one per token)`}`;
  const init = settings.init ?? {};
  const initText = init.zeros ? 'zeros' : init.mean ? 'mean token embedding'
    : init.text !== undefined ? `embeddings of ${quoted(init.text, 40)}`
    : init.embedding ? `given embedding (${(init.embedding.shape ?? []).join(' × ')})`
    : `random normal${init.random?.std ? `, std ${number(init.random.std)}` : ', the token embeddings\u2019 std'}`;
  const optimizer = enumLabel(settings.optimizer, 'OPTIMIZER');
  const beams = settings.decoder?.beams ?? 0;
  const reportEvery = settings.reportEvery ?? 0;
  const rows = [
    ['parameterization', param],
    ['initialization', initText],
    ['optimizer', optimizer === 'sgd' ? `sgd (momentum ${number(settings.momentum ?? 0)})` : optimizer],
    ['learning rate', `${number(settings.lr ?? 0)}${settings.lrRelativeToNorm ? ' × embedding norm' : ''}, ${enumLabel(settings.schedule, 'SCHEDULE')} schedule`],
    ['max iterations', String(settings.maxIterations ?? 0)],
    ['hit check', beams > 1 ? `beam search, ${beams} beams every ${settings.decoder?.every ?? 0} iterations` : 'greedy (every iteration)'],
    ['restarts', String(settings.restarts ?? 0)],
    ['seed', String(settings.seed ?? 0)],
    ['report every', `${reportEvery} iteration${reportEvery > 1 ? 's' : ''}`],
  ];
  if (settings.patience) rows.push(['patience', `${settings.patience} iterations`]);
  if (settings.nllThreshold) rows.push(['NLL threshold', number(settings.nllThreshold)]);
  if (settings.curriculum) rows.push(['curriculum', 'growing prefix']);
  // 0 (a job stored before the setting existed) and 1 both mean off
  if (settings.repetitionPenalty && settings.repetitionPenalty !== 1) {
    rows.push(['repetition penalty', `θ = ${number(settings.repetitionPenalty)}`]);
  }
  if (settings.continueAfterHit) rows.push(['after a hit', 'keep optimizing']);
  return rows;
}
