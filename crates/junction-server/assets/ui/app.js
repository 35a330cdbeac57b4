// Junction web UI: sign-in, the Integration Hub grid, Global Parameters
// and Settings (spec 000).
//
// Plain ES2020 served as an ES module with no build step: the server embeds
// this file and serves it as it is. It talks only to the public /api/v1.
//
// Credentials never reach JavaScript storage: the session lives in an
// HttpOnly cookie the server sets, and the CSRF token is kept only in the
// `session` variable below, so a reload asks the server again.

const REFRESH_MS = 60_000;
// While the action menu is open a refresh would replace the row it belongs
// to, so the automatic refresh waits this long and tries again.
const REFRESH_RETRY_MS = 5_000;
const STATUS_CLEAR_MS = 10_000;
const HISTORY_LIMIT = 50;
// Run states a Stop button can still act on (spec 004's task states).
const STOPPABLE = new Set(['PENDING', 'STARTED']);
// Run state → colour family used by the CSS (blue, green, red, yellow, grey).
const STATE_CLASS = {
  STARTED: 'running', PENDING: 'queued', WAITING: 'queued', RETRY: 'warning',
  SUCCESS: 'success', FAILURE: 'failure', REVOKED: 'warning',
};
const TRIGGER_LABEL = { automated: 'Automated Job', manual: 'Manual', scheduled: 'Scheduled' };

const $ = (id) => document.getElementById(id);
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

let session = null; // {user, role, csrf_token} while signed in
let jobs = [];
let refreshTimer = 0;
let refreshSeq = 0; // answers to older refreshes are dropped
let statusTimer = 0;
let menu = null; // {job, button} while the action menu is open
let historyJob = null;
let historySeq = 0;

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
    this.handled = false; // true once the UI already reacted (session lost)
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && method !== 'HEAD' && session) headers['X-CSRF-Token'] = session.csrf_token;

  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the Junction server. Check the connection and try again.');
  }
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // A proxy's HTML error page: fall back to the status line below.
  }
  if (res.ok) return data;

  const e = data && data.error;
  const err = new ApiError(res.status, e?.code ?? `http_${res.status}`,
    e?.message || `The server answered ${res.status} ${res.statusText}`.trim(), e?.details);
  // A 401 on anything but the session itself means the cookie expired or was
  // revoked: go back to sign-in instead of showing a confusing error.
  if (res.status === 401 && session && !path.startsWith('/api/v1/session')) {
    endSession('Your session has ended. Sign in again.');
    err.handled = true;
  }
  throw err;
}

function messageOf(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err.message}`;
  const extra = err.details.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message)).filter(Boolean);
  return extra.length ? `${err.message} (${extra.join('; ')})` : err.message;
}

const jobPath = (name) => `/api/v1/jobs/${encodeURIComponent(name)}`;
const appPath = (name) => `/api/v1/applications/${encodeURIComponent(name)}`;

// ---------------------------------------------------------------- DOM helpers

// Builds elements from data without ever parsing it as HTML: `text` becomes
// textContent, `data` the dataset, booleans are properties, the rest attributes.
function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key === 'data') Object.assign(node.dataset, value);
    else if (typeof value === 'boolean') node[key] = value;
    else node.setAttribute(key, String(value));
  }
  node.append(...children);
  return node;
}

function toDate(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !Number.isNaN(d.getTime()) ? d : null;
}

// Local time for reading, UTC (ISO 8601) on hover.
function timeEl(iso) {
  const d = toDate(iso);
  if (!d) return el('span', { class: 'muted', text: iso || '—' });
  return el('time', { datetime: d.toISOString(), title: d.toISOString(), text: dateFormat.format(d) });
}

function formatDuration(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min ${total % 60} s`;
}

function stateBadge(state) {
  return el('span', { class: `state state-${STATE_CLASS[state] ?? 'other'}`, text: state || 'UNKNOWN' });
}

function showBanner(id, message, source = '') {
  const banner = $(id);
  banner.textContent = message || '';
  banner.hidden = !message;
  banner.dataset.source = source;
}

// The two banners answer the latest action, so each one clears the other.
function showError(err, source = 'action') {
  if (err.handled) return;
  showBanner('grid-status', '');
  showBanner('grid-error', messageOf(err), source);
}

function announce(message) {
  showBanner('grid-error', '');
  showBanner('grid-status', message);
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => showBanner('grid-status', ''), STATUS_CLEAR_MS);
}

// Rows are re-rendered on every refresh. To keep keyboard users where they
// were, remember the focused control as (row key, data-ctl) and find it again.
function focusKey(node) {
  const row = node?.closest?.('tr[data-job], tr[data-run]');
  return { node, body: row?.parentElement, key: row && (row.dataset.job ?? row.dataset.run), ctl: node?.dataset?.ctl };
}

function refocus(k, fallback) {
  if (k.node?.isConnected && !k.node.disabled) return k.node.focus();
  const row = k.body && [...k.body.rows].find((r) => (r.dataset.job ?? r.dataset.run) === k.key);
  const target = row && ((k.ctl && row.querySelector(`[data-ctl="${k.ctl}"]`)) || row.querySelector('button, input, a'));
  (target || fallback)?.focus();
}

function renderPreservingFocus(tbody, rows, fallback) {
  const active = document.activeElement;
  const k = tbody.contains(active) ? focusKey(active) : null;
  tbody.replaceChildren(...rows);
  if (k) refocus(k, fallback);
}

// Native <dialog> gives modality, a focus trap and Escape. Focus goes back to
// the opener on close; if a refresh replaced the opener meanwhile, to the
// same control in the same row.
function openDialog(dialog, initialFocus) {
  const opener = focusKey(document.activeElement);
  dialog.addEventListener('close', () => refocus(opener, $('refresh')), { once: true });
  dialog.showModal();
  initialFocus.focus();
}

function confirmDialog(message) {
  const dialog = $('confirm-dialog');
  $('confirm-message').textContent = message;
  dialog.returnValue = ''; // Escape leaves it empty: counts as No
  openDialog(dialog, $('confirm-no'));
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
  });
}

// ---------------------------------------------------------------- session

function showView(name) {
  $('loading').hidden = true;
  $('signin-view').hidden = name !== 'signin';
  $('grid-view').hidden = name !== 'grid';
  $('session-info').hidden = name !== 'grid';
}

function startSession(answer, fromForm) {
  session = { user: answer.user, role: answer.role, csrf_token: answer.csrf_token };
  $('session-user').textContent = session.user ?? '';
  $('session-role').textContent = session.role ?? '';
  $('signin-notice').textContent = '';
  showView('grid');
  if (fromForm) $('grid-heading').focus();
  refreshJobs();
}

function endSession(notice = '') {
  session = null;
  clearTimeout(refreshTimer);
  refreshSeq++;
  historySeq++;
  jobs = [];
  closeMenu(false);
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('jobs-body').replaceChildren();
  showBanner('grid-error', '');
  showBanner('grid-status', '');
  $('signin-notice').textContent = notice;
  showView('signin');
  $('signin-token').focus();
}

// Both sign-in forms: empty fields are caught here, the server judges the rest.
async function signIn(event, bodyOf, emptyMessage) {
  event.preventDefault();
  const form = event.currentTarget;
  const inputs = [...form.querySelectorAll('input')];
  const error = form.querySelector('.form-error');
  const markInvalid = (bad) => inputs.forEach((i) => (bad.includes(i)
    ? i.setAttribute('aria-invalid', 'true') : i.removeAttribute('aria-invalid')));
  const missing = inputs.filter((i) => !i.value.trim());
  if (missing.length) {
    error.textContent = emptyMessage;
    markInvalid(missing);
    return missing[0].focus();
  }
  const submit = form.querySelector('button[type="submit"]');
  error.textContent = '';
  submit.disabled = true;
  try {
    const answer = await api('POST', '/api/v1/session', bodyOf());
    // Neither form keeps what was typed once it has done its job.
    $('signin-token-form').reset();
    $('signin-password-form').reset();
    markInvalid([]);
    startSession(answer, true);
  } catch (err) {
    error.textContent = messageOf(err);
    markInvalid(inputs);
    inputs[0].focus();
  } finally {
    submit.disabled = false;
  }
}

async function signOut() {
  try {
    await api('DELETE', '/api/v1/session');
  } catch (err) {
    // Already signed out on the server is as good as signing out now.
    if (err.status !== 401) return showError(err);
  }
  endSession('You have signed out.');
}

// ---------------------------------------------------------------- grid

async function refreshJobs() {
  clearTimeout(refreshTimer);
  const seq = ++refreshSeq;
  $('jobs').setAttribute('aria-busy', 'true');
  try {
    const list = await api('GET', '/api/v1/jobs');
    if (seq !== refreshSeq) return;
    jobs = Array.isArray(list) ? list : [];
    renderJobs();
    $('last-refreshed').textContent = `Updated ${clockFormat.format(new Date())}`;
    if ($('grid-error').dataset.source === 'refresh') showBanner('grid-error', '');
  } catch (err) {
    if (seq === refreshSeq) showError(err, 'refresh');
  } finally {
    if (seq === refreshSeq) {
      $('jobs').removeAttribute('aria-busy');
      if (session) refreshTimer = setTimeout(autoRefresh, REFRESH_MS);
    }
  }
}

function autoRefresh() {
  if (menu) {
    refreshTimer = setTimeout(autoRefresh, REFRESH_RETRY_MS);
    return;
  }
  refreshJobs();
  if (historyJob) loadHistory();
}

function renderJobs() {
  renderPreservingFocus($('jobs-body'), jobs.map(jobRow), $('refresh'));
  $('jobs').hidden = jobs.length === 0;
  $('jobs-empty').hidden = jobs.length > 0;
}

const displayName = (job) => job.friendly_name || job.name;

function jobRow(job) {
  const name = displayName(job);
  const row = el('tr', { data: { job: job.name }, class: job.running > 0 ? 'is-running' : null });

  const nameCell = el('th', { scope: 'row', class: 'job-name' }, [el('span', { class: 'friendly-name', text: name })]);
  if (name !== job.name) nameCell.append(el('span', { class: 'job-id muted', text: job.name }));
  if (job.description) {
    nameCell.append(el('span', { class: 'description muted', title: job.description, text: job.description }));
  }

  const schedule = el('td', { class: 'schedule', text: job.schedule ?? TRIGGER_LABEL[job.trigger] ?? job.trigger ?? '—' });

  const lastRun = el('td', { class: 'last-run' });
  if (job.last_run) {
    const run = job.last_run;
    lastRun.append(timeEl(run.started_at ?? run.created_at), ' ', stateBadge(run.state));
  } else {
    lastRun.append(el('span', { class: 'muted', text: 'Never' }));
  }

  const next = job.next_run ?? '—';
  const nextRun = el('td', {
    class: `next-run next-${String(next).toLowerCase().replace(/[^a-z]+/g, '-')}`,
    title: toDate(job.next_run_at)?.toISOString() ?? null,
    text: next,
  });

  const history = el('td', {}, [el('button', {
    type: 'button', class: 'button small history', 'aria-label': `View history of ${name}`,
    data: { ctl: 'history' }, text: 'View',
  })]);

  const enabled = el('td', { class: 'enabled-cell' });
  if (job.trigger === 'scheduled') {
    enabled.append(el('label', { class: 'switch' }, [
      el('input', {
        type: 'checkbox', role: 'switch', class: 'enabled', data: { ctl: 'enabled' },
        checked: job.enabled === true,
      }),
      el('span', { class: 'visually-hidden', text: `${name} enabled` }),
    ]));
  }

  const actions = el('td', { class: 'actions' });
  if (job.running > 0) {
    const label = `Stop all ${plural(job.running, 'running instance')} of ${name}`;
    actions.append(el('button', {
      type: 'button', class: 'button small danger stop', title: label, 'aria-label': label, data: { ctl: 'stop' },
    }, [el('span', { class: 'icon-stop', 'aria-hidden': 'true' }), 'Stop']));
  }
  actions.append(el('button', {
    type: 'button', class: 'button small menu-button', 'aria-haspopup': 'menu', 'aria-expanded': 'false',
    'aria-controls': 'job-menu', 'aria-label': `Actions for ${name}`, data: { ctl: 'menu' },
  }, [el('span', { 'aria-hidden': 'true', text: '⋯' })]));

  row.append(nameCell, schedule, lastRun, nextRun, history, enabled, actions);
  return row;
}

function jobOf(name) {
  return jobs.find((j) => j.name === name) ?? { name };
}

function onGridClick(event) {
  const button = event.target.closest('button[data-ctl]');
  const name = button?.closest('tr[data-job]')?.dataset.job;
  if (!name) return;
  const ctl = button.dataset.ctl;
  if (ctl === 'history') openHistory(name);
  else if (ctl === 'stop') stopJob(name);
  else if (ctl === 'menu') (menu?.button === button ? closeMenu(true) : openMenu(button, name));
}

// A toggle whose PATCH is still on its way ignores further clicks.
const pendingToggles = new Set();

async function onGridChange(event) {
  const input = event.target;
  if (!input.matches('input.enabled')) return;
  const name = input.closest('tr[data-job]').dataset.job;
  if (pendingToggles.has(name)) {
    input.checked = !input.checked;
    return;
  }
  const want = input.checked;
  pendingToggles.add(name);
  input.setAttribute('aria-busy', 'true');
  try {
    const job = await api('PATCH', jobPath(name), { enabled: want });
    const i = jobs.findIndex((j) => j.name === name);
    if (i >= 0) jobs[i] = job && job.name ? job : { ...jobs[i], enabled: want };
    renderJobs();
    announce(`${displayName(jobOf(name))} is ${want ? 'enabled' : 'disabled'}.`);
  } catch (err) {
    input.checked = !want;
    showError(err);
  } finally {
    pendingToggles.delete(name);
    input.removeAttribute('aria-busy');
  }
}

// Grid actions: one request, a line saying what happened, then a refresh so
// the grid shows the result (or the truth, when the request failed).
async function act(request, describe) {
  try {
    announce(describe(await request()));
  } catch (err) {
    showError(err);
  }
  refreshJobs();
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

const stopJob = (name) => act(() => api('POST', `${jobPath(name)}/stop`),
  (answer) => `Stopped ${plural(answer?.stopped?.length ?? 0, 'instance')} of ${displayName(jobOf(name))}.`);

const runNow = (name) => act(() => api('POST', `${appPath(name)}/run`),
  () => `${displayName(jobOf(name))} has started.`);

async function deleteJob(name) {
  // The confirmation names the job by its unique name: a friendly name may repeat.
  if (await confirmDialog(`Delete job ${name}?`)) {
    act(() => api('DELETE', appPath(name)), () => `Deleted ${displayName(jobOf(name))}.`);
  }
}

// ---------------------------------------------------------------- action menu

const menuItems = () => [...$('job-menu').querySelectorAll('[role="menuitem"]')];

function openMenu(button, name) {
  closeMenu(false);
  const box = $('job-menu');
  menu = { job: name, button };
  box.hidden = false;
  // Fixed position from the button's box: below it, right-aligned, flipped
  // above when there is no room (the last rows of a long grid).
  const r = button.getBoundingClientRect();
  const top = r.bottom + 4 + box.offsetHeight > window.innerHeight ? r.top - 4 - box.offsetHeight : r.bottom + 4;
  box.style.top = `${Math.max(4, top)}px`;
  box.style.left = `${Math.max(4, r.right - box.offsetWidth)}px`;
  button.setAttribute('aria-expanded', 'true');
  menuItems()[0].focus();
}

function closeMenu(returnFocus) {
  if (!menu) return;
  const { button } = menu;
  menu = null;
  $('job-menu').hidden = true;
  button.setAttribute('aria-expanded', 'false');
  if (returnFocus && button.isConnected) button.focus();
}

function onMenuKey(event) {
  const items = menuItems();
  const i = items.indexOf(document.activeElement);
  const moves = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: items.length - 1 };
  if (event.key in moves) {
    event.preventDefault();
    items[(moves[event.key] + items.length) % items.length].focus();
  } else if (event.key === 'Escape') {
    event.preventDefault();
    closeMenu(true);
  } else if (event.key === 'Tab') {
    closeMenu(true);
  }
}

function onMenuClick(event) {
  const item = event.target.closest('[role="menuitem"]');
  if (!item || !menu) return;
  const name = menu.job;
  closeMenu(true);
  if (item.id === 'job-menu-run') runNow(name);
  else if (item.id === 'job-menu-delete') deleteJob(name);
}

// ---------------------------------------------------------------- history

function openHistory(name) {
  historyJob = name;
  $('history-title').textContent = `Execution history — ${displayName(jobOf(name))}`;
  $('history-body').replaceChildren();
  $('history').hidden = true;
  $('history-empty').hidden = true;
  showBanner('history-error', '');
  openDialog($('history-dialog'), $('history-close'));
  loadHistory();
}

async function loadHistory() {
  const name = historyJob;
  const seq = ++historySeq;
  $('history-loading').hidden = !$('history').hidden;
  try {
    const runs = await api('GET', `${jobPath(name)}/history?limit=${HISTORY_LIMIT}`);
    if (seq !== historySeq) return;
    const list = Array.isArray(runs) ? runs : [];
    renderPreservingFocus($('history-body'), list.map(historyRow), $('history-close'));
    $('history').hidden = list.length === 0;
    $('history-empty').hidden = list.length > 0;
    showBanner('history-error', '');
  } catch (err) {
    if (seq === historySeq && !err.handled) showBanner('history-error', messageOf(err));
  } finally {
    if (seq === historySeq) $('history-loading').hidden = true;
  }
}

function historyRow(run) {
  const start = run.started_at ?? run.created_at;
  const when = toDate(start) ? dateFormat.format(toDate(start)) : 'this run';
  const trigger = run.triggered_by ? `${run.trigger} by ${run.triggered_by}` : run.trigger;
  const stop = el('td', { class: 'actions' });
  if (STOPPABLE.has(run.state)) {
    stop.append(el('button', {
      type: 'button', class: 'button small danger stop-run', data: { ctl: 'stop-run' },
      title: 'Stop this run', 'aria-label': `Stop the run started ${when}`,
    }, [el('span', { class: 'icon-stop', 'aria-hidden': 'true' }), 'Stop']));
  }
  const log = run.log_href
    ? el('a', {
      class: 'log', href: run.log_href, target: '_blank', rel: 'noopener',
      'aria-label': `View the log of the run started ${when} (opens in a new tab)`, text: 'View',
    })
    : el('span', { class: 'muted', text: '—' });
  return el('tr', { data: { run: run.id } }, [
    el('td', { class: 'run-start' }, [timeEl(start)]),
    el('td', { class: 'run-duration', text: formatDuration(run.duration_ms) }),
    el('td', { class: 'run-trigger', text: trigger ?? '—' }),
    el('td', { class: 'run-state' }, [stateBadge(run.state)]),
    el('td', { class: 'run-log' }, [log]),
    stop,
  ]);
}

// Not `disabled` while pending: that would drop keyboard focus out of the dialog.
const pendingRevokes = new Set();

async function onHistoryClick(event) {
  const id = event.target.closest('button.stop-run')?.closest('tr[data-run]')?.dataset.run;
  if (!id || pendingRevokes.has(id)) return;
  pendingRevokes.add(id);
  try {
    await api('POST', `/api/v1/tasks/${encodeURIComponent(id)}/revoke`);
  } catch (err) {
    if (!err.handled) showBanner('history-error', messageOf(err));
  } finally {
    pendingRevokes.delete(id);
  }
  loadHistory();
  refreshJobs();
}

// ---------------------------------------------------------------- global parameters

const PARAM_TYPES = [['string', 'String'], ['masked', 'String (Masked)']];
const MASKED_TEXT = '•••••• (masked)';
let paramsSeq = 0;
let paramRowSeq = 0; // unique ids for the inputs of each row

function openParams() {
  const seq = ++paramsSeq;
  $('params-body').replaceChildren();
  $('params').hidden = true;
  $('params-empty').hidden = true;
  showBanner('params-error', '');
  $('params-loading').hidden = false;
  $('params-save').disabled = true;
  openDialog($('params-dialog'), $('params-add'));
  api('GET', '/api/v1/global-parameters').then((list) => {
    if (seq !== paramsSeq) return;
    $('params-body').replaceChildren(...(Array.isArray(list) ? list : []).map(paramRow));
    $('params-save').disabled = false;
    updateParamsEmpty();
  }, (err) => {
    if (seq === paramsSeq && !err.handled) showBanner('params-error', messageOf(err));
  }).finally(() => {
    if (seq === paramsSeq) $('params-loading').hidden = true;
  });
}

function updateParamsEmpty() {
  const n = $('params-body').rows.length;
  $('params').hidden = n === 0;
  $('params-empty').hidden = n > 0;
}

// One editable row. A stored masked parameter (`stored`) keeps its type and
// shows no value: its input starts empty, and empty means "unchanged".
function paramRow(param = { name: '', type: 'string', value: '' }) {
  const id = `param-${++paramRowSeq}`;
  const storedMasked = param.type === 'masked' && param.name !== '';
  const label = () => nameInput.value.trim() || 'the new parameter';

  const nameInput = el('input', {
    type: 'text', id: `${id}-name`, class: 'param-name', value: param.name, autocomplete: 'off',
    spellcheck: 'false', 'aria-label': 'Parameter name', 'aria-describedby': `${id}-error`,
  });
  const typeSelect = el('select', {
    id: `${id}-type`, class: 'param-type', 'aria-label': 'Type', disabled: storedMasked,
    title: storedMasked ? 'A masked parameter cannot be reverted' : null,
  }, PARAM_TYPES.map(([value, text]) => el('option', { value, text })));
  typeSelect.value = param.type === 'masked' ? 'masked' : 'string';
  const valueInput = el('input', {
    type: param.type === 'masked' ? 'password' : 'text', id: `${id}-value`, class: 'param-value',
    autocomplete: 'off', spellcheck: 'false', 'aria-label': 'Value',
    placeholder: storedMasked ? 'unchanged' : null,
  });
  // Set as a property: a value never sits in the page's HTML.
  valueInput.value = param.type === 'masked' ? '' : (param.value ?? '');
  typeSelect.addEventListener('change', () => {
    valueInput.type = typeSelect.value === 'masked' ? 'password' : 'text';
  });

  const valueCell = el('td', { class: 'param-value-cell' }, [valueInput]);
  if (storedMasked) {
    valueCell.prepend(el('span', { class: 'masked-value', title: 'The stored value is never shown', text: MASKED_TEXT }));
  }
  const remove = el('button', {
    type: 'button', class: 'button small danger param-delete', title: 'Delete this parameter',
    'aria-label': `Delete ${param.name || 'the new parameter'}`, text: '✕',
  });
  nameInput.addEventListener('input', () => {
    remove.setAttribute('aria-label', `Delete ${label()}`);
    clearParamError(row);
  });
  valueInput.addEventListener('input', () => clearParamError(row));

  const row = el('tr', { class: 'param-row', data: { storedMasked: storedMasked ? '1' : '' } }, [
    el('td', {}, [nameInput, el('span', { id: `${id}-error`, class: 'param-error' })]),
    el('td', {}, [typeSelect]),
    valueCell,
    el('td', { class: 'actions' }, [remove]),
  ]);
  return row;
}

function clearParamError(row) {
  row.querySelector('.param-error').textContent = '';
  for (const i of row.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

function addParam() {
  const row = paramRow();
  $('params-body').append(row);
  updateParamsEmpty();
  row.querySelector('.param-name').focus();
}

function onParamsClick(event) {
  const row = event.target.closest('button.param-delete')?.closest('tr');
  if (!row) return;
  const next = row.nextElementSibling ?? row.previousElementSibling;
  row.remove();
  updateParamsEmpty();
  (next?.querySelector('button.param-delete') ?? $('params-add')).focus();
}

function paramOf(row) {
  const type = row.querySelector('.param-type').value;
  const value = row.querySelector('.param-value').value;
  return {
    name: row.querySelector('.param-name').value.trim(),
    type,
    // An untouched stored masked value is sent as null: the server keeps it.
    value: row.dataset.storedMasked && value === '' ? null : value,
  };
}

async function saveParams() {
  const rows = [...$('params-body').rows];
  rows.forEach(clearParamError);
  showBanner('params-error', '');
  const save = $('params-save');
  save.disabled = true;
  try {
    await api('PUT', '/api/v1/global-parameters', rows.map(paramOf));
    paramsSeq++;
    $('params-dialog').close();
    announce('Global parameters saved.');
  } catch (err) {
    if (err.handled) return;
    showBanner('params-error', err.message);
    let first = null;
    for (const d of err.details) {
      // Fields name the list position: "[2].name".
      const m = /^\[(\d+)\]\.?(\w*)/.exec(d.field ?? '');
      const row = m && rows[Number(m[1])];
      if (!row) {
        $('params-error').textContent += ` (${d.field ? `${d.field}: ` : ''}${d.message})`;
        continue;
      }
      const input = row.querySelector(m[2] === 'value' ? '.param-value' : '.param-name');
      input.setAttribute('aria-invalid', 'true');
      const note = row.querySelector('.param-error');
      note.textContent = [note.textContent, d.message].filter(Boolean).join('; ');
      first ??= input;
    }
    (first ?? $('params-save')).focus();
  } finally {
    save.disabled = false;
  }
}

// ---------------------------------------------------------------- settings

let settingsSeq = 0;

function openSettings() {
  const seq = ++settingsSeq;
  const box = $('setting-automated');
  box.disabled = true;
  showBanner('settings-error', '');
  $('settings-status').textContent = 'Loading…';
  openDialog($('settings-dialog'), $('settings-close'));
  api('GET', '/api/v1/settings').then((s) => {
    if (seq !== settingsSeq) return;
    box.checked = s?.automated_jobs_enabled === true;
    box.disabled = false;
    $('settings-status').textContent = '';
  }, (err) => {
    if (seq !== settingsSeq || err.handled) return;
    $('settings-status').textContent = '';
    showBanner('settings-error', messageOf(err));
  });
}

async function onSettingChange() {
  const box = $('setting-automated');
  const want = box.checked;
  const seq = ++settingsSeq;
  box.disabled = true;
  showBanner('settings-error', '');
  $('settings-status').textContent = 'Saving…';
  try {
    const s = await api('PUT', '/api/v1/settings', { automated_jobs_enabled: want });
    if (seq !== settingsSeq) return;
    box.checked = s?.automated_jobs_enabled ?? want;
    $('settings-status').textContent = `Saved: automated jobs are ${box.checked ? 'enabled' : 'disabled'}.`;
  } catch (err) {
    if (seq !== settingsSeq || err.handled) return;
    box.checked = !want;
    $('settings-status').textContent = '';
    // A 403 says only administrators may change settings.
    showBanner('settings-error', messageOf(err));
  } finally {
    if (seq === settingsSeq) {
      box.disabled = false;
      box.focus();
    }
  }
}

// ---------------------------------------------------------------- start

function wire() {
  $('signin-token-form').addEventListener('submit', (e) =>
    signIn(e, () => ({ token: $('signin-token').value.trim() }), 'Enter an API token.'));
  $('signin-password-form').addEventListener('submit', (e) => signIn(e,
    () => ({ user: $('signin-user').value.trim(), password: $('signin-password').value }),
    'Enter both a user name and a password.'));
  for (const input of document.querySelectorAll('#signin-view input')) {
    input.addEventListener('input', () => input.removeAttribute('aria-invalid'));
  }
  $('signout').addEventListener('click', signOut);
  $('refresh').addEventListener('click', () => refreshJobs());

  $('jobs-body').addEventListener('click', onGridClick);
  $('jobs-body').addEventListener('change', onGridChange);

  $('job-menu').addEventListener('keydown', onMenuKey);
  $('job-menu').addEventListener('click', onMenuClick);
  // The menu is positioned once; anything that moves its button closes it.
  document.addEventListener('pointerdown', (e) => {
    if (menu && !$('job-menu').contains(e.target) && !menu.button.contains(e.target)) closeMenu(false);
  });
  document.addEventListener('scroll', () => closeMenu(false), true);
  window.addEventListener('resize', () => closeMenu(false));

  const history = $('history-dialog');
  $('history-close').addEventListener('click', () => history.close());
  $('history-refresh').addEventListener('click', () => loadHistory());
  $('history-body').addEventListener('click', onHistoryClick);
  history.addEventListener('close', () => {
    historyJob = null;
    historySeq++;
  });

  const params = $('params-dialog');
  $('open-params').addEventListener('click', openParams);
  $('params-add').addEventListener('click', addParam);
  $('params-save').addEventListener('click', saveParams);
  $('params-close').addEventListener('click', () => params.close());
  $('params-body').addEventListener('click', onParamsClick);
  // Closing without saving (Close, Escape) drops the edits, values included.
  params.addEventListener('close', () => {
    paramsSeq++;
    $('params-body').replaceChildren();
  });

  const settings = $('settings-dialog');
  $('open-settings').addEventListener('click', openSettings);
  $('setting-automated').addEventListener('change', onSettingChange);
  $('settings-close').addEventListener('click', () => settings.close());
  settings.addEventListener('close', () => settingsSeq++);
}

async function init() {
  wire();
  try {
    startSession(await api('GET', '/api/v1/session'), false);
  } catch (err) {
    showView('signin');
    $('signin-notice').textContent = err.status === 401 ? '' : messageOf(err);
  }
}

init();
