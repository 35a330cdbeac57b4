// Configurations (spec 004): named sets of variables an application uses.
// The list, an editor dialog (entries as name / value / Encrypted rows),
// new and delete.
//
// An encrypted entry is write-only: the server reads it back as `null`, the
// editor shows it locked (MASKED_TEXT, an empty value input with the
// placeholder "unchanged", Encrypted checked and disabled) and sends `null`
// when it is left alone, which keeps the sealed value. Its value is never
// put in the DOM. The reserved configuration `global` holds the Global
// Parameters, edited under Integration Hub → Global Parameters: it is
// listed here with a pointer there, not editable.

import {
  $, api, banners, confirmDialog, editableRows, el, MASKED_TEXT, messageOf, openDialog, showBanner, timeEl, valueText,
} from './core.js';

const GLOBAL = 'global';
const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const MAX_NAME = 128;
const STATUS_CLEAR_MS = 10_000;
// Keys the server adds on read-back (ignored on upload).
const SERVER_KEYS = ['created_at', 'updated_at'];

let gen = 0; // bumped on every show and leave: late answers are dropped
let listSeq = 0;
let configs = [];
let dialog = null;
let editSeq = 0;
let editing = null; // {name: null for a new one, base: the stored document}
let rowSeq = 0;
const rowInfo = new WeakMap(); // entry row → {orig: the stored entry or null, text: its value as first shown}

export function leaveConfigurations() {
  gen++;
  editSeq++;
  configBanners.clear();
  if (dialog?.open) dialog.close();
}

export function showConfigurations(focusHeading) {
  leaveConfigurations();
  const view = $('configs-view');
  const heading = el('h1', { id: 'configs-heading', tabindex: '-1', text: 'Configurations' });
  const add = el('button', { type: 'button', id: 'config-new', class: 'button primary', 'aria-haspopup': 'dialog', text: '+ New Configuration', data: { needs: 'edit' } });
  const refresh = el('button', { type: 'button', id: 'configs-refresh', class: 'button', 'aria-label': 'Refresh the list of configurations' }, [
    el('span', { class: 'icon-refresh', 'aria-hidden': 'true', text: '↻' }), ' Refresh',
  ]);
  const body = el('tbody', { id: 'configs-body' });
  const table = el('table', { id: 'configs-table', class: 'grid configs-list', 'aria-labelledby': 'configs-heading', hidden: true }, [
    el('thead', {}, [el('tr', {}, [
      el('th', { scope: 'col', text: 'Configuration' }), el('th', { scope: 'col', text: 'Description' }),
      el('th', { scope: 'col', text: 'Entries' }), el('th', { scope: 'col', text: 'Updated' }),
      el('th', { scope: 'col' }, [el('span', { class: 'visually-hidden', text: 'Actions' })]),
    ])]),
    body,
  ]);
  view.setAttribute('aria-labelledby', 'configs-heading');
  view.replaceChildren(
    el('div', { class: 'toolbar' }, [heading, el('div', { class: 'toolbar-actions' }, [add, refresh])]),
    el('p', { class: 'muted page-help' }, ['Named sets of variables (endpoints, credentials) that an application uses through its ',
      el('code', { text: 'configuration' }), ' key. Encrypted values are sealed when saved and never shown again.']),
    el('p', { id: 'configs-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'configs-status', class: 'banner info', role: 'status', hidden: true }),
    el('p', { id: 'configs-loading', class: 'muted', text: 'Loading…' }),
    el('div', { class: 'table-wrap' }, [table]),
    el('div', { id: 'configs-empty', class: 'empty', hidden: true }, [
      el('p', { text: 'No configurations yet.' }),
      el('p', {}, ['Use + New Configuration, or upload one with ', el('code', { text: 'junction configs upload FILE' }), '.']),
    ]),
  );
  if (focusHeading) heading.focus();
  add.addEventListener('click', () => openEditor(null));
  refresh.addEventListener('click', () => loadList());
  body.addEventListener('click', onListClick);
  loadList();
}

const configBanners = banners('configs-error', 'configs-status', STATUS_CLEAR_MS);
const announce = configBanners.announce;
const showError = (err) => configBanners.error(err);

const configPath = (name) => `/api/v1/configurations/${encodeURIComponent(name)}`;

// `focus`: {name, ctl} of the control to focus once the rows are back.
async function loadList(focus = null) {
  const g = gen;
  const seq = ++listSeq;
  const table = $('configs-table');
  table.setAttribute('aria-busy', 'true');
  try {
    const list = await api('GET', '/api/v1/configurations');
    if (g !== gen || seq !== listSeq) return;
    configs = (Array.isArray(list) ? list : []).sort((a, b) => (a.name === GLOBAL) - (b.name === GLOBAL) || a.name.localeCompare(b.name));
    const body = $('configs-body');
    const active = document.activeElement;
    const row = body.contains(active) ? active.closest('tr[data-config]') : null;
    focus ??= row ? { name: row.dataset.config, ctl: active.dataset.ctl } : null;
    body.replaceChildren(...configs.map(configRow));
    if (focus) {
      const again = [...body.rows].find((r) => r.dataset.config === focus.name);
      const target = again && (again.querySelector(`[data-ctl="${focus.ctl}"]`) ?? again.querySelector('button, a'));
      (target ?? $('config-new')).focus();
    }
    table.hidden = configs.length === 0;
    $('configs-empty').hidden = configs.length > 0;
    if ($('configs-error').dataset.source === 'list') showBanner('configs-error', '');
  } catch (err) {
    if (g === gen && seq === listSeq && !err.handled) showBanner('configs-error', messageOf(err), 'list');
  } finally {
    if (g === gen && seq === listSeq) {
      $('configs-loading').hidden = true;
      table.removeAttribute('aria-busy');
    }
  }
}

function configRow(c) {
  const label = c.friendly_name || c.name;
  const nameCell = el('th', { scope: 'row', class: 'config-name' }, [el('span', { class: 'friendly-name', text: label })]);
  if (label !== c.name) nameCell.append(el('span', { class: 'config-id muted', text: c.name }));
  const entries = `${c.entries ?? 0}${c.encrypted_entries ? ` (${c.encrypted_entries} encrypted)` : ''}`;
  const actions = el('td', { class: 'actions' });
  if (c.name === GLOBAL) {
    if (label === c.name) nameCell.append(el('span', { class: 'config-id muted', text: 'Global Parameters' }));
    actions.append(el('span', { class: 'muted global-note' }, ['Edited under ',
      el('a', { href: '#/', text: 'Integration Hub → Global Parameters' })]));
  } else {
    actions.append(
      el('button', { type: 'button', class: 'button small config-edit', data: { ctl: 'edit', needs: 'edit' }, 'aria-haspopup': 'dialog', 'aria-label': `Edit ${c.name}`, text: 'Edit' }),
      el('button', { type: 'button', class: 'button small danger config-delete', data: { ctl: 'delete', needs: 'edit' }, 'aria-label': `Delete ${c.name}`, text: 'Delete' }),
    );
  }
  return el('tr', { data: { config: c.name } }, [
    nameCell,
    el('td', { class: 'config-description', text: c.description || '—', title: c.description || null }),
    el('td', { class: 'config-entries', text: entries }),
    el('td', {}, [timeEl(c.updated_at)]),
    actions,
  ]);
}

function onListClick(event) {
  const button = event.target.closest('button[data-ctl]');
  const name = button?.closest('tr[data-config]')?.dataset.config;
  if (!name) return;
  if (button.dataset.ctl === 'edit') openEditor(name);
  else if (button.dataset.ctl === 'delete') deleteConfig(name);
}

async function deleteConfig(name) {
  const g = gen;
  if (!(await confirmDialog(`Delete configuration ${name}? Its encrypted values are deleted with it.`))) return;
  if (g !== gen) return;
  // Focus goes to the next row's Delete button once this row is gone.
  const i = configs.findIndex((c) => c.name === name);
  const next = configs.slice(i + 1).concat(configs.slice(0, i).reverse()).find((c) => c.name !== GLOBAL);
  try {
    await api('DELETE', configPath(name));
    if (g !== gen) return;
    announce(`Deleted configuration ${name}.`);
  } catch (err) {
    if (g === gen) showError(err);
  }
  if (g === gen) loadList(next ? { name: next.name, ctl: 'delete' } : { name: '', ctl: '' });
}

// ---------------------------------------------------------------- editor

function buildDialog() {
  const field = (id, text, input, help) => el('div', { class: 'field' }, [
    el('label', { for: id, text }), input, help ?? '', el('span', { id: `${id}-error`, class: 'field-error' }),
  ]);
  const input = (id, extra = {}) => el('input', { type: 'text', id, autocomplete: 'off', spellcheck: 'false', ...extra });
  const form = el('form', { id: 'config-form', class: 'dialog-body', method: 'dialog', noValidate: true }, [
    el('h2', { id: 'config-title', text: 'Configuration' }),
    el('p', { id: 'config-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'config-loading', class: 'muted', hidden: true, text: 'Loading…' }),
    el('div', { class: 'config-fields' }, [
      field('config-name', 'Name', input('config-name', { required: true, 'aria-describedby': 'config-name-help config-name-error', maxlength: String(MAX_NAME) }),
        el('span', { id: 'config-name-help', class: 'field-help muted', text: 'Letters, digits, _ - and . ; applications refer to it by this name.' })),
      field('config-friendly', 'Friendly name (optional)', input('config-friendly', { 'aria-describedby': 'config-friendly-error' })),
      field('config-description', 'Description (optional)', input('config-description', { 'aria-describedby': 'config-description-error' })),
    ]),
    el('div', { class: 'section-head' }, [
      el('h3', { id: 'config-entries-title', text: 'Entries' }),
      el('button', { type: 'button', id: 'config-add', class: 'button small', text: '+ New entry' }),
    ]),
    el('p', { id: 'config-help', class: 'muted config-help', text: 'Scripts read these as variables. An encrypted value is never shown again once saved, and an encrypted entry cannot be made plain; leave its value empty to keep it.' }),
    el('p', { id: 'config-empty', class: 'empty', hidden: true, text: 'No entries yet. Use + New entry to add one.' }),
    el('div', { class: 'table-wrap' }, [el('table', { id: 'config-entries', class: 'grid params config-entries', 'aria-labelledby': 'config-entries-title' }, [
      el('thead', {}, [el('tr', {}, [
        el('th', { scope: 'col', text: 'Name' }), el('th', { scope: 'col', text: 'Value' }),
        el('th', { scope: 'col', text: 'Encrypted' }),
        el('th', { scope: 'col' }, [el('span', { class: 'visually-hidden', text: 'Delete' })]),
      ])]),
      el('tbody', { id: 'config-body' }),
    ])]),
    el('div', { class: 'dialog-actions' }, [
      el('button', { type: 'submit', id: 'config-save', class: 'button primary', text: 'Save & Close' }),
      el('button', { type: 'button', id: 'config-cancel', class: 'button', text: 'Cancel' }),
    ]),
  ]);
  const d = el('dialog', { id: 'config-dialog', class: 'dialog wide', 'aria-labelledby': 'config-title', 'aria-describedby': 'config-help' }, [form]);
  document.body.append(d);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    save();
  });
  $('config-cancel').addEventListener('click', () => d.close());
  editableRows({
    body: 'config-body', add: 'config-add', update: updateEmpty, newRow: () => entryRow(null),
    name: '.entry-name', remove: 'button.entry-delete',
  });
  for (const id of ['config-name', 'config-friendly', 'config-description']) {
    $(id).addEventListener('input', () => clearFieldError(id));
  }
  // Closing without saving (Cancel, Escape) drops the edits, values included.
  d.addEventListener('close', () => {
    editSeq++;
    editing = null;
    $('config-body').replaceChildren();
    form.reset();
  });
  return d;
}

function clearFieldError(id) {
  $(`${id}-error`).textContent = '';
  $(id).removeAttribute('aria-invalid');
}

function fieldError(id, message) {
  const note = $(`${id}-error`);
  note.textContent = [note.textContent, message].filter(Boolean).join('; ');
  $(id).setAttribute('aria-invalid', 'true');
}

function updateEmpty() {
  const n = $('config-body').rows.length;
  $('config-entries').hidden = n === 0;
  $('config-empty').hidden = n > 0;
}

// One editable entry. `orig` is the entry as stored (null for a new row);
// a stored encrypted one is locked and its value input starts empty.
function entryRow(orig) {
  const id = `centry-${++rowSeq}`;
  const locked = orig?.encrypted === true;
  const encrypted = locked;
  const described = `${id}-error`;
  const name = el('input', {
    type: 'text', id: `${id}-name`, class: 'entry-name', autocomplete: 'off', spellcheck: 'false',
    'aria-label': 'Entry name', 'aria-describedby': described,
  });
  name.value = orig?.name ?? '';
  const value = el('input', {
    type: encrypted ? 'password' : 'text', id: `${id}-value`, class: 'entry-value', autocomplete: 'off',
    spellcheck: 'false', 'aria-label': 'Value', 'aria-describedby': described, placeholder: locked ? 'unchanged' : null,
  });
  // Set as a property, never an attribute; an encrypted value is never here at all.
  const text = locked ? '' : valueText(orig?.value);
  value.value = text;
  const box = el('input', {
    type: 'checkbox', id: `${id}-encrypted`, class: 'entry-encrypted', checked: encrypted, disabled: locked,
    'aria-describedby': described, title: locked ? 'An encrypted entry cannot be made plain' : null,
  });
  box.addEventListener('change', () => {
    value.type = box.checked ? 'password' : 'text';
  });
  const valueCell = el('td', { class: 'param-value-cell' }, [value]);
  if (locked) valueCell.prepend(el('span', { class: 'masked-value', title: 'The stored value is never shown', text: MASKED_TEXT }));
  const remove = el('button', {
    type: 'button', class: 'button small danger entry-delete', title: 'Delete this entry',
    'aria-label': `Delete ${orig?.name || 'the new entry'}`, text: '✕',
  });
  const row = el('tr', { class: 'entry-row', data: { locked: locked ? '1' : '' } }, [
    el('td', {}, [name, el('span', { id: described, class: 'param-error entry-error' })]),
    valueCell,
    el('td', { class: 'entry-encrypted-cell' }, [el('label', { class: 'checkbox-field' }, [box,
      el('span', { class: 'visually-hidden', text: 'Encrypted' })])]),
    el('td', { class: 'actions' }, [remove]),
  ]);
  const clear = () => {
    row.querySelector('.entry-error').textContent = '';
    for (const i of row.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  };
  name.addEventListener('input', () => {
    remove.setAttribute('aria-label', `Delete ${name.value.trim() || 'the new entry'}`);
    clear();
  });
  value.addEventListener('input', clear);
  box.addEventListener('change', clear);
  rowInfo.set(row, { orig, text });
  return row;
}

function entryOf(row) {
  const { orig, text } = rowInfo.get(row) ?? { orig: null, text: '' };
  const name = row.querySelector('.entry-name').value.trim();
  const encrypted = row.querySelector('.entry-encrypted').checked;
  const typed = row.querySelector('.entry-value').value;
  let value = typed;
  if (row.dataset.locked && typed === '') {
    value = null; // keep the sealed value
  } else if (!encrypted && orig && !orig.encrypted && typed === text) {
    value = orig.value ?? null; // unchanged: keeps its JSON type
  } else if (!encrypted && orig && orig.value != null && typeof orig.value !== 'string') {
    try {
      value = JSON.parse(typed);
    } catch {
      value = typed;
    }
  }
  // Other keys of a stored entry (a description, ...) are kept.
  return { ...(orig ?? {}), name, value, encrypted };
}

function openEditor(name) {
  dialog ??= buildDialog();
  const seq = ++editSeq;
  editing = { name, base: {} };
  showBanner('config-error', '');
  for (const id of ['config-name', 'config-friendly', 'config-description']) {
    clearFieldError(id);
    $(id).value = '';
  }
  $('config-body').replaceChildren();
  $('config-title').textContent = name ? `Edit configuration ${name}` : 'New configuration';
  const nameInput = $('config-name');
  nameInput.readOnly = !!name;
  nameInput.title = name ? 'To rename, create a new configuration and delete this one' : '';
  nameInput.value = name ?? '';
  updateEmpty();
  if (!name) {
    $('config-loading').hidden = true;
    $('config-save').disabled = false;
    openDialog(dialog, nameInput);
    return;
  }
  $('config-loading').hidden = false;
  $('config-save').disabled = true;
  openDialog(dialog, $('config-add'));
  api('GET', configPath(name)).then((doc) => {
    if (seq !== editSeq) return;
    const base = { ...(doc ?? {}) };
    for (const k of SERVER_KEYS) delete base[k];
    editing.base = base;
    $('config-friendly').value = typeof base.friendly_name === 'string' ? base.friendly_name : '';
    $('config-description').value = typeof base.description === 'string' ? base.description : '';
    const entries = Array.isArray(base.configuration_data) ? base.configuration_data : [];
    $('config-body').replaceChildren(...entries.filter((e) => e && typeof e === 'object').map(entryRow));
    updateEmpty();
    $('config-save').disabled = false;
  }, (err) => {
    if (seq !== editSeq || err.handled) return;
    showBanner('config-error', messageOf(err));
  }).finally(() => {
    if (seq === editSeq) $('config-loading').hidden = true;
  });
}

async function save() {
  if (!editing || $('config-save').disabled) return;
  const seq = editSeq;
  const isNew = editing.name == null;
  const rows = [...$('config-body').rows];
  showBanner('config-error', '');
  for (const id of ['config-name', 'config-friendly', 'config-description']) clearFieldError(id);
  for (const row of rows) {
    row.querySelector('.entry-error').textContent = '';
    for (const i of row.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  }

  // What can be told here is told next to its field; the server judges the rest.
  let first = null;
  const name = $('config-name').value.trim();
  const nameProblem = !name ? 'Enter a name for the configuration.'
    : name.length > MAX_NAME ? `A name has at most ${MAX_NAME} characters.`
      : !NAME_RE.test(name) ? 'Use only letters, digits, _ - and . (starting with a letter, digit or _).'
        : isNew && name === GLOBAL ? '“global” holds the Global Parameters; edit them under Integration Hub → Global Parameters.'
          : isNew && configs.some((c) => c.name === name) ? `A configuration named ${name} already exists; use its Edit button.`
            : '';
  if (nameProblem) {
    fieldError('config-name', nameProblem);
    first = $('config-name');
  }
  for (const row of rows) {
    const input = row.querySelector('.entry-name');
    if (!input.value.trim()) {
      row.querySelector('.entry-error').textContent = 'Enter a name, or delete this entry.';
      input.setAttribute('aria-invalid', 'true');
      first ??= input;
    }
  }
  if (first) {
    showBanner('config-error', 'Check the fields marked below.');
    first.focus();
    return;
  }

  const doc = { ...editing.base, name };
  for (const [key, id] of [['friendly_name', 'config-friendly'], ['description', 'config-description']]) {
    const v = $(id).value.trim();
    if (v) doc[key] = v;
    else delete doc[key];
  }
  doc.configuration_data = rows.map(entryOf);

  const button = $('config-save');
  button.setAttribute('aria-busy', 'true');
  try {
    await api('POST', '/api/v1/configurations', doc);
    if (seq !== editSeq) return;
    dialog.close();
    announce(`Configuration ${name} saved.`);
    loadList({ name, ctl: 'edit' });
  } catch (err) {
    if (err.handled || seq !== editSeq) return;
    showBanner('config-error', err.message);
    let focus = null;
    const extra = [];
    for (const d of err.details) {
      const field = d.field ?? '';
      const m = /^configuration_data\[(\d+)\]\.?(\w*)/.exec(field);
      const row = m && rows[Number(m[1])];
      const top = { name: 'config-name', friendly_name: 'config-friendly', description: 'config-description' }[field];
      if (top) {
        fieldError(top, d.message);
        focus ??= $(top);
      } else if (row) {
        const input = row.querySelector(m[2] === 'value' ? '.entry-value' : m[2] === 'encrypted' ? '.entry-encrypted' : '.entry-name');
        input.setAttribute('aria-invalid', 'true');
        const note = row.querySelector('.entry-error');
        note.textContent = [note.textContent, d.message].filter(Boolean).join('; ');
        focus ??= input.disabled ? row.querySelector('.entry-name') : input;
      } else {
        extra.push(field ? `${field}: ${d.message}` : d.message);
      }
    }
    if (extra.length) $('config-error').textContent += ` (${extra.join('; ')})`;
    (focus ?? button).focus();
  } finally {
    button.removeAttribute('aria-busy');
  }
}
