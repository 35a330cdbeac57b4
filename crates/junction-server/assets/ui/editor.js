// The job editor (spec 000, "Add or Edit Integration Hub Jobs"): a pop-up
// over the grid, opened by + New Job or by a job's name.
//
// A job is an application (DESIGN.md) whose one step runs the uploaded
// script; its parameters are the application's variables (a masked one is
// `"encrypted": true`), its Scheduled trigger is an `interval` schedule and
// its Automated Job trigger is `"automated": true`. Saving is a sequence of
// public API calls — the script (POST /steps), the application (POST
// /applications), then the schedule (POST or DELETE /schedule) — each
// checked by the server. Everything that can be checked first is checked in
// the browser, so a save rarely stops half-way; if a later call is refused
// the editor stays open on the saved job with the error next to its field.

import {
  $, api, appPath, clearParamError, el, messageOf, openDialog, paramOf, paramTable, placeParamError, showBanner,
  stepFile,
} from './core.js';

const FIELD_ERRORS = ['job-name', 'job-description', 'job-file', 'job-trigger', 'job-frequency', 'job-repeat',
  'job-start', 'job-timezone'];
const UNIT = { Minute: 'minute(s)', Hourly: 'hour(s)', Daily: 'day(s)', Weekly: 'week(s)', Monthly: 'month(s)' };
// Where the server's violations go: field path (regex) → input id.
const SERVER_FIELDS = [
  [/^(name|friendly_name)$/, 'job-name'],
  [/^description$/, 'job-description'],
  [/^(data|file_name|language|steps)/, 'job-file'],
  [/^automated$/, 'job-trigger'],
  [/frequency$/, 'job-frequency'],
  [/repeat_every$/, 'job-repeat'],
  [/start_on$/, 'job-start'],
  [/^timezone$/, 'job-timezone'],
];
// Keys the server adds to a document it returns; ignored on upload anyway,
// dropped so a saved document is exactly what the author wrote.
const READ_BACK_KEYS = ['revision', 'created_at', 'updated_at', 'warnings'];
// start_on forms the server takes (date, optional time and seconds, optional
// offset); the datetime-local input holds only "YYYY-MM-DDTHH:MM".
const START_ON = /^(\d{4}-\d\d-\d\d)(?:[Tt ](\d\d:\d\d)(:\d\d)?)?(.*)$/;

let hooks = { saved: () => {}, announce: () => {} };
// The job being edited: null for a new one.
let current = null; // {name, doc, step, schedules, multiStep}
let openSeq = 0;
let busy = false;
let params = null; // the parameter table, made in initEditor

export function initEditor(options) {
  hooks = options;
  fillTimeZones();
  params = paramTable({ body: 'job-params-body', table: 'job-params', empty: 'job-params-empty', add: 'job-params-add' });
  $('job-file').addEventListener('change', onFileChosen);
  $('job-script-download').addEventListener('click', downloadScript);
  for (const radio of document.querySelectorAll('input[name="job-trigger"]')) {
    radio.addEventListener('change', showTriggerFields);
  }
  $('job-frequency').addEventListener('change', () => {
    $('job-repeat-unit').textContent = UNIT[$('job-frequency').value] ?? '';
  });
  $('job-name').addEventListener('input', showIdNote);
  // (The file input clears and sets its own message in onFileChosen.)
  for (const id of FIELD_ERRORS.filter((f) => f !== 'job-file')) {
    const input = $(id);
    input?.addEventListener('input', () => setFieldError(id, ''));
    input?.addEventListener('change', () => setFieldError(id, ''));
  }
  $('job-run-close').addEventListener('click', () => save('run'));
  $('job-save').addEventListener('click', () => save('stay'));
  $('job-save-close').addEventListener('click', () => save('close'));
  $('job-cancel').addEventListener('click', () => $('job-dialog').close());
  // A save in progress finishes before the pop-up can close (Escape included):
  // closing half-way would leave the job saved without its trigger.
  $('job-dialog').addEventListener('cancel', (e) => {
    if (busy) e.preventDefault();
  });
  // Enter in a field must not send the form anywhere; saving is a button.
  $('job-form').addEventListener('submit', (e) => e.preventDefault());
  // Closing without saving (Cancel, Escape) drops the edits, values included.
  $('job-dialog').addEventListener('close', () => {
    openSeq++;
    current = null;
    resetForm();
  });
}

// ---------------------------------------------------------------- open

export async function openJobEditor(name) {
  const seq = ++openSeq;
  current = null;
  resetForm();
  $('job-title').textContent = name ? 'Edit Job' : 'New Job';
  openDialog($('job-dialog'), $('job-name'));
  if (!name) {
    showIdNote();
    return;
  }
  $('job-loading').hidden = false;
  setButtons(false);
  try {
    const [doc, schedules] = await Promise.all([api('GET', appPath(name)), api('GET', '/api/v1/schedule')]);
    if (seq !== openSeq) return;
    const steps = Array.isArray(doc.steps) ? doc.steps : [];
    current = {
      name,
      doc,
      multiStep: steps.length !== 1,
      step: steps.length === 1 ? stepFile(steps[0].file) : null,
      schedules: (Array.isArray(schedules) ? schedules : []).filter((s) => s.application_id === name),
    };
    fillForm(current);
    setButtons(true);
  } catch (err) {
    if (seq === openSeq && !err.handled) showBanner('job-error', messageOf(err));
  } finally {
    if (seq === openSeq) $('job-loading').hidden = true;
  }
}

function resetForm() {
  $('job-form').reset();
  for (const id of FIELD_ERRORS) setFieldError(id, '');
  showBanner('job-error', '');
  params.fill([]);
  $('job-progress').textContent = '';
  $('job-script-name').textContent = 'No script uploaded yet';
  $('job-script-download').hidden = true;
  $('job-file').disabled = false;
  $('job-file-chosen').textContent = '';
  $('job-trigger-note').textContent = '';
  $('job-schedule-note').hidden = true;
  $('job-timezone').value = browserTimeZone();
  $('job-repeat-unit').textContent = '';
  showTriggerFields();
  setButtons(true);
}

function fillForm(job) {
  const { doc } = job;
  $('job-name').value = doc.friendly_name ?? doc.name;
  $('job-description').value = doc.description ?? '';
  showIdNote();
  fillParams(doc);

  if (job.multiStep) {
    $('job-script-name').textContent = `This application has ${(doc.steps ?? []).length} steps; `
      + 'upload their scripts with junction steps upload.';
    $('job-file').disabled = true;
  } else {
    $('job-script-name').textContent = `${job.step}.js`;
    $('job-script-download').hidden = false;
    $('job-script-download').setAttribute('aria-label', `Download ${job.step}.js`);
  }

  const interval = job.schedules.length === 1 && job.schedules[0].schedule?.schedule_type === 'interval'
    ? job.schedules[0] : null;
  let trigger = 'manual';
  if (job.schedules.length) trigger = 'scheduled';
  else if (doc.automated === true) trigger = 'automated';
  $(`job-trigger-${trigger}`).checked = true;
  if (interval) {
    const info = interval.schedule.schedule_info ?? {};
    $('job-frequency').value = info.frequency ?? '';
    $('job-repeat').value = info.repeat_every ?? '';
    $('job-repeat-unit').textContent = UNIT[info.frequency] ?? '';
    const m = START_ON.exec(String(info.start_on ?? ''));
    // Shown when the input can hold it exactly; otherwise kept as stored
    // unless a new Start On is picked.
    const exact = m && (!m[3] || m[3] === ':00') && !m[4];
    $('job-start').value = exact ? `${m[1]}T${m[2] ?? '00:00'}` : '';
    job.storedStart = exact ? null : info.start_on ?? null;
    if (job.storedStart) {
      $('job-start-error').textContent = '';
      $('job-schedule-note').textContent = `Start On stays ${job.storedStart} unless you pick a new one.`;
      $('job-schedule-note').hidden = false;
    }
    ensureTimeZone(interval.timezone ?? 'UTC');
    $('job-timezone').value = interval.timezone ?? 'UTC';
  } else if (job.schedules.length) {
    // Cron and other kinds made with the CLI or API: kept unless a new
    // Frequency is chosen here.
    const note = $('job-schedule-note');
    note.textContent = `Current schedule: ${job.schedules.map(describeSchedule).join('; ')}. `
      + 'It is kept as it is unless you fill in the fields below, which replace it.';
    note.hidden = false;
  }
  showTriggerFields();
}

// The stored parameters: masked ones locked, other values kept as stored
// (a number stays a number) unless edited.
function fillParams(doc) {
  const vars = Array.isArray(doc.app_variables) ? doc.app_variables : [];
  params.fill(vars.map((v) => ({ name: v.name, type: v.encrypted ? 'masked' : 'string', value: v.value })));
}

function describeSchedule(s) {
  const sch = s.schedule ?? {};
  const info = sch.schedule_info ?? {};
  if (sch.schedule_type === 'cron') return `cron ${info.expression} (${s.timezone})`;
  if (sch.schedule_type === 'frequency') return `every ${info.run_every} s`;
  return `${sch.schedule_type} ${JSON.stringify(info)}`;
}

function showTriggerFields() {
  const trigger = selectedTrigger();
  $('job-schedule').hidden = trigger !== 'scheduled';
  $('job-trigger-note').textContent = {
    scheduled: 'A scheduled job runs one instance at a time.',
    automated: 'Automated jobs are started by events and can run several instances at once. '
      + 'They need Enable Automated Jobs in Settings.',
    manual: 'Runs only when started with Run & Close, Run now or the API.',
  }[trigger] ?? '';
}

const selectedTrigger = () => document.querySelector('input[name="job-trigger"]:checked')?.value ?? '';

function browserTimeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}

function fillTimeZones() {
  const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  const all = [...new Set(['UTC', browserTimeZone(), ...zones])].sort((a, b) => (a === 'UTC' ? -1 : b === 'UTC' ? 1
    : a.localeCompare(b)));
  $('job-timezone').replaceChildren(...all.map((z) => el('option', { value: z, text: z })));
}

function ensureTimeZone(zone) {
  const select = $('job-timezone');
  if (![...select.options].some((o) => o.value === zone)) select.append(el('option', { value: zone, text: zone }));
}

// A new job's application name comes from its Job Name; an existing job keeps its own.
function showIdNote() {
  const id = current ? current.name : slug($('job-name').value);
  $('job-id-note').textContent = id ? `Application name: ${id}` : '';
}

export function slug(text) {
  const s = text.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '-').replace(/^[^a-z0-9_]+/, '').replace(/[-.]+$/, '');
  return s.slice(0, 100).replace(/[-.]+$/, '');
}

// ---------------------------------------------------------------- script

function onFileChosen() {
  const file = $('job-file').files[0];
  setFieldError('job-file', '');
  $('job-file-chosen').textContent = file ? `Chosen: ${file.name}` : '';
  if (file && !file.name.endsWith('.js')) {
    setFieldError('job-file', `Only .js files can be used; ${file.name} is not one.`);
  }
}

async function downloadScript() {
  if (!current?.step) return;
  try {
    const step = await api('GET', `/api/v1/steps/${encodeURIComponent(current.step)}`);
    const url = URL.createObjectURL(new Blob([step.data ?? ''], { type: 'text/javascript' }));
    const a = el('a', { href: url, download: `${current.step}.js`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (err) {
    if (!err.handled) showBanner('job-error', messageOf(err));
  }
}

// ---------------------------------------------------------------- save

function setFieldError(id, message) {
  const note = $(`${id}-error`);
  if (note) note.textContent = message;
  const input = id === 'job-trigger' ? $('job-trigger-scheduled') : $(id);
  if (!input) return;
  if (message) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

function setButtons(enabled) {
  for (const id of ['job-run-close', 'job-save', 'job-save-close', 'job-cancel']) $(id).disabled = !enabled;
}

// Everything the browser can judge before anything is sent. Returns the
// first input with a problem, or null.
function checkForm() {
  const problems = [];
  const fail = (id, message) => {
    setFieldError(id, message);
    problems.push(id === 'job-trigger' ? 'job-trigger-scheduled' : id);
  };
  if (!$('job-name').value.trim()) fail('job-name', 'Job Name is mandatory.');
  else if (!current && !slug($('job-name').value)) fail('job-name', 'Job Name needs at least one letter or digit.');
  const file = $('job-file').files[0];
  if (file && !file.name.endsWith('.js')) fail('job-file', `Only .js files can be used; ${file.name} is not one.`);
  else if (!file && !current) fail('job-file', 'Upload the job\'s script (a .js file).');
  const trigger = selectedTrigger();
  if (!trigger) fail('job-trigger', 'Choose a trigger.');
  if (trigger === 'scheduled' && !keepsOtherSchedule()) {
    if (!$('job-frequency').value) fail('job-frequency', 'Frequency is mandatory.');
    const repeat = $('job-repeat').value.trim();
    if (!repeat) fail('job-repeat', 'Repeat Every is mandatory.');
    else if (!/^\d+$/.test(repeat) || Number(repeat) < 1 || Number(repeat) > 10000) {
      fail('job-repeat', 'Repeat Every must be a whole number from 1 to 10000.');
    }
    if (!$('job-start').value && !current?.storedStart) fail('job-start', 'Start On is mandatory.');
    if (!$('job-timezone').value) fail('job-timezone', 'Time zone is mandatory.');
  }
  const rows = params.rows();
  const seen = new Set();
  for (const row of rows) {
    const { name } = paramOf(row);
    const problem = !name ? 'A parameter needs a name.' : seen.has(name) ? `${name} is already a parameter.` : '';
    seen.add(name);
    if (problem) {
      const input = row.querySelector('.param-name');
      input.setAttribute('aria-invalid', 'true');
      row.querySelector('.param-error').textContent = problem;
      problems.push(input);
    }
  }
  const first = problems[0];
  return first ? (typeof first === 'string' ? $(first) : first) : null;
}

// An existing schedule of another kind (cron, ...) stays when the schedule
// fields are left empty.
function keepsOtherSchedule() {
  const other = current?.schedules.length && !(current.schedules.length === 1
    && current.schedules[0].schedule?.schedule_type === 'interval');
  return Boolean(other) && !$('job-frequency').value && !$('job-repeat').value && !$('job-start').value;
}

async function save(then) {
  if (busy) return;
  for (const id of FIELD_ERRORS) setFieldError(id, '');
  params.rows().forEach(clearParamError);
  showBanner('job-error', '');
  const bad = checkForm();
  if (bad) {
    showBanner('job-error', 'Some fields need attention; see the messages next to them.');
    bad.focus();
    return;
  }
  busy = true;
  setButtons(false);
  const seq = openSeq;
  const progress = (text) => { $('job-progress').textContent = text; };
  let stage = 'application';
  try {
    const name = current ? current.name : await freeName(slug($('job-name').value));
    const step = current ? (current.step ?? null) : name;
    const file = $('job-file').files[0];
    if (file && step) {
      stage = 'script';
      progress(`Uploading ${file.name}…`);
      await api('POST', '/api/v1/steps', {
        name: step, language: 'javascript', file_name: file.name, data: await file.text(),
      });
    }
    stage = 'application';
    progress('Saving the job…');
    const saved = await api('POST', '/api/v1/applications', documentFor(name, step));
    if (seq !== openSeq) return;
    // From here on the editor edits the stored job, even if the trigger is
    // refused below: saving again must not make a second application, and
    // the masked values just saved are locked and gone from the inputs.
    current = {
      name, doc: saved, step, multiStep: current?.multiStep ?? false, schedules: current?.schedules ?? [],
      storedStart: current?.storedStart ?? null,
    };
    fillParams(saved);
    $('job-title').textContent = 'Edit Job';
    showIdNote();
    stage = 'schedule';
    progress('Saving the trigger…');
    current.schedules = await saveTrigger(name, current.schedules);
    hooks.saved();
    if (then === 'run') {
      stage = 'run';
      progress('Starting…');
      await api('POST', `${appPath(name)}/run`);
    }
    const label = saved.friendly_name ?? name;
    if (then === 'stay') {
      // Shown again as stored: masked values locked, the file input empty.
      resetForm();
      fillForm(current);
      progress(`Saved ${label}.`);
      $('job-save').focus();
    } else {
      $('job-dialog').close();
      hooks.announce(then === 'run' ? `Saved ${label} and started it.` : `Saved ${label}.`);
    }
  } catch (err) {
    if (seq !== openSeq) return;
    progress('');
    // A lost session is handled by the sign-in-again pop-up; Save again after it.
    if (!err.handled) showServerErrors(err, stage);
  } finally {
    busy = false;
    if (seq === openSeq) setButtons(true);
  }
}

// A new job's application name: its slug, or the slug with -2, -3, …
// when an application or a step of that name exists already (the script is
// stored as a step of the same name: it must not become a new version of a
// step other applications run).
async function freeName(base) {
  const [apps, steps] = await Promise.all([api('GET', '/api/v1/applications'), api('GET', '/api/v1/steps')]);
  const taken = new Set([...(Array.isArray(apps) ? apps : []), ...(Array.isArray(steps) ? steps : [])]
    .map((a) => a.name));
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  return name;
}

function documentFor(name, step) {
  const doc = current ? structuredClone(current.doc) : { name, steps: [{ name: 'script', file: step }] };
  for (const key of READ_BACK_KEYS) delete doc[key];
  doc.name = name;
  doc.friendly_name = $('job-name').value.trim();
  const description = $('job-description').value.trim();
  if (description) doc.description = description;
  else delete doc.description;
  const trigger = selectedTrigger();
  if (trigger === 'automated') doc.automated = true;
  else delete doc.automated;
  // Keys the editor does not show (description, required, …) stay as they were.
  const before = new Map((Array.isArray(doc.app_variables) ? doc.app_variables : []).map((v) => [v.name, v]));
  doc.app_variables = params.rows().map((row) => {
    const p = paramOf(row);
    const entry = { ...(before.get(p.name) ?? {}), name: p.name, value: p.value };
    if (p.type === 'masked') entry.encrypted = true;
    else delete entry.encrypted;
    return entry;
  });
  return doc;
}

// Puts the trigger's schedule in place and returns the job's schedules.
async function saveTrigger(name, existing) {
  const trigger = selectedTrigger();
  if (trigger === 'scheduled' && keepsOtherSchedule()) return existing;
  let keep = [];
  if (trigger === 'scheduled') {
    const [first] = existing;
    const body = {
      application_id: name,
      enabled: first ? first.enabled !== false : true,
      timezone: $('job-timezone').value,
      schedule: {
        schedule_type: 'interval',
        schedule_info: {
          frequency: $('job-frequency').value,
          repeat_every: Number($('job-repeat').value),
          start_on: $('job-start').value || current?.storedStart,
        },
      },
    };
    if (first) body.id = first.id;
    keep = [await api('POST', '/api/v1/schedule', body)];
  }
  const drop = existing.filter((s) => !keep.some((k) => k.id === s.id));
  for (const s of drop) await api('DELETE', `/api/v1/schedule/${encodeURIComponent(s.id)}`);
  return keep;
}

function showServerErrors(err, stage) {
  const unplaced = [];
  let first = null;
  const rows = params.rows();
  for (const d of err.details) {
    const field = d.field ?? '';
    const input = field.startsWith('app_variables[') ? placeParamError(rows, field, d.message) : null;
    if (input) {
      first ??= input;
      continue;
    }
    // A step upload's `name` is the script's step name, not the Job Name.
    const target = stage === 'script' && field === 'name' ? 'job-file'
      : SERVER_FIELDS.find(([re]) => re.test(field))?.[1];
    if (target) {
      const note = $(`${target}-error`);
      setFieldError(target, [note.textContent, d.message].filter(Boolean).join('; '));
      first ??= target === 'job-trigger' ? $('job-trigger-scheduled') : $(target);
    } else {
      unplaced.push(field ? `${field}: ${d.message}` : d.message);
    }
  }
  const saved = {
    schedule: ' The job itself was saved; fix the trigger and save again.',
    run: ' The job was saved but could not be started.',
  }[stage] ?? '';
  showBanner('job-error', `${err.message}${unplaced.length ? ` (${unplaced.join('; ')})` : ''}${saved}`);
  (first ?? $('job-save')).focus();
}
