// Stacks (spec 001): hosted integrator.io extension functions. The list
// with an upload form (#/stacks), and one stack's page (#/stacks/NAME):
// its function URL, versions with the functions their modules export, the
// env entries, recent calls with their logs, Settings, Rotate token and
// Delete.
//
// A system token is shown once, in a dialog, and removed from the page when
// the dialog closes. An encrypted env value is write-only: the server never
// sends it back, the page shows ******** and the settings editor sends the
// entry without a value when it is left alone, which keeps the sealed value.
// Everything is built with el() from data, never parsed as HTML; a page
// generation counter (`gen`) drops answers that arrive after the user moved on.

import {
  $, api, ApiError, banners, can, confirmDialog, currentSession, dateFormat, editableRows, el, formatDuration, messageOf, openDialog,
  plural, setSession, showBanner, timeEl, toDate, notLoaded
} from './core.js';

const CALLS_LIMIT = 20;
const STATUS_CLEAR_MS = 15_000;
const MASK = '********';
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const OUTCOME = {
  succeeded: ['success', 'Succeeded'],
  failed: ['failure', 'Failed'],
  timed_out: ['warning', 'Timed out'],
};
// How an upload is sent, by the file's name: JSON for one .js file, the raw
// bytes with their content type for a package.
const ARCHIVE_TYPES = [[/\.zip$/i, 'application/zip'], [/\.(tgz|tar\.gz|gz)$/i, 'application/gzip']];
const JS_FILE = /\.(js|cjs)$/i;

let gen = 0; // bumped on every show and leave
let cur = null; // the stack page: {name, stack, callsSeq}
let stacks = [];
let notice = ''; // a status line to show once the next list is up (after a delete)
let tokenDialog = null;
let callDialog = null;
let settingsDialog = null;
let settingsSeq = 0;
let callSeq = 0;
let envRowSeq = 0;

const stackPath = (name) => `/api/v1/stacks/${encodeURIComponent(name)}`;
const stackHref = (name) => `#/stacks/${encodeURIComponent(name)}`;
const functionUrl = (name) => `${location.origin}/stacks/${encodeURIComponent(name)}/function`;

const stackBanners = banners('stacks-error', 'stacks-status', STATUS_CLEAR_MS);
const announce = (message) => stackBanners.announce(message);
const showError = (err, source) => stackBanners.error(err, source);

export function leaveStacks() {
  gen++;
  cur = null;
  callSeq++;
  settingsSeq++;
  stackBanners.clear();
  for (const d of [callDialog, settingsDialog, tokenDialog]) if (d?.open) d.close();
}

export function showStacks(name, focusHeading) {
  leaveStacks();
  if (name) showStack(name, focusHeading);
  else showList(focusHeading);
}

// ---------------------------------------------------------------- shared bits

function refreshButton(id, label) {
  return el('button', { type: 'button', id, class: 'button', 'aria-label': label }, [
    el('span', { class: 'icon-refresh', 'aria-hidden': 'true', text: '↻' }), ' Refresh',
  ]);
}

function headRow(names) {
  return el('thead', {}, [el('tr', {}, names.map((n) => (n.startsWith('-')
    ? el('th', { scope: 'col' }, [el('span', { class: 'visually-hidden', text: n.slice(1) })])
    : el('th', { scope: 'col', text: n }))))]);
}

// {"diy": FILE} or {"connectors": {ID: FILE}} → [kind, detail].
function configKind(config) {
  if (config && typeof config.diy === 'string') return ['diy', config.diy];
  if (config && config.connectors && typeof config.connectors === 'object') {
    const ids = Object.keys(config.connectors);
    return ['connectors', `${plural(ids.length, 'connector')}: ${ids.map((id) => `${id} → ${config.connectors[id]}`).join(', ')}`];
  }
  return ['—', ''];
}

function formatSize(bytes) {
  if (typeof bytes !== 'number') return '—';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function outcomeBadge(outcome) {
  const [cls, text] = OUTCOME[outcome] ?? ['other', outcome || 'unknown'];
  return el('span', { class: `state state-${cls}`, text });
}

// Copies `text`; without clipboard access, selects `node`'s text so that
// Ctrl+C copies it. `status` says which happened.
async function copyText(text, node, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'Copied to the clipboard.';
  } catch {
    const range = document.createRange();
    range.selectNodeContents(node);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    status.textContent = 'Selected: press Ctrl+C (⌘C on a Mac) to copy.';
  }
}

// ---------------------------------------------------------------- the list

function showList(focusHeading) {
  const g = gen;
  const view = $('stacks-view');
  const heading = el('h1', { id: 'stacks-heading', tabindex: '-1', text: 'Stacks' });
  const refresh = refreshButton('stacks-refresh', 'Refresh the list of stacks');
  const body = el('tbody', { id: 'stacks-body' });
  const table = el('table', { id: 'stacks-table', class: 'grid stacks-list', 'aria-labelledby': 'stacks-heading', hidden: true }, [
    headRow(['Stack', 'Version', 'Configuration', 'Timeout', 'Concurrency', 'Updated', '-Actions']), body,
  ]);
  const empty = el('div', { id: 'stacks-empty', class: 'empty', hidden: true }, can('edit')
    ? [el('p', { text: 'No stacks yet: upload a .js file (its exports are the DIY module) or a .zip / .tgz package with the form below.' }),
      el('p', { text: 'Each stack gets a function URL and a system token for integrator.io.' })]
    : [el('p', { text: 'No stacks yet. An editor can upload one here; it then appears in this list.' })]);
  view.setAttribute('aria-labelledby', 'stacks-heading');
  view.replaceChildren(
    el('div', { class: 'toolbar' }, [heading, el('div', { class: 'toolbar-actions' }, [refresh])]),
    el('p', { class: 'muted page-help' }, ['Hosted integrator.io extension functions (hooks, wrappers, settings, …). ',
      'integrator.io posts to a stack\'s function URL with its system token.']),
    el('p', { id: 'stacks-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'stacks-status', class: 'banner info', role: 'status', hidden: true }),
    el('p', { id: 'stacks-loading', class: 'muted', text: 'Loading…' }),
    el('div', { class: 'table-wrap' }, [table]),
    empty,
    uploadForm(),
  );
  if (notice) {
    announce(notice);
    notice = '';
  }
  if (focusHeading) heading.focus();
  refresh.addEventListener('click', () => loadList());
  body.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-ctl="delete"]');
    const name = button?.closest('tr[data-stack]')?.dataset.stack;
    if (name) deleteStack(name, true);
  });
  loadList(g);
}

async function loadList(g = gen, focus = null) {
  const table = $('stacks-table');
  if (!table) return;
  table.setAttribute('aria-busy', 'true');
  try {
    const list = await api('GET', '/api/v1/stacks');
    if (g !== gen) return;
    stacks = (Array.isArray(list) ? list : []).sort((a, b) => a.name.localeCompare(b.name));
    const body = $('stacks-body');
    const active = document.activeElement;
    const row = body.contains(active) ? active.closest('tr[data-stack]') : null;
    focus ??= row ? { name: row.dataset.stack, ctl: active.dataset.ctl } : null;
    body.replaceChildren(...stacks.map(stackRow));
    if (focus) {
      const again = [...body.rows].find((r) => r.dataset.stack === focus.name);
      const target = again && (again.querySelector(`[data-ctl="${focus.ctl}"]`) ?? again.querySelector('a, button'));
      (target ?? $('stacks-refresh')).focus();
    }
    table.hidden = stacks.length === 0;
    $('stacks-empty').hidden = stacks.length > 0;
    if ($('stacks-error').dataset.source === 'list') showBanner('stacks-error', '');
  } catch (err) {
    if (g === gen) showError(err, 'list');
  } finally {
    if (g === gen) {
      $('stacks-loading').hidden = true;
      table.removeAttribute('aria-busy');
    }
  }
}

function stackRow(s) {
  const [kind, detail] = configKind(s.config);
  return el('tr', { data: { stack: s.name } }, [
    el('th', { scope: 'row', class: 'stack-name' }, [el('a', { href: stackHref(s.name), data: { ctl: 'open' }, text: s.name })]),
    el('td', { class: 'stack-version num', text: `v${s.version}` }),
    el('td', { class: 'stack-config', title: detail || null }, [el('code', { text: kind })]),
    el('td', { class: 'stack-timeout num', text: `${s.timeout_seconds} s` }),
    el('td', { class: 'stack-concurrency num', text: String(s.max_concurrency) }),
    el('td', { class: 'stack-updated' }, [timeEl(s.updated_at)]),
    el('td', { class: 'actions' }, [el('button', {
      type: 'button', class: 'button small danger stack-delete', data: { ctl: 'delete', needs: 'edit' },
      'aria-label': `Delete ${s.name}`, text: 'Delete',
    })]),
  ]);
}

// ---------------------------------------------------------------- upload

function uploadForm() {
  const form = el('form', { id: 'stack-upload-form', class: 'card form stack-upload', method: 'post', noValidate: true, 'aria-labelledby': 'stack-upload-title', data: { needs: 'edit' } }, [
    el('h2', { id: 'stack-upload-title', text: 'Upload a stack' }),
    el('p', { class: 'muted field-note upload-help' }, ['One ', el('code', { text: '.js' }), ' file: its exports are the DIY module. Or a ',
      el('code', { text: '.zip' }), ' / ', el('code', { text: '.tgz' }), ' package with ', el('code', { text: 'package.json' }),
      ' (and its lock file when it has dependencies). Uploading to an existing name adds a new version.']),
    el('div', { class: 'field' }, [
      el('label', { for: 'stack-upload-name', text: 'Name' }),
      el('input', { id: 'stack-upload-name', type: 'text', autocomplete: 'off', spellcheck: 'false', required: true, maxlength: '128', 'aria-describedby': 'stack-upload-name-help stack-upload-name-error' }),
      el('span', { id: 'stack-upload-name-help', class: 'field-help muted', text: 'Letters, digits, _ - and . ; it is part of the function URL.' }),
      el('span', { id: 'stack-upload-name-error', class: 'field-error' }),
    ]),
    el('div', { class: 'field' }, [
      el('label', { for: 'stack-upload-file', text: 'File' }),
      el('input', { id: 'stack-upload-file', class: 'file-input', type: 'file', required: true, accept: '.js,.cjs,.zip,.tgz,.gz,text/javascript,application/zip,application/gzip', 'aria-describedby': 'stack-upload-file-error' }),
      el('span', { id: 'stack-upload-file-error', class: 'field-error' }),
    ]),
    el('div', { id: 'stack-upload-error', class: 'banner error', role: 'alert', hidden: true }, [
      el('p', { id: 'stack-upload-message', class: 'upload-message' }),
      el('ul', { id: 'stack-upload-details', class: 'upload-details' }),
    ]),
    el('p', { id: 'stack-upload-progress', class: 'muted', role: 'status' }),
    el('button', { type: 'submit', id: 'stack-upload-submit', class: 'button primary', text: 'Upload' }),
  ]);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    upload();
  });
  const nameInput = form.querySelector('#stack-upload-name');
  const fileInput = form.querySelector('#stack-upload-file');
  nameInput.addEventListener('input', () => clearField('stack-upload-name'));
  fileInput.addEventListener('change', () => {
    clearField('stack-upload-file');
    const file = fileInput.files[0];
    // A name from the file, when none was typed: "my-hooks.js" → "my-hooks".
    if (file && !nameInput.value.trim()) {
      nameInput.value = file.name.replace(/\.(js|cjs|zip|tgz|tar\.gz|gz)$/i, '').replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[^A-Za-z0-9_]+/, '').slice(0, 128);
    }
  });
  return form;
}

function clearField(id) {
  $(`${id}-error`).textContent = '';
  $(id).removeAttribute('aria-invalid');
}

function fieldError(id, message) {
  const note = $(`${id}-error`);
  note.textContent = [note.textContent, message].filter(Boolean).join('; ');
  $(id).setAttribute('aria-invalid', 'true');
}

function uploadError(message, details = []) {
  const box = $('stack-upload-error');
  $('stack-upload-message').textContent = message;
  $('stack-upload-details').replaceChildren(...details.map((d) => el('li', {}, [
    d.field ? el('code', { class: 'detail-field', text: d.field }) : '',
    d.rule ? el('span', { class: 'detail-rule', text: ` (${d.rule})` }) : '',
    d.field || d.rule ? ': ' : '',
    el('span', { class: 'detail-message', text: d.message ?? '' }),
  ])));
  box.hidden = !message;
}

// A package goes as its raw bytes, which the shared JSON client cannot
// send: the same session cookie, CSRF header and error shape by hand.
async function postArchive(name, file, type, retried = false) {
  const headers = { Accept: 'application/json', 'Content-Type': type };
  const session = currentSession();
  if (session) headers['X-CSRF-Token'] = session.csrf_token;
  let res;
  try {
    res = await fetch(`/api/v1/stacks?name=${encodeURIComponent(name)}`, { method: 'POST', headers, body: file, credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'network', 'Cannot reach the Junction server. Check the connection and try again.');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's page): the status line below says enough.
  }
  if (res.ok) return data;
  const e = data?.error;
  if (res.status === 403 && e?.code === 'csrf' && !retried) {
    const fresh = await api('GET', '/api/v1/session').catch(() => null);
    if (fresh?.csrf_token) {
      setSession({ user: fresh.user, role: fresh.role, csrf_token: fresh.csrf_token });
      return postArchive(name, file, type, true);
    }
  }
  const err = new ApiError(res.status, e?.code ?? `http_${res.status}`,
    e?.message || `The server answered ${res.status} ${res.statusText}`.trim(), e?.details);
  if (res.status === 401) {
    // The shared client notices the ended session and goes to sign-in.
    await api('GET', '/api/v1/stacks').catch((again) => {
      err.handled = again.handled;
    });
  }
  throw err;
}

async function upload() {
  const g = gen;
  const submit = $('stack-upload-submit');
  if (submit.getAttribute('aria-busy') === 'true') return;
  const name = $('stack-upload-name').value.trim();
  const file = $('stack-upload-file').files[0];
  clearField('stack-upload-name');
  clearField('stack-upload-file');
  uploadError('');
  // Only what is plainly missing is told here; the server judges the rest.
  let first = null;
  if (!name) {
    fieldError('stack-upload-name', 'Enter a name for the stack.');
    first = $('stack-upload-name');
  }
  const archive = file && ARCHIVE_TYPES.find(([re]) => re.test(file.name));
  if (!file) {
    fieldError('stack-upload-file', 'Choose a .js, .zip or .tgz file.');
    first ??= $('stack-upload-file');
  } else if (!archive && !JS_FILE.test(file.name)) {
    fieldError('stack-upload-file', `${file.name} is neither a .js file nor a .zip / .tgz package.`);
    first ??= $('stack-upload-file');
  }
  if (first) {
    first.focus();
    return;
  }
  submit.setAttribute('aria-busy', 'true');
  submit.disabled = true;
  $('stack-upload-progress').textContent = `Uploading ${file.name}… (the module is loaded once to check it)`;
  try {
    const answer = archive
      ? await postArchive(name, file, archive[1])
      : await api('POST', '/api/v1/stacks', { name, data: await file.text() });
    if (g !== gen) return;
    $('stack-upload-form').reset();
    const v = answer?.version ?? {};
    if (answer?.system_token) {
      showToken(answer.system_token, `Stack ${name} created (version ${v.version ?? 1})`);
      loadList(g);
    } else {
      announce(`Stack ${name}: version ${v.version ?? '?'} is current.`);
      loadList(g, { name, ctl: 'open' });
    }
  } catch (err) {
    if (g !== gen || err.handled) return;
    uploadError(err.message, err.details);
    let focus = null;
    for (const d of err.details) {
      if (d.field === 'name') {
        fieldError('stack-upload-name', d.message);
        focus ??= $('stack-upload-name');
      } else if (d.field) {
        $('stack-upload-file').setAttribute('aria-invalid', 'true');
        focus ??= $('stack-upload-file');
      }
    }
    (focus ?? submit).focus();
  } finally {
    if (g === gen) {
      submit.removeAttribute('aria-busy');
      submit.disabled = false;
      $('stack-upload-progress').textContent = '';
    }
  }
}

// ---------------------------------------------------------------- the token, once

function buildTokenDialog() {
  const d = el('dialog', { id: 'stack-token-dialog', class: 'dialog', 'aria-labelledby': 'stack-token-title', 'aria-describedby': 'stack-token-note' }, [
    el('div', { class: 'dialog-body' }, [
      el('h2', { id: 'stack-token-title', text: 'System token' }),
      el('p', { id: 'stack-token-note', class: 'token-note' }, [el('strong', { text: 'Copy it now: it won\'t be shown again.' }),
        ' integrator.io sends it as ', el('code', { text: 'Authorization: Bearer <token>' }), ' to the function URL.']),
      el('div', { class: 'copy-line' }, [
        el('code', { id: 'stack-token-value', class: 'copy-value', 'aria-label': 'System token' }),
        el('button', { type: 'button', id: 'stack-token-copy', class: 'button small', text: 'Copy' }),
      ]),
      el('p', { id: 'stack-token-copied', class: 'muted copy-status', role: 'status' }),
      el('div', { class: 'dialog-actions' }, [el('button', { type: 'button', id: 'stack-token-close', class: 'button primary', text: 'Done' })]),
    ]),
  ]);
  document.body.append(d);
  $('stack-token-copy').addEventListener('click', () => copyText($('stack-token-value').textContent, $('stack-token-value'), $('stack-token-copied')));
  $('stack-token-close').addEventListener('click', () => d.close());
  // Once closed, the token is nowhere in the page.
  d.addEventListener('close', () => {
    if (d.open) return; // already showing another token
    $('stack-token-value').textContent = '';
    $('stack-token-copied').textContent = '';
    window.getSelection()?.removeAllRanges();
  });
  return d;
}

// Resolves once the dialog is closed (and the token gone from the page).
function showToken(token, title) {
  tokenDialog ??= buildTokenDialog();
  $('stack-token-title').textContent = title;
  $('stack-token-value').textContent = token;
  $('stack-token-copied').textContent = '';
  openDialog(tokenDialog, $('stack-token-copy'));
  return new Promise((resolve) => tokenDialog.addEventListener('close', resolve, { once: true }));
}

// ---------------------------------------------------------------- one stack

function showStack(name, focusHeading) {
  const g = gen;
  const view = $('stacks-view');
  const heading = el('h1', { id: 'stack-heading', tabindex: '-1', text: name });
  view.setAttribute('aria-labelledby', 'stack-heading');
  view.replaceChildren(
    el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, [el('a', { class: 'back-link', href: '#/stacks', text: '← Stacks' })]),
    el('div', { class: 'toolbar' }, [heading]),
    el('p', { id: 'stacks-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'stacks-status', class: 'banner info', role: 'status', hidden: true }),
    el('p', { id: 'stack-loading', class: 'muted', text: 'Loading…' }),
  );
  if (focusHeading) heading.focus();
  api('GET', stackPath(name)).then((stack) => {
    if (g !== gen) return;
    renderStack(stack, heading);
  }, (err) => {
    if (g !== gen || err.handled) return;
    $('stack-loading').remove();
    notLoaded(view, heading, err, {
      what: 'Stack', name, gone: 'deleted', listHref: '#/stacks', listName: 'stacks',
      report: (e) => showError(e, 'load'), retry: () => showStacks(name, false),
    });
  });
}

function renderStack(stack, heading) {
  const name = stack.name;
  const view = $('stacks-view');
  const hadFocus = document.activeElement === heading;
  const versions = (Array.isArray(stack.versions) ? stack.versions : []).slice().sort((a, b) => b.version - a.version);
  const env = Array.isArray(stack.env) ? stack.env : [];
  const [kind, detail] = configKind(stack.config);

  const editButton = (id, text, cls = 'button') => el('button', { type: 'button', id, class: cls, text, data: { needs: 'edit' } });
  const refresh = refreshButton('stack-refresh', `Refresh ${name}`);
  const settings = editButton('stack-settings', 'Settings');
  settings.setAttribute('aria-haspopup', 'dialog');
  const rotate = editButton('stack-rotate', 'Rotate token');
  rotate.setAttribute('aria-haspopup', 'dialog');
  const remove = editButton('stack-delete', 'Delete', 'button danger');

  const meta = el('dl', { class: 'app-meta stack-meta' });
  const item = (term, value, id) => meta.append(el('div', {}, [el('dt', { text: term }), el('dd', { id }, [value])]));
  item('Current version', document.createTextNode(`v${stack.version}`), 'stack-current-version');
  item('Configuration', el('span', { title: detail || null }, [el('code', { text: kind }), detail ? ` ${detail}` : '']), 'stack-config');
  item('Timeout', document.createTextNode(`${stack.timeout_seconds} s`), 'stack-timeout');
  item('Max concurrency', document.createTextNode(String(stack.max_concurrency)), 'stack-concurrency');
  item('Token created', timeEl(stack.token_created_at), 'stack-token-created');
  item('Created', timeEl(stack.created_at));
  item('Updated', timeEl(stack.updated_at));

  const url = functionUrl(name);
  const urlCode = el('code', { id: 'stack-function-url', class: 'copy-value', text: url });
  const urlCopy = el('button', { type: 'button', id: 'stack-url-copy', class: 'button small', 'aria-label': 'Copy the function URL', text: 'Copy' });
  const urlStatus = el('p', { id: 'stack-url-copied', class: 'muted copy-status', role: 'status' });

  const envPart = env.length
    ? el('div', { class: 'table-wrap' }, [el('table', { id: 'stack-env', class: 'grid stack-env', 'aria-labelledby': 'stack-env-heading' }, [
      headRow(['Name', 'Value', 'Encrypted']),
      el('tbody', {}, env.map((e) => el('tr', { data: { env: e.name } }, [
        el('th', { scope: 'row' }, [el('code', { text: e.name })]),
        el('td', { class: 'env-value' }, [e.encrypted
          ? el('span', { class: 'masked-value', title: 'An encrypted value is never shown', text: MASK })
          : el('span', { text: e.value ?? '' })]),
        el('td', { class: 'env-encrypted', text: e.encrypted ? 'Yes' : 'No' }),
      ]))),
    ])])
    : el('p', { id: 'stack-env-empty', class: 'empty', text: can('edit')
      ? 'No env entries. Use Settings to add values the module reads from process.env (encrypted ones are sealed).'
      : 'No env entries.' });

  const versionsTable = el('table', { id: 'stack-versions', class: 'grid stack-versions', 'aria-labelledby': 'stack-versions-heading' }, [
    headRow(['Version', 'Uploaded', 'Format', 'Size', 'SHA-256', 'Functions']),
    el('tbody', { id: 'stack-versions-body' }, versions.map((v) => versionRow(v, stack.version))),
  ]);

  const callsRefresh = refreshButton('stack-calls-refresh', 'Refresh the recent calls');
  const callsBody = el('tbody', { id: 'stack-calls-body' });
  const callsTable = el('table', { id: 'stack-calls', class: 'grid stack-calls', 'aria-labelledby': 'stack-calls-heading', hidden: true }, [
    headRow(['Time', 'Function', 'Type', 'Outcome', 'Error code', 'Duration', 'Size']), callsBody,
  ]);

  const section = (id, title, children, extra = []) => el('section', { class: 'app-section', 'aria-labelledby': id }, [
    el('div', { class: 'section-head' }, [el('h2', { id, text: title }), ...extra]), ...children,
  ]);

  view.replaceChildren(
    el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, [el('a', { class: 'back-link', href: '#/stacks', text: '← Stacks' })]),
    el('div', { class: 'toolbar' }, [heading, el('div', { class: 'toolbar-actions' }, [refresh, settings, rotate, remove])]),
    el('p', { id: 'stacks-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'stacks-status', class: 'banner info', role: 'status', hidden: true }),
    meta,
    section('stack-url-heading', 'Function URL', [
      el('div', { class: 'copy-line' }, [urlCode, urlCopy]), urlStatus,
      el('p', { class: 'muted field-note' }, ['integrator.io posts here with ', el('code', { text: 'Authorization: Bearer <system token>' }),
        '. The token was shown once, when the stack was created or its token rotated.']),
    ]),
    section('stack-env-heading', 'Env', [envPart]),
    section('stack-versions-heading', 'Versions', [el('div', { class: 'table-wrap' }, [versionsTable])]),
    section('stack-calls-heading', 'Recent calls', [
      el('p', { id: 'stack-calls-error', class: 'banner error', role: 'alert', hidden: true }),
      el('p', { id: 'stack-calls-loading', class: 'muted', text: 'Loading…' }),
      el('div', { class: 'table-wrap' }, [callsTable]),
      el('p', { id: 'stack-calls-empty', class: 'empty', hidden: true }, ['No calls yet. Once integrator.io (or anyone with the token) posts to the function URL, ',
        'each call shows here with its log.']),
    ], [callsRefresh]),
  );
  if (hadFocus) heading.focus();

  cur = { name, stack, callsSeq: 0 };
  refresh.addEventListener('click', () => reloadStack());
  settings.addEventListener('click', () => openSettings());
  rotate.addEventListener('click', () => rotateToken(name));
  remove.addEventListener('click', () => deleteStack(name, false));
  urlCopy.addEventListener('click', () => copyText(url, urlCode, urlStatus));
  callsRefresh.addEventListener('click', () => loadCalls());
  callsBody.addEventListener('click', (event) => {
    const id = event.target.closest('tr[data-call]')?.dataset.call;
    if (id) openCall(id);
  });
  loadCalls();
}

// The whole page again (after a change), keeping the focus where it was.
async function reloadStack() {
  const g = gen;
  if (!cur) return;
  const focusId = document.activeElement?.id;
  try {
    const stack = await api('GET', stackPath(cur.name));
    if (g !== gen) return;
    const heading = $('stack-heading');
    const status = $('stacks-status');
    const kept = status && !status.hidden ? status.textContent : '';
    renderStack(stack, heading);
    if (kept) announce(kept);
    if (focusId && $(focusId)) $(focusId).focus();
  } catch (err) {
    if (g === gen) showError(err, 'load');
  }
}

function functionsList(functions) {
  const files = functions && typeof functions === 'object' ? Object.entries(functions) : [];
  if (!files.length) return el('span', { class: 'muted', text: 'none found' });
  return el('ul', { class: 'kv functions' }, files.map(([file, objects]) => el('li', {}, [
    el('code', { class: 'fn-file', text: file }),
    el('ul', { class: 'kv fn-objects' }, Object.entries(objects && typeof objects === 'object' ? objects : {})
      .sort(([a], [b]) => (a === '') - (b === '') || a.localeCompare(b))
      .map(([object, fns]) => el('li', { data: { object } }, [
        el('span', { class: 'fn-object muted', text: object === '' ? 'top level: ' : `${object}: ` }),
        el('span', { class: 'fn-names', text: (Array.isArray(fns) ? fns : []).join(', ') || '—' }),
      ]))),
  ])));
}

function versionRow(v, current) {
  const version = el('th', { scope: 'row', class: 'num' }, [`v${v.version}`]);
  if (v.version === current) version.append(' ', el('span', { class: 'state state-success', text: 'current' }));
  return el('tr', { data: { version: String(v.version) } }, [
    version,
    el('td', { class: 'version-created' }, [timeEl(v.created_at)]),
    el('td', { text: v.format ?? '—' }),
    el('td', { class: 'num', text: formatSize(v.size) }),
    el('td', { class: 'version-sha' }, [el('code', { title: v.sha256 ?? null, text: String(v.sha256 ?? '').slice(0, 12) || '—' })]),
    el('td', { class: 'version-functions' }, [functionsList(v.functions)]),
  ]);
}

// ---------------------------------------------------------------- calls

async function loadCalls() {
  const c = cur;
  if (!c) return;
  const seq = ++c.callsSeq;
  const table = $('stack-calls');
  table.setAttribute('aria-busy', 'true');
  try {
    const list = await api('GET', `${stackPath(c.name)}/calls?limit=${CALLS_LIMIT}`);
    if (c !== cur || seq !== c.callsSeq) return;
    const calls = Array.isArray(list) ? list : [];
    const body = $('stack-calls-body');
    const active = document.activeElement;
    const focused = body.contains(active) ? active.closest('tr[data-call]')?.dataset.call : null;
    body.replaceChildren(...calls.map(callRow));
    if (focused) ([...body.rows].find((r) => r.dataset.call === focused)?.querySelector('button') ?? $('stack-calls-refresh')).focus();
    table.hidden = calls.length === 0;
    $('stack-calls-empty').hidden = calls.length > 0;
    showBanner('stack-calls-error', '');
  } catch (err) {
    if (c === cur && seq === c.callsSeq && !err.handled) showBanner('stack-calls-error', messageOf(err));
  } finally {
    if (c === cur && seq === c.callsSeq) {
      $('stack-calls-loading').hidden = true;
      table.removeAttribute('aria-busy');
    }
  }
}

function callRow(call) {
  const d = toDate(call.started_at);
  const when = d ? dateFormat.format(d) : 'unknown time';
  const fn = call.function || '(none)';
  return el('tr', { class: 'call-row', data: { call: String(call.id), outcome: call.outcome } }, [
    el('td', { class: 'call-time' }, [el('button', {
      type: 'button', class: 'link-button call-open', 'aria-haspopup': 'dialog',
      'aria-label': `View the log of the call of ${fn} at ${when}`,
    }, [timeEl(call.started_at)])]),
    el('td', { class: 'call-function' }, [el('code', { text: fn })]),
    el('td', { class: 'call-type', text: call.kind ?? '—' }),
    el('td', { class: 'call-outcome' }, [outcomeBadge(call.outcome)]),
    el('td', { class: 'call-error' }, [call.error_code ? el('code', { text: call.error_code }) : el('span', { class: 'muted', text: '—' })]),
    el('td', { class: 'call-duration num', text: formatDuration(call.duration_ms) }),
    el('td', { class: 'call-size num', text: call.outcome === 'succeeded' ? formatSize(call.response_size) : '—' }),
  ]);
}

function buildCallDialog() {
  const d = el('dialog', { id: 'stack-call-dialog', class: 'dialog wide', 'aria-labelledby': 'stack-call-title' }, [
    el('div', { class: 'dialog-body' }, [
      el('div', { class: 'dialog-head' }, [
        el('h2', { id: 'stack-call-title', text: 'Call' }),
        el('div', { class: 'dialog-head-actions' }, [el('button', { type: 'button', id: 'stack-call-close', class: 'button', text: 'Close' })]),
      ]),
      el('p', { id: 'stack-call-error', class: 'banner error', role: 'alert', hidden: true }),
      el('p', { id: 'stack-call-loading', class: 'muted', hidden: true, text: 'Loading…' }),
      el('dl', { id: 'stack-call-meta', class: 'app-meta' }),
      el('h3', { id: 'stack-call-log-heading', text: 'Log' }),
      el('pre', { id: 'stack-call-log', class: 'call-log', tabindex: '0', 'aria-labelledby': 'stack-call-log-heading' }),
    ]),
  ]);
  document.body.append(d);
  $('stack-call-close').addEventListener('click', () => d.close());
  // The close event comes a moment after close(): by then the dialog may be
  // open again for another call, whose log must stay.
  d.addEventListener('close', () => {
    if (!d.open) $('stack-call-log').textContent = '';
  });
  return d;
}

function openCall(id) {
  const c = cur;
  if (!c) return;
  callDialog ??= buildCallDialog();
  const seq = ++callSeq;
  $('stack-call-title').textContent = `Call ${id}`;
  $('stack-call-meta').replaceChildren();
  $('stack-call-log').textContent = '';
  $('stack-call-log').hidden = true;
  showBanner('stack-call-error', '');
  $('stack-call-loading').hidden = false;
  openDialog(callDialog, $('stack-call-close'));
  api('GET', `${stackPath(c.name)}/calls/${encodeURIComponent(id)}`).then((call) => {
    if (seq !== callSeq || !callDialog.open) return;
    $('stack-call-title').textContent = `Call of ${call.function || '(no function)'}`;
    const meta = $('stack-call-meta');
    const item = (term, value) => {
      if (value == null || value === '') return;
      meta.append(el('div', {}, [el('dt', { text: term }), el('dd', {}, [typeof value === 'string' ? document.createTextNode(value) : value])]));
    };
    item('Started', timeEl(call.started_at));
    item('Outcome', outcomeBadge(call.outcome));
    item('Error code', call.error_code ? el('code', { text: call.error_code }) : null);
    item('Type', call.kind);
    item('Target', call.target);
    item('Version', `v${call.version}`);
    item('Duration', formatDuration(call.duration_ms));
    item('Response size', call.outcome === 'succeeded' ? formatSize(call.response_size) : null);
    item('Integration', call.integration_id);
    item('Flow', call.flow_id);
    item('Trace id', call.trace_id);
    const log = $('stack-call-log');
    log.textContent = call.log || 'This call wrote no log.';
    log.classList.toggle('muted', !call.log);
    log.hidden = false;
  }, (err) => {
    if (seq === callSeq && !err.handled) showBanner('stack-call-error', messageOf(err));
  }).finally(() => {
    if (seq === callSeq) $('stack-call-loading').hidden = true;
  });
}

// ---------------------------------------------------------------- token, delete

async function rotateToken(name) {
  const g = gen;
  if (!(await confirmDialog(`Rotate the system token of ${name}? The current token stops working at once; integrator.io needs the new one.`))) return;
  if (g !== gen) return;
  try {
    const answer = await api('POST', `${stackPath(name)}/token`);
    if (g !== gen) return;
    const closed = showToken(answer.system_token, `New system token for ${name}`);
    announce(`The system token of ${name} was rotated; the old one no longer works.`);
    // After the dialog: the page (Token created) is redrawn, the focus back on Rotate token.
    await closed;
    if (g === gen) reloadStack();
  } catch (err) {
    if (g === gen) showError(err);
  }
}

async function deleteStack(name, fromList) {
  const g = gen;
  if (!(await confirmDialog(`Delete stack ${name}? Its token stops working at once. Its versions and call records are kept; uploading the name again continues the version numbers with a new token.`))) return;
  if (g !== gen) return;
  try {
    await api('DELETE', stackPath(name));
    if (g !== gen) return;
    if (fromList) {
      announce(`Deleted stack ${name}.`);
      const i = stacks.findIndex((s) => s.name === name);
      const next = stacks[i + 1] ?? stacks[i - 1];
      loadList(g, next ? { name: next.name, ctl: 'delete' } : { name: '', ctl: '' });
    } else {
      notice = `Deleted stack ${name}.`;
      location.hash = '#/stacks';
    }
  } catch (err) {
    if (g === gen) showError(err);
  }
}

// ---------------------------------------------------------------- settings

function buildSettingsDialog() {
  const number = (id, label, max, help) => el('div', { class: 'field' }, [
    el('label', { for: id, text: label }),
    el('input', { id, type: 'number', min: '1', max: String(max), step: '1', inputmode: 'numeric', required: true, 'aria-describedby': `${id}-help ${id}-error` }),
    el('span', { id: `${id}-help`, class: 'field-help muted', text: help }),
    el('span', { id: `${id}-error`, class: 'field-error' }),
  ]);
  const form = el('form', { id: 'stack-settings-form', class: 'dialog-body', method: 'dialog', noValidate: true }, [
    el('h2', { id: 'stack-settings-title', text: 'Settings' }),
    el('p', { id: 'stack-settings-error', class: 'banner error', role: 'alert', hidden: true }),
    el('div', { class: 'config-fields' }, [
      number('stack-settings-timeout', 'Timeout (seconds)', 3600, 'A call running longer is stopped: 1 to 3600.'),
      number('stack-settings-concurrency', 'Max concurrency', 64, 'Calls served at once: 1 to 64.'),
    ]),
    el('div', { class: 'section-head' }, [
      el('h3', { id: 'stack-settings-env-title', text: 'Env' }),
      el('button', { type: 'button', id: 'stack-env-add', class: 'button small', text: '+ New entry' }),
    ]),
    el('p', { id: 'stack-settings-help', class: 'muted config-help', text: 'The module reads these from process.env. An encrypted value is never shown again once saved and is masked in call logs; leave its value empty to keep it.' }),
    el('p', { id: 'stack-env-empty', class: 'empty', hidden: true, text: 'No entries. Use + New entry to add one.' }),
    el('div', { class: 'table-wrap' }, [el('table', { id: 'stack-env-table', class: 'grid params config-entries', 'aria-labelledby': 'stack-settings-env-title' }, [
      headRow(['Name', 'Value', 'Encrypted', '-Delete']),
      el('tbody', { id: 'stack-env-body' }),
    ])]),
    el('div', { class: 'dialog-actions' }, [
      el('button', { type: 'submit', id: 'stack-settings-save', class: 'button primary', text: 'Save & Close' }),
      el('button', { type: 'button', id: 'stack-settings-cancel', class: 'button', text: 'Cancel' }),
    ]),
  ]);
  const d = el('dialog', { id: 'stack-settings-dialog', class: 'dialog wide', 'aria-labelledby': 'stack-settings-title', 'aria-describedby': 'stack-settings-help' }, [form]);
  document.body.append(d);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    saveSettings();
  });
  $('stack-settings-cancel').addEventListener('click', () => d.close());
  editableRows({
    body: 'stack-env-body', add: 'stack-env-add', update: updateEnvEmpty, newRow: () => envRow(null),
    name: '.entry-name', remove: 'button.entry-delete',
  });
  for (const id of ['stack-settings-timeout', 'stack-settings-concurrency']) $(id).addEventListener('input', () => clearField(id));
  // Closing without saving drops the edits, values included.
  d.addEventListener('close', () => {
    settingsSeq++;
    $('stack-env-body').replaceChildren();
    form.reset();
  });
  return d;
}

function updateEnvEmpty() {
  const n = $('stack-env-body').rows.length;
  $('stack-env-table').hidden = n === 0;
  $('stack-env-empty').hidden = n > 0;
}

// One editable env entry; a stored encrypted one is locked (its name too:
// renaming would drop the sealed value) and its value input starts empty.
function envRow(orig) {
  const id = `senv-${++envRowSeq}`;
  const locked = orig?.encrypted === true;
  const described = `${id}-error`;
  const name = el('input', {
    type: 'text', id: `${id}-name`, class: 'entry-name', autocomplete: 'off', spellcheck: 'false',
    'aria-label': 'Entry name', 'aria-describedby': described, readonly: locked ? 'readonly' : null,
  });
  name.value = orig?.name ?? '';
  const value = el('input', {
    type: locked ? 'password' : 'text', id: `${id}-value`, class: 'entry-value', autocomplete: 'off', spellcheck: 'false',
    'aria-label': 'Value', 'aria-describedby': described, placeholder: locked ? 'unchanged' : null,
  });
  value.value = locked ? '' : (orig?.value ?? '');
  const box = el('input', {
    type: 'checkbox', id: `${id}-encrypted`, class: 'entry-encrypted', checked: locked, disabled: locked,
    'aria-describedby': described, title: locked ? 'An encrypted entry cannot be made plain' : null,
  });
  box.addEventListener('change', () => {
    value.type = box.checked ? 'password' : 'text';
  });
  const valueCell = el('td', { class: 'param-value-cell' }, [value]);
  if (locked) valueCell.prepend(el('span', { class: 'masked-value', title: 'The stored value is never shown', text: MASK }));
  const row = el('tr', { class: 'entry-row', data: { locked: locked ? '1' : '' } }, [
    el('td', {}, [name, el('span', { id: described, class: 'param-error entry-error' })]),
    valueCell,
    el('td', { class: 'entry-encrypted-cell' }, [el('label', { class: 'checkbox-field' }, [box, el('span', { class: 'visually-hidden', text: 'Encrypted' })])]),
    el('td', { class: 'actions' }, [el('button', {
      type: 'button', class: 'button small danger entry-delete', title: 'Delete this entry',
      'aria-label': `Delete ${orig?.name || 'the new entry'}`, text: '✕',
    })]),
  ]);
  const clear = () => {
    row.querySelector('.entry-error').textContent = '';
    for (const i of row.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  };
  for (const i of [name, value, box]) i.addEventListener('input', clear);
  return row;
}

function envOf(row) {
  const name = row.querySelector('.entry-name').value.trim();
  const value = row.querySelector('.entry-value').value;
  const encrypted = row.querySelector('.entry-encrypted').checked;
  // A locked entry left empty is sent without a value: the sealed one stays.
  if (row.dataset.locked && value === '') return { name, encrypted: true };
  return { name, value, encrypted };
}

function openSettings() {
  if (!cur) return;
  settingsDialog ??= buildSettingsDialog();
  const { stack } = cur;
  settingsSeq++;
  showBanner('stack-settings-error', '');
  $('stack-settings-title').textContent = `Settings of ${stack.name}`;
  for (const id of ['stack-settings-timeout', 'stack-settings-concurrency']) clearField(id);
  $('stack-settings-timeout').value = String(stack.timeout_seconds ?? '');
  $('stack-settings-concurrency').value = String(stack.max_concurrency ?? '');
  $('stack-env-body').replaceChildren(...(Array.isArray(stack.env) ? stack.env : []).map(envRow));
  updateEnvEmpty();
  openDialog(settingsDialog, $('stack-settings-timeout'));
}

async function saveSettings() {
  const c = cur;
  if (!c) return;
  const seq = settingsSeq;
  const button = $('stack-settings-save');
  if (button.getAttribute('aria-busy') === 'true') return;
  const rows = [...$('stack-env-body').rows];
  showBanner('stack-settings-error', '');
  for (const id of ['stack-settings-timeout', 'stack-settings-concurrency']) clearField(id);
  for (const row of rows) {
    row.querySelector('.entry-error').textContent = '';
    for (const i of row.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  }
  let first = null;
  const numberOf = (id, max) => {
    const text = $(id).value.trim();
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < 1 || n > max) {
      fieldError(id, `Enter a whole number from 1 to ${max}.`);
      first ??= $(id);
    }
    return n;
  };
  const timeout = numberOf('stack-settings-timeout', 3600);
  const concurrency = numberOf('stack-settings-concurrency', 64);
  const rowError = (row, message, input) => {
    const note = row.querySelector('.entry-error');
    note.textContent = [note.textContent, message].filter(Boolean).join('; ');
    input.setAttribute('aria-invalid', 'true');
    first ??= input;
  };
  for (const row of rows) {
    const input = row.querySelector('.entry-name');
    const name = input.value.trim();
    if (!name) rowError(row, 'Enter a name, or delete this entry.', input);
    else if (!ENV_NAME_RE.test(name)) rowError(row, 'Use letters, digits and _, not starting with a digit.', input);
  }
  if (first) {
    showBanner('stack-settings-error', 'Check the fields marked below.');
    first.focus();
    return;
  }
  button.setAttribute('aria-busy', 'true');
  try {
    await api('PATCH', stackPath(c.name), { timeout_seconds: timeout, max_concurrency: concurrency, env: rows.map(envOf) });
    if (seq !== settingsSeq || c !== cur) return;
    // Redrawn once the close event has put the focus back on Settings.
    const closed = new Promise((resolve) => settingsDialog.addEventListener('close', resolve, { once: true }));
    settingsDialog.close();
    announce(`Settings of ${c.name} saved.`);
    await closed;
    if (c === cur) reloadStack();
  } catch (err) {
    if (err.handled || seq !== settingsSeq) return;
    showBanner('stack-settings-error', messageOf(err));
    let focus = null;
    for (const d of err.details) {
      const m = /^env\[(\d+)\]\.?(\w*)/.exec(d.field ?? '');
      const row = m && rows[Number(m[1])];
      const top = { timeout_seconds: 'stack-settings-timeout', max_concurrency: 'stack-settings-concurrency' }[d.field];
      if (top) {
        fieldError(top, d.message);
        focus ??= $(top);
      } else if (row) {
        const input = row.querySelector(m[2] === 'value' ? '.entry-value' : '.entry-name');
        const note = row.querySelector('.entry-error');
        note.textContent = [note.textContent, d.message].filter(Boolean).join('; ');
        input.setAttribute('aria-invalid', 'true');
        focus ??= input;
      }
    }
    (focus ?? button).focus();
  } finally {
    button.removeAttribute('aria-busy');
  }
}
