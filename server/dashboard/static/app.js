// The dashboard page: the token (from `#token=`, else localStorage, else asked for), the stream, the job list,
// the job view (`#job=<id>` in the URL, so a reload or a shared link reopens it) and the form that starts a job.
import { call } from './api.js';
import { byId } from './dom.js';
import { JobList } from './job-list.js';
import { JobView } from './job-view.js';
import { DashboardStream } from './stream.js';

const tokenKey = 'recite.token';

function hashParams() {
  return new URLSearchParams(location.hash.slice(1));
}

function setHash(params) {
  const text = params.toString();
  history.replaceState(null, '', `${location.pathname}${location.search}${text ? `#${text}` : ''}`);
}

async function main() {
  byId('change-token').addEventListener('click', () => showTokenPanel());
  byId('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    localStorage.setItem(tokenKey, byId('token-input').value.trim());
    location.reload();
  });

  // A `#token=` link followed in an open tab (one that was refused, say) changes only the fragment: the browser
  // keeps the document and fires hashchange alone. Start over with the new token, as a fresh load would.
  window.addEventListener('hashchange', () => {
    if (takeTokenFromHash()) location.reload();
  });
  takeTokenFromHash();
  const token = localStorage.getItem(tokenKey);
  if (!token) {
    showTokenPanel();
    return;
  }
  try {
    await call('ListJobs', { pageSize: 1 }, token);
  } catch (error) {
    if (error.code === 'unauthenticated') {
      localStorage.removeItem(tokenKey);
      showTokenPanel(`The server refused this token (${error.code}: ${error.message}).`);
    } else {
      showTokenPanel(`Could not check the token: ${error.message}.`);
    }
    return;
  }
  start(token);
}

// Take a token from the URL's `#token=` into localStorage and out of the URL, so it does not linger in the address
// bar or history; return whether there was one.
function takeTokenFromHash() {
  const params = hashParams();
  if (!params.has('token')) return false;
  localStorage.setItem(tokenKey, params.get('token'));
  params.delete('token');
  setHash(params);
  return true;
}

function showTokenPanel(error) {
  byId('token-panel').hidden = false;
  byId('app').hidden = true;
  const p = byId('token-error');
  p.hidden = !error;
  p.textContent = error ?? '';
  byId('token-input').focus();
}

function start(token) {
  byId('app').hidden = false;
  let listed = false; // whether the stream's first job list has come
  const connection = byId('connection');
  const stream = new DashboardStream(token, {
    onStatus(state, detail) {
      connection.className = `dot ${state}`;
      connection.title = `stream: ${detail ?? state}`;
    },
    onHello(clientId) {
      byId('who').textContent = `signed in as ${clientId}`;
    },
    onJobs(jobs) {
      const first = !listed;
      listed = true;
      list.setAll(jobs);
      // A job opened with the page (a #job= link, a reload) had its view placed above an empty list, which has
      // just filled in above it: bring the view back into sight, once.
      if (first && view.jobId) revealView();
    },
    onJob(job) {
      list.upsert(job);
      view.onSummary(job);
    },
    onError(message) {
      showFormError(message);
    },
  });
  const view = new JobView(stream, token);
  const list = new JobList(byId('jobs'), byId('jobs-empty'), byId('jobs-count'), (jobId) => openJob(jobId));
  view.onClose = () => {
    const closed = view.jobId;
    openJob(undefined);
    list.reveal(closed);
  };

  // Open a job on the user's word (a row clicked, Start): its view sits below the list, which may hold a hundred
  // rows, so it is scrolled into sight even when it was open already.
  function openJob(jobId) {
    const params = hashParams();
    if (jobId) params.set('job', jobId);
    else params.delete('job');
    setHash(params);
    route({ reveal: true });
  }

  // Show what the URL names; a job newly opened is brought into sight.
  function route({ reveal = false } = {}) {
    const jobId = hashParams().get('job') ?? undefined;
    const opened = jobId !== undefined && (reveal || jobId !== view.jobId);
    list.select(jobId);
    if (jobId) view.open(jobId);
    else view.close();
    if (opened) revealView();
  }

  stream.connect();
  stream.subscribeJobs();
  route();
  window.addEventListener('hashchange', () => route());
  window.addEventListener('resize', () => view.resize());
  setInterval(() => { list.tick(); view.tick(); }, 1000);
  setUpForm(stream, token, openJob);
}

function setUpForm(stream, token, openJob) {
  const param = byId('f-param');
  const size = byId('f-size');
  const sizeLabel = byId('f-size-label');
  const updateSize = () => {
    sizeLabel.hidden = param.value === 'flat';
    sizeLabel.firstChild.textContent = param.value === 'projected' ? 'K ' : 'P ';
    size.placeholder = param.value === 'projected' ? 'dims' : 'auto';
    size.required = param.value === 'projected';
    if (param.value === 'projected' && !size.value) size.value = '8';
  };
  param.addEventListener('change', updateSize);
  updateSize();

  // The form follows the server's settings schema: its optimizers, defaults and limits (settings-schema.ts).
  fetch('/settings-schema.json').then((r) => r.json()).then(({ choices, defaults, limits }) => {
    const optimizer = byId('f-optimizer');
    for (const { value, label } of choices.optimizer ?? []) {
      optimizer.append(new Option(label, value, value === defaults.optimizer, value === defaults.optimizer));
    }
    byId('f-lr').value = String(defaults.lr);
    byId('f-max').value = String(defaults.maxIterations);
    byId('f-max').max = String(limits.maxIterations);
    byId('f-seed').value = String(defaults.seed);
  }, (error) => showFormError(`Could not read the settings schema: ${error.message}`));

  call('ListModels', {}, token).then(({ models = [] }) => {
    const select = byId('f-model');
    for (const m of models) {
      const option = new Option(`${m.name}${m.state !== 'MODEL_STATE_READY' ? ` (${(m.state ?? '').replace('MODEL_STATE_', '').toLowerCase()})` : ''}`, m.name, m.isDefault, m.isDefault);
      select.append(option);
    }
    byId('f-model-label').hidden = models.length < 2;
  }, () => {});

  byId('job-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    showFormError(undefined);
    const p = param.value;
    const n = Number(size.value);
    const settings = {
      parameterization: p === 'flat' ? { flat: {} }
        : p === 'projected' ? { projected: { dims: n } }
        : { full: size.value ? { promptVectors: n } : {} },
      optimizer: byId('f-optimizer').value,
      lr: Number(byId('f-lr').value),
      maxIterations: Number(byId('f-max').value),
      seed: Number(byId('f-seed').value),
    };
    const model = byId('f-model').value;
    const spec = { text: byId('f-text').value, settings, ...(model ? { model } : {}) };
    const button = byId('f-submit');
    button.disabled = true;
    try {
      const reply = await stream.request({ type: 'submit', spec });
      openJob(reply.jobId);
    } catch (error) {
      showFormError(error.code ? `${error.code}: ${error.message}` : error.message);
    } finally {
      button.disabled = false;
    }
  });
}

function revealView() {
  byId('job-view').scrollIntoView({ block: 'start' });
}

function showFormError(message) {
  const p = byId('form-error');
  p.hidden = !message;
  p.textContent = message ?? '';
}

void main();
