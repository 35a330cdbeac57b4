// The Applications and Configurations pages in a real browser (playwright-core
// driving Debian's Chromium) against a fresh `junction serve`. Run by the Rust
// test `the_application_pages_work_in_a_real_browser` (crates/junction-cli/
// tests/cli.rs), which passes JUNCTION_URL, JUNCTION_TOKEN (an admin token)
// and SHOTS (a directory for screenshots). The script creates what it needs
// through the API.
//
// No sleeps: a step that must be seen running waits on a gate, an HTTP
// server started here that holds its answer until the test releases it.
// Every wait is bounded by playwright's timeouts.

const assert = require('assert');
const http = require('http');
const {
  URL, TOKEN, SHOTS, api, launch, openPage, signIn, assertLocalTime, assertNoSidewaysScroll, run,
} = require('./common');

// Failed requests this suite causes on purpose.
const EXPECTED_FAILURES = [
  [401, '/api/v1/session'], // the probe before sign-in
  [404, '/api/v1/applications/no-such-app'], // the unknown application's page
  [400, '/api/v1/configurations'], // the refused entry name
];

const SECRET_VAR = 'topsecret-apikey-9';
const SECRET_ENTRY = 'hunter2-secret-77';

// A gate on 127.0.0.1: while closed, each request is held unanswered.
function startGate() {
  let open = false;
  const held = new Set();
  const server = http.createServer((req, res) => {
    if (open) return res.end('open');
    held.add(res);
    res.on('close', () => held.delete(res));
  });
  const answerAll = () => [...held].forEach((r) => r.end('open'));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    url: `http://127.0.0.1:${server.address().port}/gate`,
    hold() { open = false; },
    release() { open = true; answerAll(); },
    close() {
      open = true;
      answerAll();
      server.closeAllConnections();
      return new Promise((done) => server.close(done));
    },
  })));
}

async function prepare(gate) {
  const steps = {
    gate_step: "module.exports = { run: async (args) => { const r = await fetch(args.arguments.gate); console.log('gate said', await r.text()); return 'through the gate'; } };",
    ok_step: "module.exports = { run: async (args) => { console.log('ok step', args.arguments.note || ''); return 'ok'; } };",
    fail_step: "module.exports = { run: async () => { throw new Error('boom on purpose'); } };",
    check_secret: "module.exports = { run: async (args) => { if (String(args.arguments.pw).split('').reverse().join('') !== args.arguments.expect_reversed) throw new Error('the secret changed'); return 'secret kept'; } };",
  };
  for (const [name, data] of Object.entries(steps)) await api('POST', '/api/v1/steps', { name, data });
  await api('POST', '/api/v1/applications', {
    name: 'diamond',
    friendly_name: 'Diamond flow',
    description: 'Fans out to two steps and joins them again',
    app_variables: [
      { name: 'gate', value: gate.url },
      { name: 'greeting', value: 'hello' },
      { name: 'api_key', value: SECRET_VAR, encrypted: true },
    ],
    steps: [
      { name: 'a', file: 'ok_step', note: 'first', output_to: ['b', 'c'] },
      { name: 'b', file: 'gate_step', output_to: ['d'] },
      { name: 'c', file: 'ok_step', output_to: ['d'] },
      { name: 'd', file: 'ok_step', note: 'last' },
    ],
  });
  await api('POST', '/api/v1/applications', {
    name: 'broken',
    friendly_name: 'Broken flow',
    steps: [
      { name: 'prepare', file: 'ok_step', output_to: ['explode'] },
      { name: 'explode', file: 'fail_step' },
    ],
  });
}

async function main() {
  const gate = await startGate();
  const browser = await launch();
  try {
    const { ctx, page, problems, assertNowhere } = await openPage(browser, EXPECTED_FAILURES);
    const box = (step) => `#dag g.dag-step[data-step="${step}"]`;
    const stepClass = (step) => page.getAttribute(box(step), 'class');
    const newRunId = async (previous) => {
      const handle = await page.waitForFunction((prev) => {
        const id = document.querySelector('#dag')?.dataset.run;
        return id && id !== prev ? id : null;
      }, previous);
      return handle.jsonValue();
    };

    // Signed in on an empty store: the list says what to do next.
    await page.goto(`${URL}/#/applications`);
    await signIn(page);
    await page.waitForSelector('#apps-empty', { state: 'visible' });
    assert.match(await page.innerText('#apps-empty'), /junction apps upload FILE/);

    // With applications: the list links to each page.
    await prepare(gate);
    await page.click('#apps-refresh');
    await page.waitForSelector('#apps-body tr[data-app="diamond"]');
    assert.strictEqual(await page.locator('#apps-body tr[data-app]').count(), 2);
    const diamondRow = '#apps-body tr[data-app="diamond"]';
    assert.strictEqual((await page.innerText(`${diamondRow} .app-steps`)).trim(), '4');
    assert.match(await page.innerText(diamondRow), /Fans out/);
    await assertLocalTime(page, `${diamondRow} time`);
    assert.strictEqual(await page.getAttribute(`${diamondRow} a`, 'href'), '#/applications/diamond');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/applications.png` });

    // The application page: heading, the DAG with every box and arrow.
    await page.click(`${diamondRow} a`);
    await page.waitForSelector('#dag g.dag-step');
    assert.strictEqual((await page.innerText('#app-heading')).trim(), 'Diamond flow');
    assert.strictEqual(await page.evaluate(() => document.activeElement?.id), 'app-heading');
    assert.strictEqual(await page.locator('#dag g.dag-step').count(), 4);
    const edges = await page.$$eval('#dag path.dag-edge', (ps) => ps.map((p) => `${p.dataset.from}>${p.dataset.to}`).sort());
    assert.deepStrictEqual(edges, ['a>b', 'a>c', 'b>d', 'c>d']);
    const rects = await page.$$eval('#dag g.dag-step', (gs) => Object.fromEntries(gs.map((g) => {
      const r = g.getBoundingClientRect();
      return [g.dataset.step, { x: Math.round(r.x), y: Math.round(r.y) }];
    })));
    assert.ok(rects.a.x < rects.b.x && rects.b.x === rects.c.x && rects.c.x < rects.d.x, JSON.stringify(rects));
    assert.notStrictEqual(rects.b.y, rects.c.y);
    assert.match(await page.getAttribute(box('a'), 'aria-label'), /^step a: not run yet$/);
    // Steps table: file, parameters, outputs; the declared details arrive once.
    await page.waitForFunction(() => /version 1/.test(document.querySelector('#steps-body tr[data-step="a"] .step-version')?.textContent));
    assert.match(await page.innerText('#steps-body tr[data-step="a"]'), /ok_step[\s\S]*note = first[\s\S]*b, c/);
    // Variables: the encrypted one is masked, its value nowhere.
    assert.match(await page.innerText('#vars-table tr[data-var="api_key"]'), /\(masked\)/);
    assert.match(await page.innerText('#vars-table tr[data-var="greeting"]'), /hello/);
    await assertNowhere(SECRET_VAR, 'an encrypted variable');

    // Run: b waits on the closed gate, so it is seen running (blue)...
    await page.click('#app-run');
    const runId = await newRunId('');
    await page.waitForFunction(() => /Run isapp-\S+ started/.test(document.querySelector('#app-status').textContent));
    await page.waitForSelector(`${box('b')}.step-running`);
    assert.match(await stepClass('a'), /step-success/);
    assert.match(await stepClass('d'), /step-queued/);
    assert.strictEqual(await page.getAttribute(box('b'), 'aria-label'), 'step b: running');
    assert.match(await page.textContent(`${box('b')} .dag-state`), /Running/);
    assert.ok(await page.isVisible('#app-stop'), 'Stop is offered while the run goes');
    await page.waitForFunction((id) => /STARTED/.test(document.querySelector(`#runs-body tr[data-run="${id}"]`)?.textContent), runId);
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/application-running.png` });
    // ...then released, every box turns green and the run ends.
    gate.release();
    await page.waitForFunction(() => document.querySelectorAll('#dag g.dag-step.step-success').length === 4);
    await page.waitForSelector('#app-stop', { state: 'hidden' });
    await page.waitForFunction(() => /ended: SUCCESS/.test(document.querySelector('#app-status').textContent));
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/application.png`, fullPage: false });

    // Run history: the run, its state, a log that opens in a new tab.
    const first = '#runs-body tr:first-child';
    await page.waitForFunction((id) => {
      const row = document.querySelector('#runs-body tr:first-child');
      return row?.dataset.run === id && /SUCCESS/.test(row.textContent);
    }, runId);
    assert.match(await page.innerText(`${first} .run-level`), /Info/);
    const [tab] = await Promise.all([ctx.waitForEvent('page'), page.click(`${first} a.run-log`)]);
    await tab.waitForLoadState();
    assert.match(await tab.innerText('body'), /ok step first/);
    assert.match(await tab.innerText('body'), /gate said open/);
    await tab.close();

    // Debug Run: log level 10.
    await page.click('#app-debug-run');
    const debugId = await newRunId(runId);
    assert.strictEqual((await api('GET', `/api/v1/tasks/${debugId}`)).log_level, 10);
    await page.waitForSelector('#dag[data-state="SUCCESS"]');

    // Custom Run: a log level, a variable's value and a one-time parameter.
    await page.click('#app-custom-run');
    await page.waitForSelector('#custom-run-dialog[open]');
    assert.strictEqual(await page.evaluate(() => document.activeElement?.id), 'custom-level');
    await page.selectOption('#custom-level', '30');
    const varInput = (name) => page.locator('#custom-body tr', { has: page.locator(`code:text-is("${name}")`) }).locator('.param-value');
    assert.strictEqual(await varInput('greeting').inputValue(), 'hello');
    assert.strictEqual(await varInput('api_key').inputValue(), '');
    assert.strictEqual(await varInput('api_key').getAttribute('type'), 'password');
    await varInput('greeting').fill('custom hello');
    await page.click('#custom-add');
    await page.fill('#custom-body tr:last-child .param-name', 'extra_note');
    await page.fill('#custom-body tr:last-child .param-value', 'one-time');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/custom-run.png` });
    await page.click('#custom-start');
    await page.waitForSelector('#custom-run-dialog', { state: 'hidden' });
    const customId = await newRunId(debugId);
    const custom = await api('GET', `/api/v1/tasks/${customId}`);
    assert.strictEqual(custom.log_level, 30);
    assert.strictEqual(custom.app_vars.greeting, 'custom hello');
    assert.strictEqual(custom.app_vars.extra_note, 'one-time');
    assert.strictEqual(custom.app_vars.gate, gate.url, 'untouched values are left to the application');
    await page.waitForSelector('#dag[data-state="SUCCESS"]');
    await page.waitForFunction((id) => document.querySelector('#runs-body tr:first-child')?.dataset.run === id, customId);
    assert.match(await page.innerText(`${first} .run-level`), /Warning/);

    // Stop: a run held at the gate is stopped from the page.
    gate.hold();
    await page.click('#app-run');
    const stopId = await newRunId(customId);
    await page.waitForSelector(`${box('b')}.step-running`);
    await page.waitForSelector(`#runs-body tr[data-run="${stopId}"] button.stop-run`);
    await page.click('#app-stop');
    await page.waitForSelector('#dag[data-state="REVOKED"]');
    assert.match(await stepClass('b'), /step-warning/);
    assert.match(await page.getAttribute(box('b'), 'aria-label'), /stopped/);
    await page.waitForFunction((id) => {
      const row = document.querySelector(`#runs-body tr[data-run="${id}"]`);
      return row && /REVOKED/.test(row.textContent) && !row.querySelector('button.stop-run');
    }, stopId);
    gate.release();
    assert.strictEqual(await page.locator('#runs-body tr[data-run]').count(), 4);

    // A failing step is red, with its state in words.
    await page.click('.crumbs a');
    await page.waitForSelector('#apps-body tr[data-app="broken"] a');
    await page.click('#apps-body tr[data-app="broken"] a');
    await page.waitForSelector('#dag g.dag-step[data-step="explode"]');
    await page.click('#app-run');
    await page.waitForSelector(`${box('explode')}.step-failure`);
    assert.match(await stepClass('prepare'), /step-success/);
    assert.strictEqual(await page.getAttribute(box('explode'), 'aria-label'), 'step explode: failed');
    assert.match(await page.textContent(`${box('explode')} .dag-state`), /Failed/);
    await page.waitForSelector('#dag[data-state="FAILURE"]');
    await page.waitForSelector('#steps-body tr[data-step="explode"] .state-failure');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/application-failure.png` });

    // An unknown application says so and links back.
    await page.evaluate(() => { location.hash = '#/applications/no-such-app'; });
    await page.waitForSelector('.not-found a[href="#/applications"]');
    assert.match(await page.innerText('#app-heading'), /not found/i);

    // A narrow window: the graph keeps its size and scrolls sideways, the page does not.
    await page.setViewportSize({ width: 390, height: 800 });
    await page.evaluate(() => { location.hash = '#/applications/diamond'; });
    await page.waitForSelector('#dag[data-run]:not([data-run=""])');
    assert.strictEqual(await page.locator('#dag g.dag-step').count(), 4);
    const narrow = await page.$eval('#dag', (d) => ({ scroll: d.scrollWidth, client: d.clientWidth }));
    assert.ok(narrow.scroll > narrow.client, `the graph scrolls: ${JSON.stringify(narrow)}`);
    assert.ok(await page.isVisible(box('a')));
    await assertNoSidewaysScroll(page);
    await page.$eval('#dag', (d) => { d.scrollLeft = d.scrollWidth; });
    await page.waitForFunction(() => {
      const d = document.querySelector('#dag').getBoundingClientRect();
      const r = document.querySelector('#dag g.dag-step[data-step="d"]').getBoundingClientRect();
      return r.right <= d.right + 1 && r.left >= d.left - 1;
    });
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/application-narrow.png` });
    await page.setViewportSize({ width: 1280, height: 800 });

    // Configurations: empty first.
    await page.evaluate(() => { location.hash = '#/configurations'; });
    await page.waitForSelector('#configs-heading');
    await page.waitForSelector('#configs-loading', { state: 'hidden' });
    assert.deepStrictEqual(await api('GET', '/api/v1/configurations'), [], 'the store is fresh');
    assert.ok(await page.isVisible('#configs-empty'));
    assert.match(await page.innerText('#configs-empty'), /New Configuration/);
    // The Global Parameters are listed, pointing to where they are edited.
    await api('PUT', '/api/v1/global-parameters', [{ name: 'HubUrl', type: 'string', value: 'https://hub.example' }]);
    await page.click('#configs-refresh');
    await page.waitForSelector('#configs-body tr[data-config="global"]');
    assert.strictEqual(await page.locator('#configs-body tr[data-config="global"] button').count(), 0);
    assert.match(await page.innerText('#configs-body tr[data-config="global"]'), /Integration Hub → Global Parameters/);

    // + New Configuration: the name is required, next to the field.
    await page.click('#config-new');
    await page.waitForSelector('#config-dialog[open]');
    assert.strictEqual(await page.evaluate(() => document.activeElement?.id), 'config-name');
    await page.click('#config-save');
    await page.waitForFunction(() => document.querySelector('#config-name-error').textContent.trim() !== '');
    assert.strictEqual(await page.getAttribute('#config-name', 'aria-invalid'), 'true');
    await page.fill('#config-name', 'demo-config');
    await page.fill('#config-description', 'Demo settings');
    const lastEntry = '#config-body tr:last-child';
    await page.click('#config-add');
    await page.fill(`${lastEntry} .entry-name`, 'db_host');
    await page.fill(`${lastEntry} .entry-value`, 'db.example');
    await page.click('#config-add');
    await page.fill(`${lastEntry} .entry-name`, 'db_password');
    await page.check(`${lastEntry} .entry-encrypted`);
    assert.strictEqual(await page.getAttribute(`${lastEntry} .entry-value`, 'type'), 'password');
    await page.fill(`${lastEntry} .entry-value`, SECRET_ENTRY);
    // A name the server refuses: its message shows on that entry's row.
    await page.click('#config-add');
    await page.fill(`${lastEntry} .entry-name`, 'bad name');
    await page.fill(`${lastEntry} .entry-value`, 'x');
    await page.click('#config-save');
    await page.waitForSelector('#config-error:not([hidden])');
    await page.waitForFunction(() => document.querySelector('#config-body tr:nth-child(3) .entry-error').textContent.trim() !== '');
    assert.strictEqual((await page.innerText('#config-body tr:nth-child(1) .entry-error')).trim(), '');
    assert.strictEqual(await page.getAttribute('#config-body tr:nth-child(3) .entry-name', 'aria-invalid'), 'true');
    await page.click('#config-body tr:nth-child(3) .entry-delete');
    await page.click('#config-save');
    await page.waitForSelector('#config-dialog', { state: 'hidden' });
    const demoRow = '#configs-body tr[data-config="demo-config"]';
    await page.waitForSelector(demoRow);
    assert.match(await page.innerText(`${demoRow} .config-entries`), /^2 \(1 encrypted\)$/);
    await assertNowhere(SECRET_ENTRY, 'an encrypted configuration value');
    let stored = await api('GET', '/api/v1/configurations/demo-config');
    assert.deepStrictEqual(stored.configuration_data, [
      { name: 'db_host', value: 'db.example', encrypted: false },
      { name: 'db_password', value: null, encrypted: true },
    ]);

    // Reopened: the encrypted entry is locked and its value nowhere in the page.
    await page.click(`${demoRow} button.config-edit`);
    await page.waitForSelector('#config-dialog[open]');
    await page.waitForSelector('#config-body tr:nth-child(2)');
    await page.waitForSelector('#config-save:not([disabled])');
    const locked = '#config-body tr:nth-child(2)';
    assert.strictEqual(await page.inputValue(`${locked} .entry-name`), 'db_password');
    assert.strictEqual(await page.inputValue(`${locked} .entry-value`), '');
    assert.strictEqual(await page.getAttribute(`${locked} .entry-value`, 'placeholder'), 'unchanged');
    assert.ok(await page.isChecked(`${locked} .entry-encrypted`));
    assert.ok(await page.isDisabled(`${locked} .entry-encrypted`));
    assert.match(await page.innerText(`${locked} .masked-value`), /\(masked\)/);
    assert.strictEqual(await page.inputValue('#config-body tr:nth-child(1) .entry-value'), 'db.example');
    await assertNowhere(SECRET_ENTRY, 'an encrypted configuration value');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/configurations.png` });
    // Saved untouched: the sealed value is kept (a run sees it).
    await page.click('#config-save');
    await page.waitForSelector('#config-dialog', { state: 'hidden' });
    stored = await api('GET', '/api/v1/configurations/demo-config');
    assert.deepStrictEqual(stored.configuration_data[1], { name: 'db_password', value: null, encrypted: true });
    await api('POST', '/api/v1/applications', {
      name: 'secret-check', configuration: 'demo-config',
      steps: [{ name: 'check', file: 'check_secret', pw: '${config.db_password}', expect_reversed: [...SECRET_ENTRY].reverse().join('') }],
    });
    const check = await api('POST', '/api/v1/applications/secret-check/run?wait=30', {});
    assert.strictEqual(check.state, 'SUCCESS', JSON.stringify(check));

    // Delete a configuration, after confirming.
    await api('POST', '/api/v1/configurations', { name: 'temp-config', configuration_data: [] });
    await page.click('#configs-refresh');
    await page.waitForSelector('#configs-body tr[data-config="temp-config"]');
    await page.click('#configs-body tr[data-config="temp-config"] button.config-delete');
    await page.waitForSelector('#confirm-dialog[open]');
    await page.click('#confirm-yes');
    await page.waitForSelector('#configs-body tr[data-config="temp-config"]', { state: 'detached' });
    assert.ok((await api('GET', '/api/v1/configurations')).every((c) => c.name !== 'temp-config'));

    await assertNowhere(TOKEN, 'the API token');
    assert.deepStrictEqual(problems, []);
  } finally {
    await browser.close();
    await gate.close();
  }
}

run(main);
