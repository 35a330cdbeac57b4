// Junction web UI: what every page shares — the API client, the session,
// DOM building without HTML parsing, times, dialogs, and the parameter
// table (spec 000's "same parameter table semantics" for Global Parameters,
// job parameters and configurations).
//
// Plain ES2020 modules served as they are (no build step): the server embeds
// these files. They talk only to the public /api/v1.

// Run states a Stop button can still act on (spec 004's task states).
export const STOPPABLE = new Set(['PENDING', 'STARTED']);
// Run state → colour family used by the CSS (blue, green, red, yellow, grey).
export const STATE_CLASS = {
  STARTED: 'running', PENDING: 'queued', WAITING: 'queued', RETRY: 'warning',
  SUCCESS: 'success', FAILURE: 'failure', REVOKED: 'warning',
};

export const $ = (id) => document.getElementById(id);
export const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
export const clockFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

let session = null; // {user, role, csrf_token} while signed in
let sessionLost = () => {};
export const currentSession = () => session;
export function setSession(s) {
  session = s;
}

// Whether the signed-in role may do something (roles are ordered; see
// junction-core's role.rs). The server decides; this only spares people
// controls that would be refused.
const ROLE_RANK = { viewer: 0, operator: 1, editor: 2, admin: 3 };
const NEEDS_RANK = { read: 0, operate: 1, edit: 2, administer: 3 };
export const can = (need) => (ROLE_RANK[session?.role] ?? -1) >= NEEDS_RANK[need];
// Called when an API answer says the session is gone (401).
export function onSessionLost(fn) {
  sessionLost = fn;
}

// ---------------------------------------------------------------- API

export class ApiError extends Error {
  constructor(status, code, message, details = []) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
    this.handled = false; // true once the UI already reacted (session lost)
  }
}

export async function api(method, path, body, retried = false) {
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
  // Signing in from another tab replaces the session cookie, and with it the
  // CSRF token: fetch the new one and try once more.
  if (res.status === 403 && e?.code === 'csrf' && session && !retried && !path.startsWith('/api/v1/session')) {
    const fresh = await api('GET', '/api/v1/session').catch(() => null);
    if (fresh?.csrf_token) {
      session = { user: fresh.user, role: fresh.role, csrf_token: fresh.csrf_token };
      return api(method, path, body, true);
    }
  }
  const err = new ApiError(res.status, e?.code ?? `http_${res.status}`,
    e?.message || `The server answered ${res.status} ${res.statusText}`.trim(), e?.details);
  // A 401 on anything but the session itself means the cookie expired or was
  // revoked: go back to sign-in instead of showing a confusing error.
  if (res.status === 401 && session && !path.startsWith('/api/v1/session')) {
    sessionLost('Your session has ended. Sign in again.');
    err.handled = true;
  }
  throw err;
}

export function messageOf(err) {
  if (!(err instanceof ApiError)) return `Something went wrong: ${err.message}`;
  const extra = err.details.map((d) => (d.field ? `${d.field}: ${d.message}` : d.message)).filter(Boolean);
  return extra.length ? `${err.message} (${extra.join('; ')})` : err.message;
}

// A value as an input shows it: strings as they are, others as JSON.
export const valueText = (v) => (v == null ? '' : typeof v === 'string' ? v : JSON.stringify(v));
// An application's step `file` may carry the source's suffix (spec 004).
export const stepFile = (file) => String(file ?? '').replace(/\.(js|py)$/, '');

export const jobPath = (name) => `/api/v1/jobs/${encodeURIComponent(name)}`;
export const appPath = (name) => `/api/v1/applications/${encodeURIComponent(name)}`;

// ---------------------------------------------------------------- DOM helpers

// Builds elements from data without ever parsing it as HTML: `text` becomes
// textContent, `data` the dataset, booleans are properties, the rest attributes.
export function el(tag, props = {}, children = []) {
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

export function toDate(iso) {
  const d = iso ? new Date(iso) : null;
  return d && !Number.isNaN(d.getTime()) ? d : null;
}

// Local time for reading, UTC (ISO 8601) on hover.
export function timeEl(iso) {
  const d = toDate(iso);
  if (!d) return el('span', { class: 'muted', text: iso || '—' });
  return el('time', { datetime: d.toISOString(), title: d.toISOString(), text: dateFormat.format(d) });
}

export function formatDuration(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const total = Math.round(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  return h ? `${h} h ${m} min` : `${m} min ${total % 60} s`;
}

export function stateBadge(state) {
  return el('span', { class: `state state-${STATE_CLASS[state] ?? 'other'}`, text: state || 'UNKNOWN' });
}

export function showBanner(id, message, source = '') {
  const banner = $(id);
  banner.textContent = message || '';
  banner.hidden = !message;
  banner.dataset.source = source;
}


// Rows are re-rendered on every refresh. To keep keyboard users where they
// were, remember the focused control as (row key, data-ctl) and find it again.
// A row's key is its data-job, data-run or data-key.
const rowKey = (row) => row.dataset.job ?? row.dataset.run ?? row.dataset.key;

export function focusKey(node) {
  const row = node?.closest?.('tr[data-job], tr[data-run], tr[data-key]');
  return { node, body: row?.parentElement, key: row && rowKey(row), ctl: node?.dataset?.ctl };
}

export function refocus(k, fallback) {
  if (k.node?.isConnected && !k.node.disabled) return k.node.focus();
  const row = k.body && [...k.body.rows].find((r) => rowKey(r) === k.key);
  const target = row && ((k.ctl && row.querySelector(`[data-ctl="${k.ctl}"]`)) || row.querySelector('button, input, a'));
  (target || fallback)?.focus();
}

export function renderPreservingFocus(tbody, rows, fallback) {
  const active = document.activeElement;
  const k = tbody.contains(active) ? focusKey(active) : null;
  tbody.replaceChildren(...rows);
  if (k) refocus(k, fallback);
}

// Native <dialog> gives modality, a focus trap and Escape. Focus goes back to
// the opener on close; if a refresh replaced the opener meanwhile, to the
// same control in the same row.
export function openDialog(dialog, initialFocus) {
  const opener = focusKey(document.activeElement);
  // After the session ended, sign-in has the focus already.
  dialog.addEventListener('close', () => currentSession() && refocus(opener, $('main')), { once: true });
  dialog.showModal();
  initialFocus.focus();
}

export function confirmDialog(message) {
  const dialog = $('confirm-dialog');
  $('confirm-message').textContent = message;
  dialog.returnValue = ''; // Escape leaves it empty: counts as No
  openDialog(dialog, $('confirm-no'));
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
  });
}

// The cells every run table shares: View (the log in a new tab) and a red
// Stop while the run can still be stopped. `when` names the run for
// screen readers ("the run started …").
export function logLink(href, when, cls) {
  return el('a', {
    class: cls, href, target: '_blank', rel: 'noopener', data: { ctl: 'log' },
    'aria-label': `View the log of the run started ${when} (opens in a new tab)`, text: 'View',
  });
}

export function stopRunCell(run, when) {
  const cell = el('td', { class: 'actions' });
  if (STOPPABLE.has(run.state)) {
    cell.append(el('button', {
      type: 'button', class: 'button small danger stop-run', data: { ctl: 'stop-run', needs: 'operate' },
      title: 'Stop this run', 'aria-label': `Stop the run started ${when}`,
    }, [el('span', { class: 'icon-stop', 'aria-hidden': 'true' }), 'Stop']));
  }
  return cell;
}

/// A detail page whose thing could not be loaded: "not found" with a link
/// back to the list, or the error (shown by `report`) and a Try again button.
export function notLoaded(view, heading, err, { what, name, gone, listHref, listName, report, retry }) {
  if (err.status === 404) {
    heading.textContent = `${what} not found`;
    view.append(el('div', { class: 'empty not-found' }, [
      el('p', { text: `No ${what.toLowerCase()} is named “${name}”. It may have been ${gone}.` }),
      el('p', {}, [el('a', { href: listHref, text: `Back to the list of ${listName}` })]),
    ]));
  } else {
    report(err);
    const again = el('button', { type: 'button', class: 'button', text: 'Try again' });
    again.addEventListener('click', retry);
    view.append(el('p', {}, [again]));
  }
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

// A page's two banners (an error and a status line that clears itself):
// each message replaces the other, as both answer the latest action.
export function banners(errorId, statusId, clearMs = 10_000) {
  let timer = 0;
  return {
    announce(message) {
      showBanner(errorId, '');
      showBanner(statusId, message);
      clearTimeout(timer);
      timer = setTimeout(() => showBanner(statusId, ''), clearMs);
    },
    error(err, source = 'action') {
      if (err.handled) return;
      showBanner(statusId, '');
      showBanner(errorId, messageOf(err), source);
    },
    // Also on leaving a page whose banners were never built.
    clear() {
      clearTimeout(timer);
      for (const id of [errorId, statusId]) if ($(id)) showBanner(id, '');
    },
  };
}

// ---------------------------------------------------------------- parameter tables

export const PARAM_TYPES = [['string', 'String'], ['masked', 'String (Masked)']];
export const MASKED_TEXT = '•••••• (masked)';
let paramRowSeq = 0; // unique ids for the inputs of each row
// Row → the stored value it was made from, so an untouched number, object
// or missing value is sent back as it was, not as the text the input shows.
const storedValues = new WeakMap();

// A parameter table (spec 000's Global Parameters and job parameters): the
// element ids of its (empty) <table>, empty-state note and add button; the
// head and the <tbody id="BODY"> are made here. The table hides and the note
// shows while there are no rows.
export function paramTable({ body, table, empty, add }) {
  $(table).replaceChildren(
    el('thead', {}, [el('tr', {}, [
      ...['Name', 'Type', 'Value'].map((text) => el('th', { scope: 'col', text })),
      el('th', { scope: 'col' }, [el('span', { class: 'visually-hidden', text: 'Delete' })]),
    ])]),
    el('tbody', { id: body }),
  );
  const update = () => {
    const n = $(body).rows.length;
    $(table).hidden = n === 0;
    $(empty).hidden = n > 0;
  };
  editableRows({ body, add, update, newRow: () => paramRow(), name: '.param-name', remove: 'button.param-delete' });
  return {
    update,
    rows: () => [...$(body).rows],
    fill(list) {
      $(body).replaceChildren(...list.map(paramRow));
      update();
    },
  };
}

// The add and delete buttons of an editable table of rows (parameters,
// configuration entries, a stack's env): Add appends `newRow()` and focuses
// its `name` input; a row's `remove` button deletes it and moves the focus to
// the next row's button (or Add). `update` runs after each change.
export function editableRows({ body, add, update, newRow, name, remove }) {
  $(add).addEventListener('click', () => {
    const row = newRow();
    $(body).append(row);
    update();
    row.querySelector(name).focus();
  });
  $(body).addEventListener('click', (event) => {
    const row = event.target.closest(remove)?.closest('tr');
    if (!row) return;
    const next = row.nextElementSibling ?? row.previousElementSibling;
    row.remove();
    update();
    (next?.querySelector(remove) ?? $(add)).focus();
  });
}

// Puts a server violation next to its row when its field names one
// (`[2].name`, `app_variables[2].value`): returns the input, or null.
export function placeParamError(rows, field, message) {
  const m = /^(?:\w+)?\[(\d+)\]\.?(\w*)/.exec(field ?? '');
  const row = m && rows[Number(m[1])];
  if (!row) return null;
  const input = row.querySelector(m[2] === 'value' ? '.param-value' : '.param-name');
  input.setAttribute('aria-invalid', 'true');
  const note = row.querySelector('.param-error');
  note.textContent = [note.textContent, message].filter(Boolean).join('; ');
  return input;
}

export function paramRow(param = { name: '', type: 'string', value: '' }) {
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
  valueInput.value = param.type === 'masked' ? '' : valueText(param.value);
  typeSelect.addEventListener('change', () => {
    valueInput.type = typeSelect.value === 'masked' ? 'password' : 'text';
  });

  const valueCell = el('td', { class: 'param-value-cell' }, [valueInput]);
  if (storedMasked) {
    valueCell.prepend(el('span', { class: 'masked-value', title: 'The stored value is never shown', text: MASKED_TEXT }));
  }
  const remove = el('button', {
    type: 'button', class: 'button small danger param-delete', title: 'Delete this parameter', 'data-needs': 'edit',
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
  if (param.name !== '' && param.type !== 'masked') storedValues.set(row, param.value);
  return row;
}

export function clearParamError(row) {
  row.querySelector('.param-error').textContent = '';
  for (const i of row.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}


export function paramOf(row) {
  const type = row.querySelector('.param-type').value;
  const value = row.querySelector('.param-value').value;
  const stored = storedValues.get(row);
  let out = value;
  // An untouched stored masked value is sent as null: the server keeps it.
  if (row.dataset.storedMasked && value === '') out = null;
  else if (storedValues.has(row) && type === 'string' && value === valueText(stored)) out = stored;
  return { name: row.querySelector('.param-name').value.trim(), type, value: out };
}

