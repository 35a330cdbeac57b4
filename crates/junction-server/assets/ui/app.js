// Junction web UI, the entry module: sign-in, the Integration Hub grid,
// history, Global Parameters and Settings (spec 000), and the page switch.
//
// Credentials never reach JavaScript storage: the session lives in an
// HttpOnly cookie the server sets, and the CSRF token is kept only in
// core.js's `session` variable, so a reload asks the server again.

import {
  $, api, appPath, banners, can, logLink, stopRunCell, clearParamError, clockFormat, confirmDialog, currentSession, dateFormat, el,
  formatDuration, jobPath, messageOf, onSessionLost, openDialog, paramOf, paramTable, placeParamError, plural,
  renderPreservingFocus, setSession, showBanner, stateBadge, timeEl, toDate,
} from './core.js';
import { leaveApplications, showApplications } from './apps.js';
import { initEditor, openJobEditor } from './editor.js';
import { leaveConfigurations, showConfigurations } from './configs.js';
import { leaveStacks, showStacks } from './stacks.js';
import { leaveFlows, showFlows } from './flows.js';

const REFRESH_MS = 60_000;
// While the action menu is open a refresh would replace the row it belongs
// to, so the automatic refresh waits this long and tries again.
const REFRESH_RETRY_MS = 5_000;
const HISTORY_LIMIT = 50;
const TRIGGER_LABEL = { automated: 'Automated Job', manual: 'Manual', scheduled: 'Scheduled' };

let jobs = [];
let refreshTimer = 0;
let refreshSeq = 0; // answers to older refreshes are dropped
let menu = null; // {job, button} while the action menu is open
let historyJob = null;
let historySeq = 0;

const gridBanners = banners('grid-error', 'grid-status');
const showError = gridBanners.error;
const announce = gridBanners.announce;
// The grid's pop-ups: closed when the page changes (Back with one open).
const GRID_DIALOGS = ['history-dialog', 'params-dialog', 'settings-dialog', 'job-dialog', 'confirm-dialog'];

// ---------------------------------------------------------------- session

const VIEWS = { signin: 'signin-view', grid: 'grid-view', apps: 'apps-view', configs: 'configs-view', stacks: 'stacks-view', flows: 'flows-view' };

function showView(name) {
  $('loading').hidden = true;
  for (const [view, id] of Object.entries(VIEWS)) $(id).hidden = view !== name;
  $('session-info').hidden = name === 'signin';
  $('main-nav').hidden = name === 'signin';
  for (const link of $('main-nav').querySelectorAll('a')) {
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

// Pages are addressed by the URL's fragment, so Back, reload and bookmarks
// work: #/ (the grid), #/applications, #/applications/NAME, #/configurations,
// #/stacks, #/stacks/NAME, #/flows, #/flows/NAME.
function route(focusHeading) {
  if (!currentSession()) return;
  // Only "#/..." names a page; other fragments (the skip link's #main) do not.
  const path = location.hash.startsWith('#/') || location.hash === '' ? location.hash.replace(/^#\/?/, '') : null;
  if (path === null) return;
  const [section, ...rest] = path.split('/');
  const name = rest.length ? decodeURIComponent(rest.join('/')) : null;
  if (section !== 'applications') leaveApplications();
  if (section !== 'configurations') leaveConfigurations();
  if (section !== 'stacks') leaveStacks();
  if (section !== 'flows') leaveFlows();
  if (section === 'applications' || section === 'configurations' || section === 'stacks' || section === 'flows') leaveGrid();
  if (section === 'applications') {
    showView('apps');
    showApplications(name, focusHeading);
  } else if (section === 'configurations') {
    showView('configs');
    showConfigurations(focusHeading);
  } else if (section === 'stacks') {
    showView('stacks');
    showStacks(name, focusHeading);
  } else if (section === 'flows') {
    showView('flows');
    showFlows(name, focusHeading);
  } else {
    showView('grid');
    if (focusHeading) $('grid-heading').focus();
    refreshJobs();
  }
}

// The grid polls only while it is shown.
function leaveGrid() {
  clearTimeout(refreshTimer);
  refreshSeq++;
  historySeq++;
  closeMenu(false);
  for (const id of GRID_DIALOGS) if ($(id).open) $(id).close();
}

function adoptSession(answer) {
  setSession({ user: answer.user, role: answer.role, csrf_token: answer.csrf_token });
  // Controls marked data-needs="operate|edit|administer" hide for lower roles (app.css).
  document.body.dataset.role = answer.role ?? '';
  $('session-user').textContent = answer.user ?? '';
  $('session-role').textContent = answer.role ?? '';
}

function startSession(answer, fromForm) {
  adoptSession(answer);
  $('signin-notice').textContent = '';
  route(fromForm);
}

// Pop-ups holding typed work: a session that ends under one of them asks
// to sign in again on top of it instead of throwing the work away.
const EDITORS = '#job-dialog[open], #params-dialog[open], #config-dialog[open], #custom-run-dialog[open], #stack-settings-dialog[open], #flow-edit-dialog[open], #flow-retry-dialog[open]';
let reauthOk = false;

function sessionLost(notice) {
  if ($('reauth-dialog').open) return;
  if (!document.querySelector(EDITORS)) {
    endSession(notice);
    return;
  }
  reauthOk = false;
  $('reauth-form').reset();
  $('reauth-error').textContent = '';
  openDialog($('reauth-dialog'), $('reauth-token'));
}

async function reauth(event) {
  event.preventDefault();
  const token = $('reauth-token').value.trim();
  const user = $('reauth-user').value.trim();
  const password = $('reauth-password').value;
  if (!token && !(user && password)) {
    $('reauth-error').textContent = 'Enter an API token, or a user name and a password.';
    $('reauth-token').focus();
    return;
  }
  $('reauth-submit').disabled = true;
  try {
    adoptSession(await api('POST', '/api/v1/session', token ? { token } : { user, password }));
    reauthOk = true;
    $('reauth-dialog').close();
  } catch (err) {
    $('reauth-error').textContent = messageOf(err);
    $('reauth-token').focus();
  } finally {
    $('reauth-submit').disabled = false;
    $('reauth-form').reset();
  }
}

function endSession(notice = '') {
  setSession(null);
  delete document.body.dataset.role;
  leaveApplications();
  leaveConfigurations();
  leaveStacks();
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
    // Already signed out on the server is as good as signing out now. The
    // header's own line shows a failure: it is there on every page.
    if (err.status !== 401) {
      $('session-error').textContent = `Sign-out failed: ${messageOf(err)}`;
      return;
    }
  }
  $('session-error').textContent = '';
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
      if (currentSession() && !$('grid-view').hidden) refreshTimer = setTimeout(autoRefresh, REFRESH_MS);
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

  // Spec 000: "Edit: Click a script's Job Name in the grid."
  const nameCell = el('th', { scope: 'row', class: 'job-name' }, [el('button', {
    type: 'button', class: 'link-button friendly-name job-edit', data: { ctl: 'edit' }, 'aria-haspopup': 'dialog',
    title: `Edit ${name}`, text: name,
  })]);
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
        checked: job.enabled === true, disabled: !can('edit'),
        title: can('edit') ? null : 'Your role cannot change jobs',
      }),
      el('span', { class: 'visually-hidden', text: `${name} enabled` }),
    ]));
  }

  const actions = el('td', { class: 'actions' });
  if (job.running > 0) {
    const label = `Stop all ${plural(job.running, 'running instance')} of ${name}`;
    actions.append(el('button', {
      type: 'button', class: 'button small danger stop', title: label, 'aria-label': label, data: { ctl: 'stop', needs: 'operate' },
    }, [el('span', { class: 'icon-stop', 'aria-hidden': 'true' }), 'Stop']));
  }
  actions.append(el('button', {
    type: 'button', class: 'button small menu-button', 'aria-haspopup': 'menu', 'aria-expanded': 'false',
    'aria-controls': 'job-menu', 'aria-label': `Actions for ${name}`, data: { ctl: 'menu', needs: 'operate' },
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
  else if (ctl === 'edit') openJobEditor(name);
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
  box.style.left = `${Math.max(4, Math.min(r.right, window.innerWidth - 4) - box.offsetWidth)}px`;
  button.setAttribute('aria-expanded', 'true');
  // The menu is fixed in place; focusing it must not scroll (a scroll closes it).
  menuItems()[0].focus({ preventScroll: true });
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
  return el('tr', { data: { run: run.id } }, [
    el('td', { class: 'run-start' }, [timeEl(start)]),
    el('td', { class: 'run-duration', text: formatDuration(run.duration_ms) }),
    el('td', { class: 'run-trigger', text: trigger ?? '—' }),
    el('td', { class: 'run-state' }, [stateBadge(run.state)]),
    el('td', { class: 'run-log' }, [run.log_href ? logLink(run.log_href, when, 'log') : el('span', { class: 'muted', text: '—' })]),
    stopRunCell(run, when),
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
  if (historyJob) loadHistory();
  refreshJobs();
}


// ---------------------------------------------------------------- global parameters

let paramsSeq = 0;
let params = null; // the parameter table, made in wire()

function openParams() {
  const seq = ++paramsSeq;
  params.fill([]);
  $('params').hidden = true;
  $('params-empty').hidden = true;
  showBanner('params-error', '');
  $('params-loading').hidden = false;
  $('params-save').disabled = true;
  openDialog($('params-dialog'), $('params-add'));
  api('GET', '/api/v1/global-parameters').then((list) => {
    if (seq !== paramsSeq) return;
    params.fill(Array.isArray(list) ? list : []);
    $('params-save').disabled = false;
  }, (err) => {
    if (seq === paramsSeq && !err.handled) showBanner('params-error', messageOf(err));
  }).finally(() => {
    if (seq === paramsSeq) $('params-loading').hidden = true;
  });
}

async function saveParams() {
  const rows = params.rows();
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
      const input = placeParamError(rows, d.field, d.message);
      if (!input) $('params-error').textContent += ` (${d.field ? `${d.field}: ` : ''}${d.message})`;
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
  onSessionLost(sessionLost);
  $('reauth-form').addEventListener('submit', reauth);
  $('reauth-cancel').addEventListener('click', () => $('reauth-dialog').close());
  // Closed without signing in (Sign out, Escape): the session is over.
  $('reauth-dialog').addEventListener('close', () => {
    if (!reauthOk) endSession('Your session has ended. Sign in again.');
  });
  // The skip link moves focus; it must not change the page (the fragment
  // names pages).
  document.querySelector('.skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    $('main').focus();
  });
  window.addEventListener('hashchange', () => route(true));
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
  $('new-job').addEventListener('click', () => openJobEditor(null));
  initEditor({ saved: () => refreshJobs(), announce });

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

  params = paramTable({ body: 'params-body', table: 'params', empty: 'params-empty', add: 'params-add' });
  const paramsDialog = $('params-dialog');
  $('open-params').addEventListener('click', openParams);
  $('params-save').addEventListener('click', saveParams);
  $('params-close').addEventListener('click', () => paramsDialog.close());
  // Closing without saving (Close, Escape) drops the edits, values included.
  paramsDialog.addEventListener('close', () => {
    paramsSeq++;
    params.fill([]);
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
