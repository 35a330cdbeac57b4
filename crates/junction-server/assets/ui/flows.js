// Flows (spec 001): integrator.io-style record flows. The list with Run
// buttons and an upload form (#/flows), and one flow's page (#/flows/NAME):
// its steps drawn as a pipeline (exports → imports and lookups, each box
// with its type, its hooks as badges and the counters of the run shown),
// the run history (a flow's runs are the application `.flow.NAME`), and
// the record errors per step with Retry, Resolve and the retry data editor.
//
// A run being followed is asked for once a second until it ends (every
// 10 s in a background tab, less often after errors). Connection secrets
// come back as ******** and stay so: a document saved with them keeps the
// sealed values. Everything is built with el() from data, never parsed as
// HTML; a page generation counter (`gen`) drops answers that arrive after
// the user moved on.

import {
  $, api, banners, confirmDialog, dateFormat, el, formatDuration, logLink, messageOf, openDialog, plural,
  renderPreservingFocus, showBanner, stateBadge, stopRunCell, timeEl, toDate, notLoaded
} from './core.js';

const POLL_MS = 1000;
const STATUS_CLEAR_MS = 15_000;
const RUNS_LIMIT = 20;
const ERRORS_LIMIT = 100;
const FINAL = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);
const RUN_PREFIX = '.flow.';
const OUTCOME = {
  completed: ['success', 'Completed'],
  completed_with_errors: ['warning', 'Completed with errors'],
  failed: ['failure', 'Failed'],
  canceled: ['warning', 'Canceled'],
};
const EXPORT_HOOKS = ['preSavePage'];
const IMPORT_HOOKS = ['preMap', 'postMap', 'postSubmit', 'postAggregate'];
const EXAMPLE = `{
  "name": "orders_sync",
  "settings": {},
  "pageGenerators": [
    {"name": "orders", "type": "wrapper", "stack": "shop", "function": "exportOrders", "pageSize": 20}
  ],
  "pageProcessors": [
    {"name": "push", "type": "wrapper", "stack": "shop", "function": "importOrders",
     "mapping": {"fields": [{"extract": "id", "generate": "orderId"}]}}
  ]
}`;

let gen = 0; // bumped on every show and leave
let cur = null; // the flow page: {name, flow, steps, run, ...}
let flows = [];
let notice = ''; // a status line for the next list (after a delete)
let pollTimer = 0;
let editDialog = null;
let retryDialog = null;
let retrySeq = 0;

const flowPath = (name) => `/api/v1/flows/${encodeURIComponent(name)}`;
const flowHref = (name) => `#/flows/${encodeURIComponent(name)}`;
const taskPath = (id) => `/api/v1/tasks/${encodeURIComponent(id)}`;
// A flow's runs are the runs of the application `.flow.NAME`.
const runsPath = (name) => `/api/v1/applications/${encodeURIComponent(RUN_PREFIX + name)}/runs?limit=${RUNS_LIMIT}`;
const fromSeconds = (s) => (typeof s === 'number' ? new Date(s * 1000).toISOString() : null);

const flowBanners = banners('flows-error', 'flows-status', STATUS_CLEAR_MS);
const announce = (message) => flowBanners.announce(message);
const showError = (err, source) => flowBanners.error(err, source);

export function leaveFlows() {
  gen++;
  cur = null;
  clearTimeout(pollTimer);
  pollTimer = 0;
  retrySeq++;
  flowBanners.clear();
  for (const d of [editDialog, retryDialog]) if (d?.open) d.close();
}

export function showFlows(name, focusHeading) {
  leaveFlows();
  if (name) showFlow(name, focusHeading);
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

function outcomeBadge(outcome) {
  if (!outcome) return el('span', { class: 'muted', text: '—' });
  const [cls, text] = OUTCOME[outcome] ?? ['other', outcome];
  return el('span', { class: `state state-${cls} flow-outcome`, data: { outcome }, text });
}

const section = (id, title, children, extra = []) => el('section', { class: 'app-section', 'aria-labelledby': id }, [
  el('div', { class: 'section-head' }, [el('h2', { id, text: title }), ...extra]), ...children,
]);

// The steps of a flow document, in order: [{name, role, type, detail, hooks}].
function stepsOf(doc) {
  const hookList = (hooks, names) => names.filter((h) => hooks && hooks[h]).map((h) => [h, hooks[h]]);
  const detail = (s) => (s.type === 'wrapper' || s.stack
    ? `${s.stack ?? '?'}.${s.function ?? '?'}`
    : s.connection ? `connection ${s.connection}` : '');
  const gens = Array.isArray(doc?.pageGenerators) ? doc.pageGenerators : [];
  const procs = Array.isArray(doc?.pageProcessors) ? doc.pageProcessors : [];
  return [
    ...gens.map((s) => ({ name: String(s.name ?? ''), role: 'export', type: s.type ?? '', detail: detail(s), hooks: hookList(s.hooks, EXPORT_HOOKS) })),
    ...procs.map((s) => {
      const hooks = s.lookup === true ? [] : hookList(s.hooks, IMPORT_HOOKS);
      if (s.postResponseMap) hooks.push(['postResponseMap', s.postResponseMap]);
      return { name: String(s.name ?? ''), role: s.lookup === true ? 'lookup' : 'import', type: s.type ?? '', detail: detail(s), hooks };
    }),
  ];
}

const hookText = (h) => (h && typeof h === 'object' ? `${h.stack ?? '?'}.${h.function ?? '?'}` : String(h));

// Why a run failed: its `error`, or else the failed task's result (where a
// flow run keeps it).
function runError(run) {
  if (run?.error) return run.error;
  if (run?.state !== 'FAILURE') return '';
  const failed = (Array.isArray(run.steps) ? run.steps : []).find((t) => t.state === 'FAILURE');
  return failed?.result || failed?.traceback || '';
}

// A retry run carries its records in `app_vars.retry`.
const retryCount = (run) => (Array.isArray(run?.app_vars?.retry) ? run.app_vars.retry.length : null);

// ---------------------------------------------------------------- the list

function showList(focusHeading) {
  const g = gen;
  const view = $('flows-view');
  const heading = el('h1', { id: 'flows-heading', tabindex: '-1', text: 'Flows' });
  const refresh = refreshButton('flows-refresh', 'Refresh the list of flows');
  const body = el('tbody', { id: 'flows-body' });
  const table = el('table', { id: 'flows-table', class: 'grid flows-list', 'aria-labelledby': 'flows-heading', hidden: true }, [
    headRow(['Flow', 'Steps', 'Revision', 'Updated', '-Actions']), body,
  ]);
  const empty = el('div', { id: 'flows-empty', class: 'empty', hidden: true }, [
    el('p', { text: 'No flows yet. A flow reads pages of records from its exports and hands them to its imports and lookups; its hooks are functions of a stack.' }),
    el('p', { class: 'editor-only', data: { needs: 'edit' }, text: 'Paste a flow document into the form below to create one.' }),
  ]);
  view.setAttribute('aria-labelledby', 'flows-heading');
  view.replaceChildren(
    el('div', { class: 'toolbar' }, [heading, el('div', { class: 'toolbar-actions' }, [refresh])]),
    el('p', { class: 'muted page-help' }, ['Record flows: exports produce pages of records, page processors import them or look things up; ',
      'hooks and wrappers are functions of a ', el('a', { href: '#/stacks', text: 'stack' }), '.']),
    el('p', { id: 'flows-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'flows-status', class: 'banner info', role: 'status', hidden: true }),
    el('p', { id: 'flows-loading', class: 'muted', text: 'Loading…' }),
    el('div', { class: 'table-wrap' }, [table]),
    empty,
    documentForm('flow-upload', 'Upload a flow', EXAMPLE),
  );
  if (notice) {
    announce(notice);
    notice = '';
  }
  if (focusHeading) heading.focus();
  refresh.addEventListener('click', () => loadList());
  body.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-ctl="run"]');
    const name = button?.closest('tr[data-flow]')?.dataset.flow;
    if (name) runFromList(name, button);
  });
  loadList(g);
}

async function loadList(g = gen) {
  const table = $('flows-table');
  if (!table) return;
  table.setAttribute('aria-busy', 'true');
  try {
    const list = await api('GET', '/api/v1/flows');
    if (g !== gen) return;
    flows = (Array.isArray(list) ? list : []).sort((a, b) => a.name.localeCompare(b.name));
    renderPreservingFocus($('flows-body'), flows.map(flowRow), $('flows-refresh'));
    table.hidden = flows.length === 0;
    $('flows-empty').hidden = flows.length > 0;
    if ($('flows-error').dataset.source === 'list') showBanner('flows-error', '');
  } catch (err) {
    if (g === gen) showError(err, 'list');
  } finally {
    if (g === gen) {
      $('flows-loading').hidden = true;
      table.removeAttribute('aria-busy');
    }
  }
}

function flowRow(f) {
  const steps = stepsOf(f.document);
  const exports = steps.filter((s) => s.role === 'export').length;
  return el('tr', { data: { flow: f.name, key: f.name } }, [
    el('th', { scope: 'row', class: 'flow-name' }, [el('a', { href: flowHref(f.name), data: { ctl: 'open' }, text: f.name })]),
    el('td', { class: 'flow-steps', text: `${plural(exports, 'export')} → ${plural(steps.length - exports, 'processor')}` }),
    el('td', { class: 'flow-revision num', text: `r${f.revision}` }),
    el('td', { class: 'flow-updated' }, [timeEl(f.updated_at)]),
    el('td', { class: 'actions' }, [el('button', {
      type: 'button', class: 'button small primary flow-run', data: { ctl: 'run', needs: 'operate' },
      'aria-label': `Run ${f.name}`, text: 'Run',
    })]),
  ]);
}

// Run from the list: the flow's page then follows the run live.
async function runFromList(name, button) {
  const g = gen;
  if (button.getAttribute('aria-busy') === 'true') return;
  button.setAttribute('aria-busy', 'true');
  try {
    const run = await api('POST', `${flowPath(name)}/run`);
    if (g !== gen) return;
    notice = `Run ${run.id} of ${name} started.`;
    location.hash = flowHref(name);
  } catch (err) {
    if (g === gen) showError(err);
  } finally {
    button.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------- document form (upload, edit)

// A JSON document form: `p` prefixes its element ids. A 400's violations
// are listed under it, each with its field and rule.
function documentForm(p, title, text, inDialog = false) {
  const form = el('form', {
    id: `${p}-form`, class: inDialog ? 'dialog-body form flow-doc-form' : 'card form flow-doc-form', method: 'post', noValidate: true,
    'aria-labelledby': `${p}-title`, data: inDialog ? {} : { needs: 'edit' },
  }, [
    el('h2', { id: `${p}-title`, text: title }),
    el('p', { class: 'muted field-note upload-help' }, ['A flow document as JSON: ', el('code', { text: 'name' }), ', ',
      el('code', { text: 'pageGenerators' }), ' (exports) and ', el('code', { text: 'pageProcessors' }), ' (imports; ',
      el('code', { text: '"lookup": true' }), ' for a lookup), with ', el('code', { text: 'settings' }), ' and ',
      el('code', { text: 'connections' }), '. Uploading an existing name stores its next revision; an encrypted connection value left as ',
      el('code', { text: '********' }), ' keeps the sealed one.']),
    el('div', { class: 'field' }, [
      el('label', { for: `${p}-text`, text: 'Document (JSON)' }),
      el('textarea', { id: `${p}-text`, class: 'json-input', rows: '14', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': `${p}-error` }),
    ]),
    el('div', { id: `${p}-error`, class: 'banner error', role: 'alert', hidden: true }, [
      el('p', { id: `${p}-message`, class: 'upload-message' }),
      el('ul', { id: `${p}-details`, class: 'upload-details' }),
    ]),
    el('div', { class: inDialog ? 'dialog-actions' : 'form-actions' }, [
      el('button', { type: 'submit', id: `${p}-submit`, class: 'button primary', text: inDialog ? 'Save' : 'Upload' }),
      ...(inDialog ? [el('button', { type: 'button', id: `${p}-cancel`, class: 'button', text: 'Cancel' })] : []),
    ]),
  ]);
  form.querySelector('textarea').value = text;
  form.querySelector('textarea').addEventListener('input', () => {
    form.querySelector('textarea').removeAttribute('aria-invalid');
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    saveDocument(p);
  });
  return form;
}

function documentError(p, message, details = []) {
  $(`${p}-message`).textContent = message;
  $(`${p}-details`).replaceChildren(...details.map((d) => el('li', { data: { field: d.field ?? '' } }, [
    d.field ? el('code', { class: 'detail-field', text: d.field }) : '',
    d.rule ? el('span', { class: 'detail-rule', text: ` (${d.rule})` }) : '',
    d.field || d.rule ? ': ' : '',
    el('span', { class: 'detail-message', text: d.message ?? '' }),
  ])));
  $(`${p}-error`).hidden = !message;
}

async function saveDocument(p) {
  const g = gen;
  const submit = $(`${p}-submit`);
  const input = $(`${p}-text`);
  if (submit.getAttribute('aria-busy') === 'true') return;
  documentError(p, '');
  input.removeAttribute('aria-invalid');
  let doc;
  try {
    doc = JSON.parse(input.value);
  } catch (e) {
    documentError(p, `The document is not valid JSON: ${e.message}`);
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  submit.setAttribute('aria-busy', 'true');
  try {
    const saved = await api('POST', '/api/v1/flows', doc);
    if (g !== gen) return;
    const message = `Flow ${saved.name}: revision ${saved.revision} stored.`;
    if (p === 'flow-edit') {
      editDialog.close();
      if (saved.name === cur?.name) {
        announce(message);
        reloadFlow();
      } else {
        notice = message;
        location.hash = flowHref(saved.name);
      }
    } else {
      notice = message;
      location.hash = flowHref(saved.name);
    }
  } catch (err) {
    if (g !== gen || err.handled) return;
    documentError(p, err.message, err.details);
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  } finally {
    submit.removeAttribute('aria-busy');
  }
}

function openEdit() {
  const c = cur;
  if (!c) return;
  if (!editDialog) {
    editDialog = el('dialog', { id: 'flow-edit-dialog', class: 'dialog wide', 'aria-labelledby': 'flow-edit-title' });
    document.body.append(editDialog);
  }
  // Built afresh each time: the text is the stored revision's.
  editDialog.replaceChildren(documentForm('flow-edit', `Edit ${c.name} (revision ${c.flow.revision})`, JSON.stringify(c.flow.document, null, 2), true));
  $('flow-edit-cancel').addEventListener('click', () => editDialog.close());
  openDialog(editDialog, $('flow-edit-text'));
}

// ---------------------------------------------------------------- one flow

function showFlow(name, focusHeading) {
  const g = gen;
  const view = $('flows-view');
  const heading = el('h1', { id: 'flow-heading', tabindex: '-1', text: name });
  view.setAttribute('aria-labelledby', 'flow-heading');
  view.replaceChildren(
    el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, [el('a', { class: 'back-link', href: '#/flows', text: '← Flows' })]),
    el('div', { class: 'toolbar' }, [heading]),
    el('p', { id: 'flows-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'flows-status', class: 'banner info', role: 'status', hidden: true }),
    el('p', { id: 'flow-loading', class: 'muted', text: 'Loading…' }),
  );
  if (focusHeading) heading.focus();
  const shown = notice;
  notice = '';
  api('GET', flowPath(name)).then((flow) => {
    if (g !== gen) return;
    renderFlow(flow, heading);
    if (shown) announce(shown);
  }, (err) => {
    if (g !== gen || err.handled) return;
    $('flow-loading').remove();
    notLoaded(view, heading, err, {
      what: 'Flow', name, gone: 'deleted', listHref: '#/flows', listName: 'flows',
      report: (e) => showError(e, 'load'), retry: () => showFlows(name, false),
    });
  });
}

function renderFlow(flow, heading) {
  const name = flow.name;
  const view = $('flows-view');
  const hadFocus = document.activeElement === heading;
  const steps = stepsOf(flow.document);

  const refresh = refreshButton('flow-refresh', `Refresh ${name}`);
  const run = el('button', { type: 'button', id: 'flow-run', class: 'button primary', data: { needs: 'operate' }, text: 'Run' });
  const stop = el('button', { type: 'button', id: 'flow-stop', class: 'button danger', data: { needs: 'operate' }, hidden: true }, [
    el('span', { class: 'icon-stop', 'aria-hidden': 'true' }), 'Stop',
  ]);
  const edit = el('button', { type: 'button', id: 'flow-edit', class: 'button', data: { needs: 'edit' }, 'aria-haspopup': 'dialog', text: 'Edit document' });
  const remove = el('button', { type: 'button', id: 'flow-delete', class: 'button danger', data: { needs: 'edit' }, text: 'Delete' });

  // The pipeline: the exports in one column, then each processor in turn.
  const box = (s) => el('li', { class: `flow-step flow-${s.role}`, data: { step: s.name } }, [
    el('div', { class: 'flow-step-head' }, [
      el('span', { class: 'flow-step-name', text: s.name }),
      el('span', { class: 'flow-step-kind', text: `${s.role} · ${s.type || '?'}` }),
    ]),
    s.detail ? el('code', { class: 'flow-step-detail', text: s.detail }) : '',
    s.hooks.length ? el('ul', { class: 'hook-badges', 'aria-label': `Hooks of ${s.name}` }, s.hooks.map(([hook, ref]) => el('li', {
      class: 'hook-badge', data: { hook }, title: hookText(ref), text: hook,
    }))) : '',
    el('dl', { class: 'flow-counts', 'aria-label': `Counters of ${s.name}` }, [
      ['success', 'Success'], ['error', 'Errors'], ['ignore', 'Ignored'], ['pages', 'Pages'],
    ].map(([key, label]) => el('div', { class: `count count-${key}` }, [
      el('dt', { text: label }), el('dd', { class: `count-${key}-value`, text: '—' }),
    ]))),
  ]);
  const exportsCol = el('ol', { class: 'flow-stage flow-exports', 'aria-label': 'Exports' }, steps.filter((s) => s.role === 'export').map(box));
  const stages = [exportsCol];
  for (const s of steps.filter((x) => x.role !== 'export')) {
    stages.push(el('span', { class: 'flow-arrow', 'aria-hidden': 'true', text: '→' }));
    stages.push(el('ol', { class: 'flow-stage' }, [box(s)]));
  }
  const caption = el('p', { id: 'flow-caption', class: 'dag-caption', role: 'status' });
  const pipeline = el('div', { id: 'flow-pipeline', class: 'flow-pipeline', role: 'group', 'aria-label': `Steps of ${name}` }, stages);

  const runsRefresh = refreshButton('flow-runs-refresh', 'Refresh the run history');
  const runsBody = el('tbody', { id: 'flow-runs-body' });
  const runsTable = el('table', { id: 'flow-runs', class: 'grid flow-runs', 'aria-labelledby': 'flow-runs-heading', hidden: true }, [
    headRow(['Start', 'Duration', 'Trigger', 'State', 'Outcome', 'Counters', 'Log', '-Stop']), runsBody,
  ]);

  const errorsRefresh = refreshButton('flow-errors-refresh', 'Refresh the errors');
  const stepSelect = el('select', { id: 'flow-errors-step' }, [
    el('option', { value: '', text: 'All steps' }), ...steps.map((s) => el('option', { value: s.name, text: s.name })),
  ]);
  const errorsBody = el('tbody', { id: 'flow-errors-body' });
  const selectAll = el('input', { type: 'checkbox', id: 'flow-errors-all', 'aria-label': 'Select every error with retry data' });
  const errorsTable = el('table', { id: 'flow-errors', class: 'grid flow-errors', 'aria-labelledby': 'flow-errors-heading', hidden: true }, [
    el('thead', {}, [el('tr', {}, [
      el('th', { scope: 'col', class: 'select-cell' }, [selectAll]),
      ...['Time', 'Step', 'Code', 'Message', 'Source'].map((text) => el('th', { scope: 'col', text })),
      el('th', { scope: 'col' }, [el('span', { class: 'visually-hidden', text: 'Retry data' })]),
    ])]),
    errorsBody,
  ]);
  const action = (id, text, cls = 'button') => el('button', { type: 'button', id, class: cls, data: { needs: 'edit' }, text });
  const retrySelected = action('flow-retry-selected', 'Retry selected', 'button primary');
  const retryAll = action('flow-retry-all', 'Retry all');
  const resolveSelected = action('flow-resolve-selected', 'Resolve selected');
  const resolveAll = action('flow-resolve-all', 'Resolve all');

  view.replaceChildren(
    el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, [el('a', { class: 'back-link', href: '#/flows', text: '← Flows' })]),
    el('div', { class: 'toolbar' }, [heading, el('div', { class: 'toolbar-actions' }, [refresh, run, stop, edit, remove])]),
    el('p', { id: 'flows-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'flows-status', class: 'banner info', role: 'status', hidden: true }),
    el('dl', { id: 'flow-meta', class: 'app-meta flow-meta' }),
    section('flow-steps-heading', 'Steps', [caption, el('div', { class: 'flow-pipeline-scroll' }, [pipeline])]),
    section('flow-runs-heading', 'Run history', [
      el('p', { id: 'flow-runs-error', class: 'banner error', role: 'alert', hidden: true }),
      el('p', { id: 'flow-runs-loading', class: 'muted', text: 'Loading…' }),
      el('div', { class: 'table-wrap' }, [runsTable]),
      el('p', { id: 'flow-runs-empty', class: 'empty', hidden: true, text: 'No runs yet. Use Run to start one; its counters then show in the steps above.' }),
    ], [runsRefresh]),
    section('flow-errors-heading', 'Errors', [
      el('div', { class: 'flow-errors-bar' }, [
        el('label', { for: 'flow-errors-step', text: 'Step' }), stepSelect,
        el('span', { id: 'flow-errors-count', class: 'muted', role: 'status' }),
        el('span', { class: 'flow-errors-actions' }, [retrySelected, retryAll, resolveSelected, resolveAll]),
      ]),
      el('p', { id: 'flow-errors-error', class: 'banner error', role: 'alert', hidden: true }),
      el('p', { id: 'flow-errors-loading', class: 'muted', text: 'Loading…' }),
      el('div', { class: 'table-wrap' }, [errorsTable]),
      el('p', { id: 'flow-errors-empty', class: 'empty', hidden: true, text: 'No open errors.' }),
    ], [errorsRefresh]),
    section('flow-document-heading', 'Document', [
      el('details', { class: 'flow-document' }, [
        el('summary', { text: `Revision ${flow.revision}` }),
        el('pre', { id: 'flow-document', class: 'call-log', tabindex: '0', text: JSON.stringify(flow.document, null, 2) }),
      ]),
    ]),
  );
  if (hadFocus) heading.focus();

  cur = {
    name, flow, steps, run: null, watchGen: 0, pollErrors: 0, runsSeq: 0, errorsSeq: 0,
    errors: [], selected: new Set(), starting: false, busy: false,
  };
  renderMeta(flow);
  paint(null);
  refresh.addEventListener('click', () => reloadFlow());
  run.addEventListener('click', () => startRun());
  stop.addEventListener('click', () => cur?.run && stopRun(cur.run.id));
  edit.addEventListener('click', () => openEdit());
  remove.addEventListener('click', () => deleteFlow(name));
  runsRefresh.addEventListener('click', () => loadRuns());
  runsBody.addEventListener('click', (event) => {
    const row = event.target.closest('tr[data-run]');
    if (!row) return;
    if (event.target.closest('button[data-ctl="stop-run"]')) stopRun(row.dataset.run);
    else if (event.target.closest('button[data-ctl="show"]')) showRun(row.dataset.run);
  });
  errorsRefresh.addEventListener('click', () => loadErrors());
  stepSelect.addEventListener('change', () => {
    cur.selected.clear();
    loadErrors();
  });
  selectAll.addEventListener('change', () => {
    for (const e of cur.errors) if (e.retryDataKey) (selectAll.checked ? cur.selected.add(e.retryDataKey) : cur.selected.delete(e.retryDataKey));
    for (const box of errorsBody.querySelectorAll('input.error-select:not(:disabled)')) box.checked = selectAll.checked;
    updateSelection();
  });
  errorsBody.addEventListener('change', (event) => {
    const box = event.target.closest('input.error-select');
    if (!box) return;
    const key = box.dataset.retryKey;
    if (box.checked) cur.selected.add(key);
    else cur.selected.delete(key);
    // The same record's other errors share the key: tick them alike.
    for (const other of errorsBody.querySelectorAll('input.error-select')) if (other.dataset.retryKey === key) other.checked = box.checked;
    updateSelection();
  });
  errorsBody.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-ctl="retry-data"]');
    if (button) openRetryData(button.dataset.retryKey);
  });
  retrySelected.addEventListener('click', () => retry({ retryDataKeys: [...cur.selected] }));
  retryAll.addEventListener('click', () => retry(allOf()));
  resolveSelected.addEventListener('click', () => resolve({ retryDataKeys: [...cur.selected] }));
  resolveAll.addEventListener('click', () => resolve(allOf(), true));
  loadRuns(true);
  loadErrors();
}

// `{all: true}`, for the step chosen above the errors.
function allOf() {
  const step = $('flow-errors-step')?.value;
  return step ? { all: true, step } : { all: true };
}

function renderMeta(flow) {
  const meta = $('flow-meta');
  if (!meta) return;
  const item = (term, value, id) => el('div', {}, [el('dt', { text: term }), el('dd', { id }, [value])]);
  const offline = Object.entries(flow.offline_connections ?? {});
  const last = Object.entries(flow.last_export ?? {});
  meta.replaceChildren(
    item('Revision', document.createTextNode(`r${flow.revision}`), 'flow-revision'),
    item('Updated', timeEl(flow.updated_at)),
    item('Created', timeEl(flow.created_at)),
    item('Offline connections', offline.length
      ? el('ul', { class: 'kv' }, offline.map(([c, o]) => el('li', { class: 'offline-connection', data: { connection: c } }, [
        el('span', { class: 'state state-failure', text: c }), ' since ', timeEl(o?.since), o?.reason ? ` — ${o.reason}` : '',
      ])))
      : el('span', { class: 'muted', text: 'none' }), 'flow-offline'),
    item('Last exports', last.length
      ? el('ul', { class: 'kv' }, last.map(([e, at]) => el('li', { data: { export: e } }, [el('code', { text: e }), ' ', timeEl(at)])))
      : el('span', { class: 'muted', text: 'none yet' }), 'flow-last-export'),
  );
}

// The meta and the document again (offline connections, delta times), and
// the history and the errors.
async function reloadFlow() {
  const c = cur;
  if (!c) return;
  try {
    const flow = await api('GET', flowPath(c.name));
    if (c !== cur) return;
    if (flow.revision !== c.flow.revision) {
      // Another revision: its steps may differ, so the page is drawn again.
      const status = $('flows-status');
      const kept = status && !status.hidden ? status.textContent : '';
      renderFlow(flow, $('flow-heading'));
      if (kept) announce(kept);
      return;
    }
    c.flow = flow;
    renderMeta(flow);
  } catch (err) {
    if (c === cur) showError(err, 'load');
  }
  loadRuns();
  loadErrors();
}

// ---------------------------------------------------------------- live counters

// Paints `run`'s counters into the step boxes (or dashes without a run).
function paint(run) {
  const c = cur;
  if (!c) return;
  const counters = run?.counters ?? {};
  const going = !!run && !FINAL.has(run.state);
  for (const node of document.querySelectorAll('#flow-pipeline .flow-step')) {
    const k = counters[node.dataset.step];
    const value = (key) => {
      if (!run) return '—';
      if (!k) return '0';
      const n = key === 'pages' ? (k.pagesGenerated ?? k.pagesProcessed) : k[key];
      return String(n ?? 0);
    };
    for (const key of ['success', 'error', 'ignore', 'pages']) node.querySelector(`.count-${key}-value`).textContent = value(key);
    node.classList.toggle('step-running', going);
    node.classList.toggle('has-errors', !!k && k.error > 0);
  }
  const caption = $('flow-caption');
  if (run) {
    const retried = retryCount(run);
    caption.replaceChildren(
      retried == null ? 'Counters of run ' : `Counters of the retry of ${plural(retried, 'record')}, run `,
      el('code', { text: run.id }), ' ', stateBadge(run.state), ' ', run.outcome ? outcomeBadge(run.outcome) : '',
      run.start_time != null ? ' started ' : ' queued ', timeEl(fromSeconds(run.start_time) ?? run.created_at),
      going ? el('span', { class: 'live muted', text: ' · updating live' }) : '',
      runError(run) ? el('span', { class: 'flow-run-error', text: ` — ${runError(run)}` }) : '',
    );
  } else {
    caption.replaceChildren(el('span', { class: 'muted', text: 'No runs yet: use Run to start one; each step’s box then counts its records.' }));
  }
  const stop = $('flow-stop');
  if (!going && document.activeElement === stop) $('flow-run').focus();
  stop.hidden = !going;
  if (going) stop.setAttribute('aria-label', `Stop run ${run.id}`);
}

// Shows `run` and follows it once a second until it ends. Every watch()
// starts a new generation: an older poll's answer is dropped.
function watch(run) {
  const c = cur;
  if (!c) return;
  clearTimeout(pollTimer);
  pollTimer = 0;
  c.run = run;
  c.watchGen += 1;
  c.pollErrors = 0;
  paint(run);
  const g = c.watchGen;
  if (!FINAL.has(run.state)) pollTimer = setTimeout(() => poll(c, run.id, g), POLL_MS);
}

async function poll(c, id, g) {
  pollTimer = 0;
  const stale = () => c !== cur || c.run?.id !== id || c.watchGen !== g;
  if (stale()) return;
  try {
    const run = await api('GET', taskPath(id));
    if (stale()) return;
    c.pollErrors = 0;
    const changed = c.run.state !== run.state;
    c.run = run;
    paint(run);
    if (changed) updateRunRow(run);
    if ($('flows-error')?.dataset.source === 'poll') showBanner('flows-error', '');
    if (FINAL.has(run.state)) {
      const what = run.outcome ? (OUTCOME[run.outcome]?.[1] ?? run.outcome).toLowerCase() : run.state;
      if (run.state === 'FAILURE') {
        showBanner('flows-status', '');
        showBanner('flows-error', `Run ${id} failed${runError(run) ? `: ${runError(run)}` : '.'}`, 'run');
      } else announce(`Run ${id} ended: ${what}.`);
      reloadFlow();
      return;
    }
  } catch (err) {
    if (stale()) return;
    showError(err, 'poll');
    if (err.status === 404 || err.handled) return;
    c.pollErrors += 1;
  }
  const delay = Math.min(POLL_MS * 2 ** c.pollErrors * (document.hidden ? 10 : 1), 30_000);
  if (!stale()) pollTimer = setTimeout(() => poll(c, id, g), delay);
}

// ---------------------------------------------------------------- run, stop

async function startRun() {
  const c = cur;
  if (!c || c.starting) return;
  c.starting = true;
  try {
    const run = await api('POST', `${flowPath(c.name)}/run`);
    if (c !== cur) return;
    announce(`Run ${run.id} started.`);
    watch(run);
    loadRuns();
  } catch (err) {
    if (c === cur) showError(err);
  } finally {
    c.starting = false;
  }
}

async function stopRun(id) {
  const c = cur;
  if (!c || c.busy) return;
  c.busy = true;
  try {
    const run = await api('POST', `${taskPath(id)}/revoke`);
    if (c !== cur) return;
    announce(`Run ${id} stopped.`);
    if (c.run?.id === id && run?.id) watch(run);
  } catch (err) {
    if (c === cur) showError(err);
  } finally {
    c.busy = false;
  }
  if (c === cur) loadRuns();
}

async function showRun(id) {
  const c = cur;
  if (!c) return;
  try {
    const run = await api('GET', taskPath(id));
    if (c !== cur) return;
    watch(run);
    $('flow-caption').scrollIntoView({ block: 'nearest' });
  } catch (err) {
    if (c === cur) showError(err);
  }
}

// ---------------------------------------------------------------- run history

// `follow`: on opening the page, a run still going is followed live.
async function loadRuns(follow = false) {
  const c = cur;
  if (!c) return;
  const seq = ++c.runsSeq;
  const table = $('flow-runs');
  table.setAttribute('aria-busy', 'true');
  try {
    const answer = await api('GET', runsPath(c.name));
    if (c !== cur || seq !== c.runsSeq) return;
    // The route names the application; the check keeps other runs out anyway.
    const runs = (Array.isArray(answer) ? answer : []).filter((r) => r.app_name === RUN_PREFIX + c.name);
    renderPreservingFocus($('flow-runs-body'), runs.map(runRow), $('flow-runs-refresh'));
    table.hidden = runs.length === 0;
    $('flow-runs-empty').hidden = runs.length > 0;
    showBanner('flow-runs-error', '');
    const newest = runs[0];
    if (newest && (!c.run || (follow && !FINAL.has(newest.state)) || (FINAL.has(c.run.state) && newest.id !== c.run.id && !FINAL.has(newest.state)))) watch(newest);
  } catch (err) {
    if (c === cur && seq === c.runsSeq && !err.handled) showBanner('flow-runs-error', messageOf(err));
  } finally {
    if (c === cur && seq === c.runsSeq) {
      $('flow-runs-loading').hidden = true;
      table.removeAttribute('aria-busy');
    }
  }
}

function updateRunRow(run) {
  const row = [...$('flow-runs-body').rows].find((r) => r.dataset.run === run.id);
  if (!row) return;
  const active = row.contains(document.activeElement) ? document.activeElement.dataset.ctl : null;
  const fresh = runRow(run);
  row.replaceWith(fresh);
  if (active) (fresh.querySelector(`[data-ctl="${active}"]`) ?? fresh.querySelector('a')).focus();
}

function totals(run) {
  let success = 0;
  let error = 0;
  let ignore = 0;
  const processors = new Set((cur?.steps ?? []).filter((s) => s.role !== 'export').map((s) => s.name));
  for (const [step, k] of Object.entries(run.counters ?? {})) {
    error += k?.error ?? 0;
    if (processors.has(step)) {
      success += k?.success ?? 0;
      ignore += k?.ignore ?? 0;
    }
  }
  return { success, error, ignore };
}

function runRow(run) {
  const startIso = fromSeconds(run.start_time) ?? run.created_at;
  const start = toDate(startIso);
  const when = start ? dateFormat.format(start) : run.id;
  const duration = run.start_time != null && run.end_time != null ? (run.end_time - run.start_time) * 1000 : null;
  const who = Array.isArray(run.triggered_by) ? run.triggered_by.map((t) => t.triggered_by).filter(Boolean).join(', ') : '';
  const retried = retryCount(run);
  const t = totals(run);
  return el('tr', { data: { run: run.id }, class: FINAL.has(run.state) ? null : 'is-running' }, [
    el('td', { class: 'run-start' }, [timeEl(startIso)]),
    el('td', { class: 'run-duration', text: FINAL.has(run.state) ? formatDuration(duration) : '—' }),
    el('td', { class: 'run-trigger' }, [retried == null ? (who || '—') : `Retry of ${plural(retried, 'record')}${who ? ` by ${who}` : ''}`]),
    el('td', { class: 'run-state' }, [stateBadge(run.state)]),
    el('td', { class: 'run-outcome' }, [outcomeBadge(run.outcome)]),
    el('td', { class: 'run-counters' }, [
      el('span', { class: 'run-totals', text: `${t.success} ok · ${plural(t.error, 'error')} · ${t.ignore} ignored` }), ' ',
      el('button', { type: 'button', class: 'link-button run-show', data: { ctl: 'show' }, 'aria-label': `Show the counters of the run started ${when} in the steps`, text: 'Show' }),
    ]),
    el('td', {}, [logLink(`${taskPath(run.id)}/log`, when, 'run-log')]),
    stopRunCell(run, when),
  ]);
}

// ---------------------------------------------------------------- errors

async function loadErrors() {
  const c = cur;
  if (!c) return;
  const seq = ++c.errorsSeq;
  const table = $('flow-errors');
  const step = $('flow-errors-step').value;
  table.setAttribute('aria-busy', 'true');
  try {
    const q = new URLSearchParams({ limit: String(ERRORS_LIMIT) });
    if (step) q.set('step', step);
    const answer = await api('GET', `${flowPath(c.name)}/errors?${q}`);
    if (c !== cur || seq !== c.errorsSeq) return;
    c.errors = Array.isArray(answer) ? answer : [];
    // A selection survives a refresh for the errors still listed.
    const keys = new Set(c.errors.map((e) => e.retryDataKey).filter(Boolean));
    for (const k of [...c.selected]) if (!keys.has(k)) c.selected.delete(k);
    renderPreservingFocus($('flow-errors-body'), c.errors.map(errorRow), $('flow-errors-refresh'));
    table.hidden = c.errors.length === 0;
    $('flow-errors-empty').hidden = c.errors.length > 0;
    $('flow-errors-empty').textContent = step ? `No open errors at ${step}.` : 'No open errors.';
    $('flow-errors-count').textContent = c.errors.length
      ? `${plural(c.errors.length, 'open error')}${c.errors.length >= ERRORS_LIMIT ? ' (the newest shown)' : ''}`
      : '';
    showBanner('flow-errors-error', '');
    updateSelection();
  } catch (err) {
    if (c === cur && seq === c.errorsSeq && !err.handled) showBanner('flow-errors-error', messageOf(err));
  } finally {
    if (c === cur && seq === c.errorsSeq) {
      $('flow-errors-loading').hidden = true;
      table.removeAttribute('aria-busy');
    }
  }
}

function errorRow(e) {
  const d = toDate(e.occurredAt);
  const when = d ? dateFormat.format(d) : 'unknown time';
  const key = e.retryDataKey;
  const box = el('input', {
    type: 'checkbox', class: 'error-select', data: { ctl: 'select', retryKey: key ?? '' }, disabled: !key,
    checked: !!key && cur.selected.has(key),
    'aria-label': key ? `Select the error at ${e.step}, ${when}` : `The error at ${e.step}, ${when} has no retry data`,
  });
  return el('tr', { class: 'error-row', data: { key: String(e.id), error: String(e.id), step: e.step, retryKey: key ?? '' } }, [
    el('td', { class: 'select-cell' }, [box]),
    el('td', { class: 'error-time' }, [timeEl(e.occurredAt)]),
    el('td', { class: 'error-step' }, [el('code', { text: e.step })]),
    el('td', { class: 'error-code' }, [el('code', { text: e.code || '—' })]),
    el('td', { class: 'error-message', text: e.message || '—' }),
    el('td', { class: 'error-source', text: e.source || '—' }),
    el('td', { class: 'actions' }, [key
      ? el('button', {
        type: 'button', class: 'button small error-retry-data', data: { ctl: 'retry-data', retryKey: key }, 'aria-haspopup': 'dialog',
        'aria-label': `Edit the retry data of the error at ${e.step}, ${when}`, text: 'Edit retry data',
      })
      : el('span', { class: 'muted', title: 'This error has no record to retry', text: 'no retry data' })]),
  ]);
}

function updateSelection() {
  const c = cur;
  if (!c) return;
  const n = c.selected.size;
  const withKeys = new Set(c.errors.map((e) => e.retryDataKey).filter(Boolean));
  $('flow-retry-selected').disabled = n === 0;
  $('flow-resolve-selected').disabled = n === 0;
  $('flow-retry-selected').textContent = n ? `Retry selected (${n})` : 'Retry selected';
  $('flow-resolve-selected').textContent = n ? `Resolve selected (${n})` : 'Resolve selected';
  $('flow-retry-all').disabled = withKeys.size === 0;
  $('flow-resolve-all').disabled = c.errors.length === 0;
  const all = $('flow-errors-all');
  all.disabled = withKeys.size === 0;
  all.checked = withKeys.size > 0 && [...withKeys].every((k) => c.selected.has(k));
  all.indeterminate = !all.checked && n > 0;
}

async function retry(body) {
  const c = cur;
  if (!c || c.busy) return;
  c.busy = true;
  try {
    const run = await api('POST', `${flowPath(c.name)}/errors/retry`, body);
    if (c !== cur) return;
    const n = retryCount(run);
    announce(`Retrying ${n == null ? 'the errors' : plural(n, 'record')}: run ${run.id} started.`);
    c.selected.clear();
    watch(run);
    loadRuns();
    loadErrors();
  } catch (err) {
    if (c === cur) showError(err);
  } finally {
    c.busy = false;
  }
}

async function resolve(body, confirmFirst = false) {
  const c = cur;
  if (!c || c.busy) return;
  if (confirmFirst) {
    const which = body.step ? `every open error at ${body.step}` : 'every open error of this flow';
    if (!(await confirmDialog(`Resolve ${which}? Resolved errors are no longer listed and cannot be retried.`))) return;
    if (c !== cur) return;
  }
  c.busy = true;
  try {
    const answer = await api('POST', `${flowPath(c.name)}/errors/resolve`, body);
    if (c !== cur) return;
    announce(`Resolved ${plural(answer?.resolved ?? 0, 'error')}.`);
    c.selected.clear();
    loadErrors();
  } catch (err) {
    if (c === cur) showError(err);
  } finally {
    c.busy = false;
  }
}

// ---------------------------------------------------------------- retry data

function buildRetryDialog() {
  const form = el('form', { id: 'flow-retry-form', class: 'dialog-body form', method: 'dialog', noValidate: true }, [
    el('h2', { id: 'flow-retry-title', text: 'Retry data' }),
    el('p', { id: 'flow-retry-help', class: 'muted field-note' }, ['The record as it entered step ', el('code', { id: 'flow-retry-step' }),
      '. A retry starts from it; edit it to fix what made the record fail.']),
    el('p', { id: 'flow-retry-loading', class: 'muted', hidden: true, text: 'Loading…' }),
    el('div', { class: 'field' }, [
      el('label', { for: 'flow-retry-text', text: 'Record (JSON)' }),
      el('textarea', { id: 'flow-retry-text', class: 'json-input', rows: '12', spellcheck: 'false', autocomplete: 'off', 'aria-describedby': 'flow-retry-error' }),
    ]),
    el('div', { id: 'flow-retry-error', class: 'banner error', role: 'alert', hidden: true }, [
      el('p', { id: 'flow-retry-message', class: 'upload-message' }),
      el('ul', { id: 'flow-retry-details', class: 'upload-details' }),
    ]),
    el('div', { class: 'dialog-actions' }, [
      el('button', { type: 'submit', id: 'flow-retry-save', class: 'button primary', text: 'Save' }),
      el('button', { type: 'button', id: 'flow-retry-save-run', class: 'button', data: { needs: 'edit' }, text: 'Save & retry' }),
      el('button', { type: 'button', id: 'flow-retry-cancel', class: 'button', text: 'Cancel' }),
    ]),
  ]);
  const d = el('dialog', { id: 'flow-retry-dialog', class: 'dialog wide', 'aria-labelledby': 'flow-retry-title', 'aria-describedby': 'flow-retry-help' }, [form]);
  document.body.append(d);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    saveRetryData(false);
  });
  $('flow-retry-save-run').addEventListener('click', () => saveRetryData(true));
  $('flow-retry-cancel').addEventListener('click', () => d.close());
  $('flow-retry-text').addEventListener('input', () => $('flow-retry-text').removeAttribute('aria-invalid'));
  d.addEventListener('close', () => {
    retrySeq++;
    if (!d.open) $('flow-retry-text').value = '';
  });
  return d;
}

function retryError(message, details = []) {
  $('flow-retry-message').textContent = message;
  $('flow-retry-details').replaceChildren(...details.map((x) => el('li', {}, [
    x.field ? el('code', { class: 'detail-field', text: x.field }) : '', x.field ? ': ' : '', el('span', { text: x.message ?? '' }),
  ])));
  $('flow-retry-error').hidden = !message;
}

function openRetryData(key) {
  const c = cur;
  if (!c) return;
  retryDialog ??= buildRetryDialog();
  const seq = ++retrySeq;
  retryDialog.dataset.retryKey = key;
  $('flow-retry-title').textContent = `Retry data ${key}`;
  $('flow-retry-step').textContent = '…';
  $('flow-retry-text').value = '';
  $('flow-retry-text').disabled = true;
  retryError('');
  $('flow-retry-loading').hidden = false;
  openDialog(retryDialog, $('flow-retry-cancel'));
  api('GET', `${flowPath(c.name)}/errors/${encodeURIComponent(key)}`).then((record) => {
    if (seq !== retrySeq || c !== cur || !retryDialog.open) return;
    $('flow-retry-step').textContent = record.step;
    $('flow-retry-text').value = JSON.stringify(record.data, null, 2);
    $('flow-retry-text').disabled = false;
    $('flow-retry-text').focus();
  }, (err) => {
    if (seq === retrySeq && !err.handled) retryError(messageOf(err));
  }).finally(() => {
    if (seq === retrySeq) $('flow-retry-loading').hidden = true;
  });
}

async function saveRetryData(thenRetry) {
  const c = cur;
  if (!c || !retryDialog?.open) return;
  const seq = retrySeq;
  const key = retryDialog.dataset.retryKey;
  const input = $('flow-retry-text');
  const save = $('flow-retry-save');
  if (save.getAttribute('aria-busy') === 'true' || input.disabled) return;
  retryError('');
  let data;
  try {
    data = JSON.parse(input.value);
  } catch (e) {
    retryError(`The record is not valid JSON: ${e.message}`);
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  save.setAttribute('aria-busy', 'true');
  try {
    await api('PUT', `${flowPath(c.name)}/errors/${encodeURIComponent(key)}`, { data });
    if (seq !== retrySeq || c !== cur) return;
    retryDialog.close();
    if (thenRetry) await retry({ retryDataKeys: [key] });
    else announce(`Retry data ${key} saved; Retry sends it through the flow again.`);
  } catch (err) {
    if (seq !== retrySeq || err.handled) return;
    retryError(err.message, err.details);
    input.focus();
  } finally {
    save.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------- delete

async function deleteFlow(name) {
  const g = gen;
  if (!(await confirmDialog(`Delete flow ${name}? Its revisions, errors and retry data go with it; its runs stay in the history.`))) return;
  if (g !== gen) return;
  try {
    await api('DELETE', flowPath(name));
    if (g !== gen) return;
    notice = `Deleted flow ${name}.`;
    location.hash = '#/flows';
  } catch (err) {
    if (g === gen) showError(err);
  }
}
