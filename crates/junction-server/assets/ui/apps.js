// Applications (spec 004): the list, and one application's page with its
// step DAG, live step colours, Run / Debug Run / Custom Run, steps and runs.
//
// Everything is built with el() / createElementNS from data, never parsed
// as HTML. A page generation counter (`gen`) drops answers that arrive after
// the user moved on; leaveApplications() stops the live polling.

import {
  $, api, appPath, banners, logLink, stopRunCell, el, formatDuration, MASKED_TEXT, messageOf, openDialog, renderPreservingFocus, showBanner,
  stateBadge, stepFile, timeEl, toDate, valueText, notLoaded
} from './core.js';

const POLL_MS = 1000; // live step colours while a run is going
const STATUS_CLEAR_MS = 15_000;
const RUNS_LIMIT = 20;
const FINAL = new Set(['SUCCESS', 'FAILURE', 'REVOKED']);
const LOG_LEVELS = [[40, 'Error'], [30, 'Warning'], [20, 'Info'], [10, 'Debug']];
const LEVEL_NAME = Object.fromEntries(LOG_LEVELS);
const LEVEL_INFO = 20;
// A step box's look besides its colour: [class suffix, word, icon].
const STEP_LOOK = {
  STARTED: ['running', 'Running', '▶'],
  SUCCESS: ['success', 'Succeeded', '✓'],
  FAILURE: ['failure', 'Failed', '✕'],
  RETRY: ['warning', 'Retrying', '↻'],
  REVOKED: ['warning', 'Stopped', '■'],
  PENDING: ['queued', 'Queued', '…'],
  WAITING: ['queued', 'Queued', '…'],
};
const NO_RUN = ['idle', 'Not run yet', '○'];
// Keys of a step object that are not its parameters.
const STEP_OWN_KEYS = new Set(['name', 'file', 'output_to']);

const SVG_NS = 'http://www.w3.org/2000/svg';
// DAG geometry, in px.
const BOX_W = 184;
const BOX_H = 58;
const GAP_X = 64;
const GAP_Y = 22;
const PAD = 14;
const NAME_CHARS = 22;

let gen = 0; // bumped on every page change and on leave
let pollTimer = 0;
let cur = null; // the application page on show: {name, app, run, dom, ...}
let customDialog = null;

const appHref = (name) => `#/applications/${encodeURIComponent(name)}`;
const taskPath = (id) => `/api/v1/tasks/${encodeURIComponent(id)}`;
const fromSeconds = (s) => (typeof s === 'number' ? new Date(s * 1000).toISOString() : null);

export function leaveApplications() {
  gen++;
  clearTimeout(pollTimer);
  appBanners.clear();
  pollTimer = 0;
  cur = null;
  if (customDialog?.open) customDialog.close();
}

export function showApplications(name, focusHeading) {
  leaveApplications();
  if (name) showApp(name, focusHeading);
  else showList(focusHeading);
}

function svg(tag, attrs = {}, children = []) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value != null) node.setAttribute(key, String(value));
  }
  node.append(...children);
  return node;
}

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

// ---------------------------------------------------------------- the list

function showList(focusHeading) {
  const g = gen;
  const view = $('apps-view');
  const heading = el('h1', { id: 'apps-heading', tabindex: '-1', text: 'Applications' });
  const refresh = refreshButton('apps-refresh', 'Refresh the list of applications');
  const error = el('p', { id: 'apps-error', class: 'banner error', role: 'alert', hidden: true });
  const loading = el('p', { id: 'apps-loading', class: 'muted', text: 'Loading…' });
  const body = el('tbody', { id: 'apps-body' });
  const table = el('table', { id: 'apps-table', class: 'grid apps-list', 'aria-labelledby': 'apps-heading', hidden: true }, [
    headRow(['Application', 'Description', 'Steps', 'Configuration', 'Updated']), body,
  ]);
  const empty = el('div', { id: 'apps-empty', class: 'empty', hidden: true }, [
    el('p', { text: 'No applications yet.' }),
    el('p', {}, ['Upload the steps with ', el('code', { text: 'junction steps upload FILE' }),
      ', then the application with ', el('code', { text: 'junction apps upload FILE' }),
      '; it appears here, ready to run.']),
  ]);
  view.setAttribute('aria-labelledby', 'apps-heading');
  view.replaceChildren(
    el('div', { class: 'toolbar' }, [heading, el('div', { class: 'toolbar-actions' }, [refresh])]),
    error, loading, el('div', { class: 'table-wrap' }, [table]), empty,
  );
  if (focusHeading) heading.focus();

  const load = async () => {
    table.setAttribute('aria-busy', 'true');
    try {
      const list = await api('GET', '/api/v1/applications');
      if (g !== gen) return;
      const apps = (Array.isArray(list) ? list : [])
        .sort((a, b) => (a.friendly_name || a.name).localeCompare(b.friendly_name || b.name));
      const active = document.activeElement;
      const focused = body.contains(active) ? active.closest('tr')?.dataset.app : null;
      body.replaceChildren(...apps.map(appRow));
      if (focused != null) {
        const again = [...body.rows].find((r) => r.dataset.app === focused);
        (again?.querySelector('a') ?? refresh).focus();
      }
      table.hidden = apps.length === 0;
      empty.hidden = apps.length > 0;
      showBanner('apps-error', '');
    } catch (err) {
      if (g === gen && !err.handled) showBanner('apps-error', messageOf(err));
    } finally {
      if (g === gen) {
        loading.hidden = true;
        table.removeAttribute('aria-busy');
      }
    }
  };
  refresh.addEventListener('click', load);
  load();
}

function appRow(a) {
  const label = a.friendly_name || a.name;
  const nameCell = el('th', { scope: 'row', class: 'app-name' }, [el('a', { href: appHref(a.name), text: label })]);
  if (label !== a.name) nameCell.append(el('span', { class: 'app-id muted', text: a.name }));
  return el('tr', { data: { app: a.name } }, [
    nameCell,
    el('td', { class: 'app-description', text: a.description || '—', title: a.description || null }),
    el('td', { class: 'app-steps num', text: String(a.steps ?? '—') }),
    el('td', { class: 'app-config', text: a.configuration || '—' }),
    el('td', { class: 'app-updated' }, [timeEl(a.updated_at)]),
  ]);
}

// ---------------------------------------------------------------- one application

function showApp(name, focusHeading) {
  const g = gen;
  const view = $('apps-view');
  const heading = el('h1', { id: 'app-heading', tabindex: '-1', text: name });
  const back = el('a', { class: 'back-link', href: '#/applications', text: '← Applications' });
  const loading = el('p', { class: 'muted', text: 'Loading…' });
  const error = el('p', { id: 'app-error', class: 'banner error', role: 'alert', hidden: true });
  view.setAttribute('aria-labelledby', 'app-heading');
  view.replaceChildren(el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, [back]),
    el('div', { class: 'toolbar' }, [heading]), error, loading);
  if (focusHeading) heading.focus();

  api('GET', appPath(name)).then((app) => {
    if (g !== gen) return;
    renderApp(app, heading);
  }, (err) => {
    if (g !== gen || err.handled) return;
    loading.remove();
    notLoaded(view, heading, err, {
      what: 'Application', name, gone: 'deleted or renamed', listHref: '#/applications', listName: 'applications',
      report: (e) => showBanner('app-error', messageOf(e)), retry: () => showApplications(name, false),
    });
  });
}

function renderApp(app, heading) {
  const name = app.name;
  const label = app.friendly_name || name;
  const steps = Array.isArray(app.steps) ? app.steps.filter((s) => s && typeof s.name === 'string') : [];
  const vars = Array.isArray(app.app_variables) ? app.app_variables : [];
  heading.textContent = label;
  const view = $('apps-view');
  // The heading moves into the full page; keep the focus on it.
  const hadFocus = document.activeElement === heading;

  const button = (id, text, cls = 'button') => el('button', { type: 'button', id, class: cls, text, data: { needs: 'operate' } });
  const run = button('app-run', 'Run', 'button primary');
  const debug = button('app-debug-run', 'Debug Run');
  const custom = button('app-custom-run', 'Custom Run');
  custom.setAttribute('aria-haspopup', 'dialog');
  const stop = el('button', { type: 'button', id: 'app-stop', class: 'button danger', hidden: true, data: { needs: 'operate' } },
    [el('span', { class: 'icon-stop', 'aria-hidden': 'true' }), 'Stop']);
  run.title = 'Run with the default log level (Info)';
  debug.title = 'Run with log level Debug (10)';
  custom.title = 'Choose the log level and parameter values, then run';

  const meta = el('dl', { class: 'app-meta' });
  const metaItem = (term, value) => meta.append(el('div', {}, [el('dt', { text: term }), el('dd', {}, [value])]));
  if (label !== name) metaItem('Name', el('code', { text: name }));
  metaItem('Configuration', app.configuration
    ? el('a', { href: '#/configurations', text: app.configuration }) : el('span', { class: 'muted', text: 'none' }));
  metaItem('Queue', document.createTextNode(app.queue || 'default'));
  metaItem('Revision', document.createTextNode(String(app.revision ?? '—')));
  metaItem('Updated', timeEl(app.updated_at));

  const warnings = Array.isArray(app.warnings) && app.warnings.length
    ? el('div', { class: 'banner warning', role: 'note' }, [
      el('strong', { text: 'This application refers to things that are not stored yet:' }),
      el('ul', {}, app.warnings.map((w) => el('li', { text: `${w.field ? `${w.field}: ` : ''}${w.message ?? w.rule ?? ''}` }))),
    ])
    : null;

  // The graph.
  const { svgNode, width } = drawDag(steps, label);
  const caption = el('p', { id: 'dag-caption', class: 'dag-caption' });
  const dagWrap = el('div', {
    id: 'dag', class: 'dag-scroll', tabindex: '0', role: 'region', 'aria-labelledby': 'dag-heading',
  }, [svgNode]);
  dagWrap.dataset.width = String(width);

  // Steps table.
  const stepsBody = el('tbody', { id: 'steps-body' }, steps.map((s) => stepRow(s, steps)));
  const stepsTable = el('table', { id: 'steps-table', class: 'grid steps-table', 'aria-labelledby': 'steps-heading' }, [
    headRow(['Step', 'Runs', 'Parameters', 'Outputs to', 'Latest run']), stepsBody,
  ]);

  // Variables.
  const varsPart = vars.length
    ? el('div', { class: 'table-wrap' }, [el('table', { id: 'vars-table', class: 'grid vars-table', 'aria-labelledby': 'vars-heading' }, [
      headRow(['Name', 'Value', 'Default', 'Required', 'Description']),
      el('tbody', {}, vars.map(varRow)),
    ])])
    : el('p', { class: 'empty', text: 'This application has no variables. Custom Run can still pass one-time parameters.' });

  // Run history.
  const runsRefresh = refreshButton('runs-refresh', 'Refresh the run history');
  const runsBody = el('tbody', { id: 'runs-body' });
  const runsTable = el('table', { id: 'runs-table', class: 'grid runs-table', 'aria-labelledby': 'runs-heading', hidden: true }, [
    headRow(['Start', 'Duration', 'Trigger', 'Log level', 'State', 'Log', '-Stop']), runsBody,
  ]);
  const runsEmpty = el('p', { id: 'runs-empty', class: 'empty', hidden: true, text: 'No runs yet. Use Run to start one.' });
  const runsLoading = el('p', { id: 'runs-loading', class: 'muted', text: 'Loading…' });

  const section = (id, title, children, extra = []) => el('section', { class: 'app-section', 'aria-labelledby': id }, [
    el('div', { class: 'section-head' }, [el('h2', { id, text: title }), ...extra]), ...children,
  ]);

  view.replaceChildren(
    el('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, [el('a', { class: 'back-link', href: '#/applications', text: '← Applications' })]),
    el('div', { class: 'toolbar app-toolbar' }, [
      el('div', { class: 'app-title' }, [heading, app.description ? el('p', { class: 'muted app-description', text: app.description }) : '']),
      el('div', { class: 'toolbar-actions run-actions', role: 'group', 'aria-label': 'Run this application' }, [run, debug, custom, stop]),
    ]),
    el('p', { id: 'app-error', class: 'banner error', role: 'alert', hidden: true }),
    el('p', { id: 'app-status', class: 'banner info', role: 'status', hidden: true }),
    warnings ?? '',
    meta,
    section('dag-heading', 'Steps graph', [caption, dagWrap, legend()]),
    section('steps-heading', 'Steps', [el('div', { class: 'table-wrap' }, [stepsTable])]),
    section('vars-heading', 'Variables', [varsPart]),
    section('runs-heading', 'Run history', [
      el('p', { id: 'runs-error', class: 'banner error', role: 'alert', hidden: true }),
      runsLoading, el('div', { class: 'table-wrap' }, [runsTable]), runsEmpty,
    ], [runsRefresh]),
  );

  if (hadFocus) heading.focus();

  cur = {
    name, label, app, steps, vars, run: null, starting: false, stopping: new Set(), runsSeq: 0,
    dom: { run, debug, custom, stop, caption, dagWrap, svg: svgNode, stepsBody, runsBody, runsTable, runsEmpty, runsLoading, runsRefresh },
  };
  paint(null);

  run.addEventListener('click', () => startRun({}, 'Run'));
  debug.addEventListener('click', () => startRun({ log_level: 10 }, 'Debug Run'));
  custom.addEventListener('click', openCustomRun);
  stop.addEventListener('click', () => cur?.run && stopRun(cur.run.id));
  runsRefresh.addEventListener('click', () => loadRuns());
  runsBody.addEventListener('click', (event) => {
    const id = event.target.closest('button[data-ctl="stop-run"]')?.closest('tr[data-run]')?.dataset.run;
    if (id) stopRun(id);
  });

  loadRuns();
  loadStepDetails(cur);
}

function legend() {
  const items = [['running', 'Running'], ['success', 'Succeeded'], ['failure', 'Failed'],
    ['warning', 'Retrying or stopped'], ['queued', 'Queued'], ['idle', 'Not run']];
  return el('ul', { class: 'dag-legend', 'aria-label': 'Colour key' }, items.map(([cls, text]) => el('li', {}, [
    el('span', { class: `swatch step-${cls}`, 'aria-hidden': 'true' }), text,
  ])));
}

const appBanners = banners('app-error', 'app-status', STATUS_CLEAR_MS);
const announce = appBanners.announce;

function showError(err, source = 'action') {
  if (cur) appBanners.error(err, source);
}

// ---------------------------------------------------------------- the DAG

// Layers by the longest path from a root; within a layer, application order
// refined by a few barycentre sweeps (fewer crossings). Left to right.
function layoutDag(steps) {
  const n = steps.length;
  const index = new Map(steps.map((s, i) => [s.name, i]));
  const succ = steps.map((s) => [...new Set((Array.isArray(s.output_to) ? s.output_to : [])
    .filter((t) => index.has(t) && t !== s.name).map((t) => index.get(t)))]);
  const pred = steps.map(() => []);
  succ.forEach((targets, i) => targets.forEach((j) => pred[j].push(i)));

  const layer = new Array(n).fill(0);
  const indegree = pred.map((p) => p.length);
  const queue = [];
  for (let i = 0; i < n; i++) if (indegree[i] === 0) queue.push(i);
  const placed = new Array(n).fill(false);
  while (queue.length) {
    const i = queue.shift();
    placed[i] = true;
    for (const j of succ[i]) {
      layer[j] = Math.max(layer[j], layer[i] + 1);
      if (--indegree[j] === 0) queue.push(j);
    }
  }
  // A cycle (the server refuses them) would leave steps unplaced: last column.
  const deepest = Math.max(0, ...layer);
  for (let i = 0; i < n; i++) if (!placed[i]) layer[i] = deepest + 1;

  const layers = [];
  for (let i = 0; i < n; i++) (layers[layer[i]] ??= []).push(i);
  for (let l = 0; l < layers.length; l++) layers[l] ??= [];
  const pos = new Array(n).fill(0);
  const setPos = () => layers.forEach((ids) => ids.forEach((i, k) => { pos[i] = k; }));
  setPos();
  const sweep = (order, neighbours) => {
    for (const l of order) {
      const key = new Map(layers[l].map((i) => {
        const ns = neighbours[i];
        return [i, ns.length ? ns.reduce((sum, j) => sum + pos[j], 0) / ns.length : pos[i]];
      }));
      layers[l].sort((a, b) => key.get(a) - key.get(b) || a - b);
      layers[l].forEach((i, k) => { pos[i] = k; });
    }
  };
  const down = layers.map((_, l) => l).slice(1);
  const up = layers.map((_, l) => l).reverse().slice(1);
  for (let pass = 0; pass < 3; pass++) {
    sweep(down, pred);
    sweep(up, succ);
  }

  const tallest = Math.max(1, ...layers.map((ids) => ids.length));
  const height = PAD * 2 + tallest * BOX_H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + layers.length * BOX_W + Math.max(0, layers.length - 1) * GAP_X;
  const boxes = new Array(n);
  layers.forEach((ids, l) => {
    const column = ids.length * BOX_H + (ids.length - 1) * GAP_Y;
    const top = PAD + (height - PAD * 2 - column) / 2;
    ids.forEach((i, k) => {
      boxes[i] = { x: PAD + l * (BOX_W + GAP_X), y: top + k * (BOX_H + GAP_Y), layer: l };
    });
  });
  const edges = [];
  succ.forEach((targets, i) => targets.forEach((j) => edges.push([i, j])));
  return { boxes, edges, width, height };
}

function shortName(name) {
  return name.length > NAME_CHARS ? `${name.slice(0, NAME_CHARS - 1)}…` : name;
}

function drawDag(steps, appLabel) {
  const { boxes, edges, width, height } = layoutDag(steps);
  const defs = svg('defs', {}, [svg('marker', {
    id: 'dag-arrow', viewBox: '0 0 10 10', refX: '9', refY: '5', markerWidth: '8', markerHeight: '8',
    orient: 'auto-start-reverse', markerUnits: 'userSpaceOnUse',
  }, [svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'dag-arrowhead' })])]);

  const edgeNodes = edges.map(([i, j]) => {
    const a = boxes[i];
    const b = boxes[j];
    let d;
    if (b.x > a.x) {
      // Right side of the source to the left side of the target.
      const x1 = a.x + BOX_W;
      const y1 = a.y + BOX_H / 2;
      const x2 = b.x - 1;
      const y2 = b.y + BOX_H / 2;
      const bend = Math.min(GAP_X, (x2 - x1) / 2);
      d = `M ${x1} ${y1} C ${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`;
    } else {
      // Same column (only for the cycle fallback): bottom to top.
      const x = a.x + BOX_W / 2;
      d = `M ${x} ${a.y + BOX_H} L ${x} ${b.y - 1}`;
    }
    return svg('path', {
      class: 'dag-edge', d, 'marker-end': 'url(#dag-arrow)',
      'data-from': steps[i].name, 'data-to': steps[j].name,
    });
  });

  const stepNodes = steps.map((s, i) => {
    const { x, y } = boxes[i];
    const title = svg('title');
    return svg('g', {
      class: 'dag-step step-idle', 'data-step': s.name, role: 'img', transform: `translate(${x} ${y})`,
    }, [
      title,
      svg('rect', { class: 'dag-box', width: BOX_W, height: BOX_H, rx: 7, ry: 7 }),
      svg('text', { class: 'dag-name', x: 12, y: 24 }, [shortName(s.name)]),
      svg('text', { class: 'dag-state', x: 12, y: 44 }, ['']),
    ]);
  });

  const svgNode = svg('svg', {
    class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'group',
    'aria-label': `Steps of ${appLabel} and how their data flows`,
  }, [defs, svg('g', { class: 'dag-edges', 'aria-hidden': 'true' }, edgeNodes), svg('g', { class: 'dag-steps' }, stepNodes)]);
  return { svgNode, width };
}

// Colours the boxes, the steps table and the caption after `run` (or none).
function paint(run) {
  const c = cur;
  if (!c) return;
  const d = c.dom;
  const byName = new Map((run?.steps ?? []).map((s) => [s.name, s]));
  for (const g of d.svg.querySelectorAll('g.dag-step')) {
    const name = g.dataset.step;
    const s = byName.get(name);
    const [cls, word, icon] = s ? (STEP_LOOK[s.state] ?? ['queued', s.state, '?']) : NO_RUN;
    g.setAttribute('class', `dag-step step-${cls}`);
    const label = `step ${name}: ${word.toLowerCase()}`;
    g.setAttribute('aria-label', label);
    const extra = [s && s.attempts > 1 ? `attempt ${s.attempts}` : '', s?.state === 'FAILURE' && s.result ? s.result : '']
      .filter(Boolean).join('; ');
    g.querySelector('title').textContent = extra ? `${label} (${extra})` : label;
    g.querySelector('.dag-state').textContent = `${icon} ${word}`;
  }
  for (const row of d.stepsBody.rows) {
    const s = byName.get(row.dataset.step);
    const cell = row.querySelector('.step-latest');
    cell.replaceChildren(s ? stateBadge(s.state) : el('span', { class: 'muted', text: '—' }));
    if (s?.state === 'FAILURE' && s.result) cell.append(el('span', { class: 'step-result muted', text: s.result }));
  }

  d.dagWrap.dataset.run = run?.id ?? '';
  d.dagWrap.dataset.state = run?.state ?? '';
  if (run) {
    const level = LEVEL_NAME[run.log_level] ?? `level ${run.log_level}`;
    d.caption.replaceChildren('Colours show run ', el('code', { text: run.id }), ` (log level ${level}) `,
      stateBadge(run.state), run.start_time != null ? ' started ' : ' queued ',
      timeEl(fromSeconds(run.start_time) ?? run.created_at),
      FINAL.has(run.state) ? '' : el('span', { class: 'live muted', text: ' · updating live' }));
  } else {
    d.caption.replaceChildren(el('span', { class: 'muted', text: 'No runs yet: use Run to start one; each step’s box then shows its state.' }));
  }

  const going = !!run && !FINAL.has(run.state);
  if (!going && document.activeElement === d.stop) d.run.focus();
  d.stop.hidden = !going;
  if (going) d.stop.setAttribute('aria-label', `Stop run ${run.id}`);
}

// Shows `run` and follows it about once a second until it ends.
// Every watch() starts a new generation: an answer to an older poll (one in
// flight when Stop answered, say) is dropped instead of painting over it.
function watch(run) {
  const c = cur;
  if (!c) return;
  clearTimeout(pollTimer);
  pollTimer = 0;
  c.run = run;
  c.watchGen = (c.watchGen ?? 0) + 1;
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
    if (document.getElementById('app-error')?.dataset.source === 'poll') showBanner('app-error', '');
    if (FINAL.has(run.state)) {
      if (run.state === 'FAILURE') {
        showBanner('app-status', '');
        showBanner('app-error', `Run ${id} ended: FAILURE.`);
      }
      else announce(`Run ${id} ended: ${run.state}.`);
      loadRuns();
      return;
    }
  } catch (err) {
    if (stale()) return;
    showError(err, 'poll');
    if (err.status === 404 || err.handled) return;
    c.pollErrors += 1;
  }
  // After errors (server restarting, network gone) ask less often, up to
  // 30 s; a tab in the background asks every 10 s.
  const delay = Math.min(POLL_MS * 2 ** (c.pollErrors ?? 0) * (document.hidden ? 10 : 1), 30_000);
  if (!stale()) pollTimer = setTimeout(() => poll(c, id, g), delay);
}

// ---------------------------------------------------------------- run, stop

async function requestRun(body) {
  const c = cur;
  const run = await api('POST', `${appPath(c.name)}/run`, body);
  if (c === cur) {
    announce(`Run ${run.id} started.`);
    watch(run);
    loadRuns();
  }
  return run;
}

// Not `disabled` while the request is on its way: that would drop keyboard
// focus. A second click is ignored instead.
async function startRun(body) {
  const c = cur;
  if (!c || c.starting) return;
  c.starting = true;
  try {
    await requestRun(body);
  } catch (err) {
    if (c === cur) showError(err);
  } finally {
    c.starting = false;
  }
}

async function stopRun(id) {
  const c = cur;
  if (!c || c.stopping.has(id)) return;
  c.stopping.add(id);
  try {
    const run = await api('POST', `${taskPath(id)}/revoke`);
    if (c !== cur) return;
    announce(`Run ${id} stopped.`);
    if (c.run?.id === id && run?.id) watch(run);
  } catch (err) {
    if (c === cur) showError(err);
  } finally {
    c.stopping.delete(id);
  }
  if (c === cur) loadRuns();
}

// ---------------------------------------------------------------- run history

async function loadRuns() {
  const c = cur;
  if (!c) return;
  const d = c.dom;
  const seq = ++c.runsSeq;
  d.runsTable.setAttribute('aria-busy', 'true');
  try {
    const answer = await api('GET', `${appPath(c.name)}/runs?limit=${RUNS_LIMIT}`);
    if (c !== cur || seq !== c.runsSeq) return;
    const runs = Array.isArray(answer) ? answer : [];
    renderPreservingFocus(d.runsBody, runs.map(runRow), d.runsRefresh);
    d.runsTable.hidden = runs.length === 0;
    d.runsEmpty.hidden = runs.length > 0;
    showBanner('runs-error', '');
    // The colours follow the newest run, unless one is being followed live.
    const newest = runs[0];
    if (newest && (!c.run || (FINAL.has(c.run.state) && newest.id !== c.run.id))) watch(newest);
  } catch (err) {
    if (c === cur && seq === c.runsSeq && !err.handled) showBanner('runs-error', messageOf(err));
  } finally {
    if (c === cur && seq === c.runsSeq) {
      d.runsLoading.hidden = true;
      d.runsTable.removeAttribute('aria-busy');
    }
  }
}

// The history row of a followed run, when its state changes.
function updateRunRow(run) {
  const row = [...cur.dom.runsBody.rows].find((r) => r.dataset.run === run.id);
  if (!row) return;
  const active = row.contains(document.activeElement) ? document.activeElement.dataset.ctl : null;
  const fresh = runRow(run);
  row.replaceWith(fresh);
  if (active) (fresh.querySelector(`[data-ctl="${active}"]`) ?? fresh.querySelector('a')).focus();
}

function runRow(run) {
  const startIso = fromSeconds(run.start_time) ?? run.created_at;
  const start = toDate(startIso);
  const when = start ? start.toLocaleString() : run.id;
  const duration = run.start_time != null && run.end_time != null ? (run.end_time - run.start_time) * 1000 : null;
  const trigger = Array.isArray(run.triggered_by) ? run.triggered_by.map((t) => t.triggered_by).filter(Boolean).join(', ') : '';
  return el('tr', { data: { run: run.id } }, [
    el('td', { class: 'run-start' }, [timeEl(startIso)]),
    el('td', { class: 'run-duration', text: FINAL.has(run.state) ? formatDuration(duration) : '—' }),
    el('td', { class: 'run-trigger', text: trigger || '—' }),
    el('td', { class: 'run-level', text: LEVEL_NAME[run.log_level] ?? String(run.log_level ?? '—') }),
    el('td', { class: 'run-state' }, [stateBadge(run.state)]),
    el('td', {}, [logLink(`${taskPath(run.id)}/log`, when, 'run-log')]),
    stopRunCell(run, when),
  ]);
}

// ---------------------------------------------------------------- steps and variables

function stepRow(step, steps) {
  const params = Object.entries(step).filter(([k]) => !STEP_OWN_KEYS.has(k));
  const paramCell = el('td', { class: 'step-params' });
  if (params.length) {
    paramCell.append(el('ul', { class: 'kv' }, params.map(([k, v]) => el('li', {}, [
      el('code', { text: k }), ' = ', el('span', { class: 'kv-value', text: valueText(v) }),
    ]))));
  }
  paramCell.append(el('div', { class: 'step-declared' }));
  if (!params.length) paramCell.prepend(el('span', { class: 'muted none', text: 'None set' }));

  const targets = Array.isArray(step.output_to) ? step.output_to : [];
  const inputs = steps.filter((s) => Array.isArray(s.output_to) && s.output_to.includes(step.name)).map((s) => s.name);
  const outCell = el('td', { class: 'step-outputs' }, [targets.length ? targets.join(', ') : el('span', { class: 'muted', text: '—' })]);
  if (inputs.length) outCell.append(el('span', { class: 'step-inputs muted', text: `gets data from ${inputs.join(', ')}` }));

  return el('tr', { data: { step: step.name } }, [
    el('th', { scope: 'row', class: 'step-name', text: step.name }),
    el('td', { class: 'step-file' }, [el('code', { text: stepFile(step.file) }), el('span', { class: 'step-version muted' })]),
    paramCell,
    outCell,
    el('td', { class: 'step-latest' }),
  ]);
}

// The stored steps' versions and declared parameters: one request per
// distinct step, once per page open.
async function loadStepDetails(c) {
  const files = [...new Set(c.steps.map((s) => stepFile(s.file)).filter(Boolean))];
  const answers = await Promise.all(files.map((f) => api('GET', `/api/v1/steps/${encodeURIComponent(f)}`)
    .then((v) => [f, v, null], (err) => [f, null, err])));
  if (c !== cur) return;
  const byFile = new Map(answers.map(([f, v, err]) => [f, { v, err }]));
  for (const row of c.dom.stepsBody.rows) {
    const step = c.steps.find((s) => s.name === row.dataset.step);
    const info = byFile.get(stepFile(step?.file));
    if (!info) continue;
    const version = row.querySelector('.step-version');
    if (info.err) {
      if (!info.err.handled) version.textContent = info.err.status === 404 ? 'not stored' : 'details unavailable';
      continue;
    }
    const v = info.v;
    version.textContent = [v.version != null ? `version ${v.version}` : '', v.language].filter(Boolean).join(' · ');
    const declared = Array.isArray(v.parameters) ? v.parameters : [];
    if (declared.length) {
      const box = row.querySelector('.step-declared');
      box.replaceChildren(el('span', { class: 'muted', text: 'Declared:' }), el('ul', { class: 'kv' }, declared.map((p) => el('li', {
        title: p.description || null,
      }, [el('code', { text: p.name }), p.required ? ' (required)' : '',
        p.default_value != null ? ` default ${valueText(p.default_value)}` : '']))));
    }
  }
}

function varRow(v) {
  const value = v.encrypted
    ? el('span', { class: 'masked-value', title: 'An encrypted value is never shown', text: MASKED_TEXT })
    : v.value == null ? el('span', { class: 'muted', text: '—' }) : el('span', { class: 'kv-value', text: valueText(v.value) });
  return el('tr', { data: { var: v.name } }, [
    el('th', { scope: 'row' }, [el('code', { text: v.name })]),
    el('td', { class: 'var-value' }, [value]),
    el('td', { class: 'var-default', text: v.default_value == null ? '—' : valueText(v.default_value) }),
    el('td', { text: v.required ? 'Yes' : 'No' }),
    el('td', { class: 'var-description', text: v.description || '' }),
  ]);
}

// ---------------------------------------------------------------- custom run

let customRowSeq = 0;
const customRows = new WeakMap(); // row → {v: the variable or null, initial: its prefilled text}

function buildCustomDialog() {
  const level = el('select', { id: 'custom-level' }, LOG_LEVELS.map(([value, text]) =>
    el('option', { value: String(value), text: `${text} (${value})` })));
  const body = el('tbody', { id: 'custom-body' });
  const add = el('button', { type: 'button', id: 'custom-add', class: 'button small', text: '+ parameter' });
  const start = el('button', { type: 'submit', id: 'custom-start', class: 'button primary', text: 'Start' });
  const cancel = el('button', { type: 'button', id: 'custom-cancel', class: 'button', text: 'Cancel' });
  const form = el('form', { class: 'dialog-body', method: 'dialog', noValidate: true }, [
    el('h2', { id: 'custom-title', text: 'Custom Run' }),
    el('p', { id: 'custom-error', class: 'form-error', role: 'alert' }),
    el('div', { class: 'field inline-field' }, [el('label', { for: 'custom-level', text: 'Log level' }), level]),
    el('div', { class: 'section-head' }, [el('h3', { id: 'custom-params-title', text: 'Parameters' }), add]),
    el('p', { id: 'custom-help', class: 'muted custom-help', text: 'Values for this run only. An empty encrypted value keeps the stored one; an added parameter is a one-time variable.' }),
    el('div', { class: 'table-wrap' }, [el('table', { class: 'grid params run-params', 'aria-labelledby': 'custom-params-title' }, [
      headRow(['Name', 'Value', '-Delete']), body,
    ])]),
    el('p', { id: 'custom-none', class: 'muted', hidden: true, text: 'This application has no variables; use + parameter to pass one.' }),
    el('div', { class: 'dialog-actions' }, [start, cancel]),
  ]);
  const dialog = el('dialog', { id: 'custom-run-dialog', class: 'dialog wide', 'aria-labelledby': 'custom-title', 'aria-describedby': 'custom-help' }, [form]);
  document.body.append(dialog);

  cancel.addEventListener('click', () => dialog.close());
  add.addEventListener('click', () => {
    const row = customRow(null);
    body.append(row);
    updateCustomEmpty();
    row.querySelector('.param-name').focus();
  });
  body.addEventListener('click', (event) => {
    const row = event.target.closest('button.param-delete')?.closest('tr');
    if (!row) return;
    const next = row.nextElementSibling ?? row.previousElementSibling;
    row.remove();
    updateCustomEmpty();
    (next?.querySelector('button.param-delete, input') ?? add).focus();
  });
  body.addEventListener('input', (event) => {
    const row = event.target.closest('tr');
    if (row) clearRowError(row);
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    submitCustomRun();
  });
  // Closing drops what was typed, values included.
  dialog.addEventListener('close', () => {
    body.replaceChildren();
    $('custom-error').textContent = '';
  });
  return dialog;
}

function updateCustomEmpty() {
  $('custom-none').hidden = $('custom-body').rows.length > 0;
}

// One parameter row: an application variable (`v`, name fixed, value
// prefilled; an encrypted one starts empty) or a one-time parameter (null).
function customRow(v) {
  const id = `custom-${++customRowSeq}`;
  const error = el('span', { id: `${id}-error`, class: 'param-error' });
  let nameCell;
  if (v) {
    nameCell = el('th', { scope: 'row', class: 'custom-var' }, [el('code', { id: `${id}-name`, text: v.name }),
      v.required ? el('span', { class: 'muted', text: ' (required)' }) : '', error]);
  } else {
    nameCell = el('td', {}, [el('input', {
      type: 'text', id: `${id}-name`, class: 'param-name', autocomplete: 'off', spellcheck: 'false',
      'aria-label': 'Parameter name', 'aria-describedby': `${id}-error`,
    }), error]);
  }
  const value = el('input', {
    type: v?.encrypted ? 'password' : 'text', id: `${id}-value`, class: 'param-value', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': `${id}-error`,
    placeholder: v?.encrypted ? 'stored value' : v && v.default_value != null ? `default: ${valueText(v.default_value)}` : null,
  });
  if (v) value.setAttribute('aria-labelledby', `${id}-name`);
  else value.setAttribute('aria-label', 'Value');
  // A property, never an attribute: values do not sit in the page's HTML.
  const initial = v && !v.encrypted ? valueText(v.value) : '';
  value.value = initial;
  const valueCell = el('td', { class: 'param-value-cell' }, [value]);
  if (v?.encrypted) valueCell.prepend(el('span', { class: 'masked-value', text: MASKED_TEXT }));
  const actions = el('td', { class: 'actions' });
  if (!v) {
    actions.append(el('button', {
      type: 'button', class: 'button small danger param-delete', 'aria-label': 'Delete this parameter', text: '✕',
    }));
  }
  const row = el('tr', { class: 'param-row' }, [nameCell, valueCell, actions]);
  customRows.set(row, { v, initial });
  return row;
}

function clearRowError(row) {
  const note = row.querySelector('.param-error');
  if (note) note.textContent = '';
  for (const i of row.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
}

function openCustomRun() {
  const c = cur;
  if (!c) return;
  customDialog ??= buildCustomDialog();
  $('custom-title').textContent = `Custom Run — ${c.label}`;
  $('custom-level').value = String(LEVEL_INFO);
  $('custom-error').textContent = '';
  $('custom-body').replaceChildren(...c.vars.filter((v) => v && typeof v.name === 'string').map(customRow));
  updateCustomEmpty();
  openDialog(customDialog, $('custom-level'));
}

function rowError(row, message, input) {
  const note = row.querySelector('.param-error');
  note.textContent = [note.textContent, message].filter(Boolean).join('; ');
  (input ?? row.querySelector('.param-value')).setAttribute('aria-invalid', 'true');
}

async function submitCustomRun() {
  const c = cur;
  if (!c || c.starting) return;
  const rows = [...$('custom-body').rows];
  rows.forEach(clearRowError);
  $('custom-error').textContent = '';
  const params = Object.create(null); // a parameter may be called __proto__
  const rowOf = new Map();
  let first = null;
  for (const row of rows) {
    const { v, initial } = customRows.get(row) ?? {};
    const input = row.querySelector('.param-value');
    const text = input.value;
    if (v) {
      // Untouched values are left to the application (keeping their JSON type).
      if (v.encrypted ? text === '' : text === initial) continue;
      let value = text;
      if (!v.encrypted && v.value != null && typeof v.value !== 'string') {
        try { value = JSON.parse(text); } catch { value = text; }
      }
      params[v.name] = value;
      rowOf.set(v.name, row);
    } else {
      const nameInput = row.querySelector('.param-name');
      const name = nameInput.value.trim();
      if (!name) {
        if (text === '') continue; // an empty row is ignored
        rowError(row, 'Enter a name for this parameter.', nameInput);
        first ??= nameInput;
        continue;
      }
      if (Object.hasOwn(params, name) || c.vars.some((x) => x.name === name)) {
        rowError(row, `“${name}” is given twice.`, nameInput);
        first ??= nameInput;
        continue;
      }
      params[name] = text;
      rowOf.set(name, row);
    }
  }
  if (first) {
    $('custom-error').textContent = 'Check the parameters marked below.';
    first.focus();
    return;
  }
  const level = Number($('custom-level').value);
  c.starting = true;
  const start = $('custom-start');
  start.setAttribute('aria-busy', 'true');
  try {
    await requestRun({ params, log_level: level });
    if (customDialog.open) customDialog.close();
  } catch (err) {
    if (err.handled || c !== cur) return;
    $('custom-error').textContent = err.message;
    let focus = null;
    for (const d of err.details) {
      const m = /^params\.(.+)$/.exec(d.field ?? '');
      const row = m && rowOf.get(m[1]);
      if (row) {
        rowError(row, d.message);
        focus ??= row.querySelector('.param-value');
      } else {
        $('custom-error').textContent += ` (${d.field ? `${d.field}: ` : ''}${d.message})`;
      }
    }
    (focus ?? $('custom-level')).focus();
  } finally {
    c.starting = false;
    start.removeAttribute('aria-busy');
  }
}
