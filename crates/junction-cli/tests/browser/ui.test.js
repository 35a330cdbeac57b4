// The web UI in a real browser (playwright-core driving Debian's Chromium)
// against a real `junction serve`, as a person uses it. Run by the Rust test
// `the_web_ui_works_in_a_real_browser` (crates/junction-cli/tests/cli.rs),
// which starts the server, prepares the jobs and passes:
//   JUNCTION_URL, JUNCTION_TOKEN, SHOTS (a directory for screenshots).
// Exits non-zero with the failed step on stderr.

const assert = require('assert');
const {
  URL, TOKEN, SHOTS, request, api, launch, openPage, waitForText, assertLocalTime, assertNoSidewaysScroll, run,
} = require('./common');

// Failed requests this suite causes on purpose.
const EXPECTED_FAILURES = [
  [401, '/api/v1/session'], // the probe before sign-in, and the wrong token
  [400, '/api/v1/global-parameters'], // the duplicate parameter name
  [401, '/api/v1/applications'], // the save after the session's token was revoked
  [401, '/api/v1/steps'], // (the same save)
];

async function main() {
  const browser = await launch();
  try {
    const { ctx, page, problems, assertNowhere } = await openPage(browser, EXPECTED_FAILURES);

    // Sign in: a wrong token is refused next to the form, the right one opens the grid.
    await page.goto(`${URL}/`);
    await page.waitForSelector('#signin-token', { state: 'visible' });
    await page.fill('#signin-token', 'jct_not-a-token');
    await page.click('#signin-submit');
    await page.waitForFunction(() => document.querySelector('#signin-token-error').textContent.trim() !== '');
    await page.fill('#signin-token', TOKEN);
    await page.click('#signin-submit');
    await page.waitForSelector('tr[data-job="hello-job"]');

    const row = 'tr[data-job="hello-job"]';
    assert.match(await page.innerText(`${row} .last-run`), /SUCCESS/);
    assert.match(await page.innerText(`${row} .next-run`), /^in /);
    await assertLocalTime(page, `${row} .last-run time`);

    // + New Job: mandatory fields are marked and refused with messages next to them.
    await page.click('#new-job');
    await page.waitForSelector('#job-dialog[open]');
    await page.click('#job-save-close');
    for (const id of ['job-name', 'job-file', 'job-trigger']) {
      assert.notStrictEqual((await page.innerText(`#${id}-error`)).trim(), '', `${id} is mandatory`);
    }
    assert.strictEqual(await page.getAttribute('#job-name', 'aria-invalid'), 'true');
    await page.fill('#job-name', 'Nightly Sync');
    assert.match(await page.innerText('#job-id-note'), /nightly-sync/);
    await page.fill('#job-description', 'Copies tickets every two hours');
    const jobParam = '#job-params-body tr:last-child';
    await page.click('#job-params-add');
    await page.fill(`${jobParam} .param-name`, 'region');
    await page.fill(`${jobParam} .param-value`, 'eu');
    await page.click('#job-params-add');
    await page.fill(`${jobParam} .param-name`, 'apiKey');
    await page.selectOption(`${jobParam} .param-type`, 'masked');
    await page.fill(`${jobParam} .param-value`, 'masked-secret-77');
    // Only .js files: the browser says so at once...
    await page.setInputFiles('#job-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('hi') });
    assert.match(await page.innerText('#job-file-error'), /Only \.js files/);
    // ...and the server refuses other files on its own.
    const refused = await request('POST', '/api/v1/steps',
      { name: 'notes', language: 'javascript', file_name: 'notes.txt', data: 'module.exports = {}' });
    assert.strictEqual(refused.status, 400);
    assert.strictEqual(refused.body.error.details[0].field, 'file_name');
    const script = "module.exports = { run: async (args) => {\n"
      // The script compares the key reversed, so the secret itself is nowhere in its source.
      + "  const key = [...String(args.arguments.apiKey)].reverse().join('');\n"
      + "  console.log('sync', args.arguments.region, key === '77-terces-deksam' ? 'key-ok' : 'key-missing');\n"
      + "  return 'synced'; } };\n";
    await page.setInputFiles('#job-file', { name: 'sync.js', mimeType: 'text/javascript', buffer: Buffer.from(script) });
    assert.strictEqual((await page.innerText('#job-file-error')).trim(), '');
    await page.check('#job-trigger-scheduled');
    await page.selectOption('#job-frequency', 'Hourly');
    await page.fill('#job-repeat', '0');
    await page.fill('#job-start', '2026-01-01T08:00');
    await page.selectOption('#job-timezone', 'Europe/Berlin');
    await page.click('#job-save');
    assert.match(await page.innerText('#job-repeat-error'), /1 to 10000/);
    await page.fill('#job-repeat', '2');
    assert.ok(!(await page.content()).includes('masked-secret-77'), 'a typed masked value is not in the HTML');
    // Run & Close: saved, started, and the grid shows it.
    await page.click('#job-run-close');
    await page.waitForSelector('#job-dialog', { state: 'hidden' });
    const nightly = 'tr[data-job="nightly-sync"]';
    await page.waitForSelector(nightly);
    assert.match(await page.innerText(`${nightly} .schedule`), /2 hours/);
    assert.match(await page.innerText(`${nightly} .next-run`), /^(in |Running)/);
    await waitForText(page, `${nightly} .last-run`, /SUCCESS/, '#refresh');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/grid.png` });
    await page.click(`${nightly} button.history`);
    await page.waitForSelector('#history-body tr[data-run] a.log');
    const [syncLog] = await Promise.all([ctx.waitForEvent('page'), page.click('#history-body a.log')]);
    await syncLog.waitForLoadState();
    assert.match(await syncLog.innerText('body'), /\[LOG\] – sync eu key-ok/);
    await syncLog.close();
    await page.keyboard.press('Escape');

    // Edit by clicking the Job Name: the stored job, the masked value locked and never in the page.
    await page.click(`${nightly} button.job-edit`);
    await page.waitForFunction(() => document.querySelector('#job-name').value === 'Nightly Sync');
    assert.strictEqual(await page.inputValue('#job-frequency'), 'Hourly');
    assert.strictEqual(await page.inputValue('#job-repeat'), '2');
    assert.strictEqual(await page.inputValue('#job-start'), '2026-01-01T08:00');
    assert.strictEqual(await page.inputValue('#job-timezone'), 'Europe/Berlin');
    const keyRow = await page.evaluateHandle(() => [...document.querySelectorAll('#job-params-body tr')]
      .find((r) => r.querySelector('.param-name').value === 'apiKey'));
    assert.ok(await (await keyRow.$('.param-type')).isDisabled(), 'a saved masked parameter stays masked');
    assert.strictEqual(await (await keyRow.$('.param-value')).inputValue(), '');
    await assertNowhere('masked-secret-77', 'a saved masked job parameter');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/editor.png` });
    // The download button gives back the uploaded script.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#job-script-download')]);
    assert.strictEqual(download.suggestedFilename(), 'nightly-sync.js');
    const chunks = [];
    for await (const c of await download.createReadStream()) chunks.push(c);
    assert.strictEqual(Buffer.concat(chunks).toString(), script);
    // Save keeps the pop-up open; Automated Job drops the schedule.
    await page.check('#job-trigger-automated');
    await page.click('#job-save');
    await waitForText(page, '#job-progress', /Saved Nightly Sync/);
    assert.ok(await page.isVisible('#job-dialog'));
    await page.click('#job-save-close');
    await page.waitForSelector('#job-dialog', { state: 'hidden' });
    await waitForText(page, `${nightly} .schedule`, /Automated Job/, '#refresh');
    assert.match(await page.innerText(`${nightly} .next-run`), /Disabled/);
    const stored = await api('GET', '/api/v1/applications/nightly-sync');
    assert.strictEqual(stored.automated, true);
    assert.deepStrictEqual(stored.app_variables.map((v) => [v.name, v.value, v.encrypted ?? false]),
      [['region', 'eu', false], ['apiKey', null, true]]);

    // History and the log in a new tab, without a token.
    await page.click(`${row} button.history`);
    await page.waitForSelector('#history-body tr[data-run]');
    const [tab] = await Promise.all([ctx.waitForEvent('page'), page.click('#history-body a.log')]);
    await tab.waitForLoadState();
    assert.match(await tab.innerText('body'), /\[LOG\] – hello world/);
    await tab.close();
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/history.png` });
    await page.keyboard.press('Escape');

    // A long job is stopped from the grid's red Stop button.
    const slow = 'tr[data-job="slow-job"]';
    await page.click('#refresh');
    await page.waitForSelector(`${slow} button.stop`);
    await page.click(`${slow} button.stop`);
    await page.waitForFunction((sel) => !document.querySelector(`${sel} button.stop`), slow, { timeout: 20000 });
    await page.click(`${slow} button.history`);
    await page.waitForSelector('#history-body tr[data-run]');
    assert.match(await page.innerText('#history-body'), /REVOKED/);
    const [logTab] = await Promise.all([ctx.waitForEvent('page'), page.click('#history-body a.log')]);
    await logTab.waitForLoadState();
    assert.match(await logTab.innerText('body'), /Job was stopped by user/);
    await logTab.close();
    await page.keyboard.press('Escape');

    // A running instance is stopped from History too.
    await page.click(`${slow} button.menu-button`);
    await page.click('#job-menu-run');
    await page.waitForSelector(`${slow} button.stop`);
    await page.click(`${slow} button.history`);
    await page.waitForSelector('#history-body button.stop-run');
    await page.click('#history-body button.stop-run');
    await waitForText(page, '#history-body', /^(?![\s\S]*(STARTED|PENDING))[\s\S]*REVOKED[\s\S]*REVOKED/,
      '#history-refresh');
    assert.strictEqual(await page.locator('#history-body button.stop-run').count(), 0);
    await page.keyboard.press('Escape');

    // The Enabled toggle.
    await page.click(`${row} input.enabled`);
    await page.waitForFunction((sel) => document.querySelector(`${sel} .next-run`).textContent.includes('Disabled'), row);

    // Delete, after confirming.
    await page.click(`${slow} button.menu-button`);
    await page.click('#job-menu-delete');
    await page.waitForSelector('#confirm-dialog[open]');
    await page.click('#confirm-yes');
    await page.waitForFunction((sel) => !document.querySelector(sel), slow);

    // Nothing secret in the page or its storage; no errors.
    await assertNowhere(TOKEN, 'the API token');
    assert.strictEqual(await page.evaluate(() => localStorage.length + sessionStorage.length), 0);

    // Global Parameters: a String one and a masked one, saved as a whole list.
    await page.click('#open-params');
    await page.waitForSelector('#params-dialog[open]');
    await page.waitForFunction(() => !document.querySelector('#params-save').disabled);
    await page.click('#params-add');
    const last = '#params-body tr:last-child';
    await page.fill(`${last} .param-name`, 'JiraUrl');
    await page.fill(`${last} .param-value`, 'https://jira.example');
    await page.click('#params-add');
    await page.fill(`${last} .param-name`, 'JiraToken');
    await page.selectOption(`${last} .param-type`, 'masked');
    assert.strictEqual(await page.getAttribute(`${last} .param-value`, 'type'), 'password');
    await page.fill(`${last} .param-value`, 'super-secret-value-42');
    await page.click('#params-save');
    await page.waitForSelector('#params-dialog', { state: 'hidden' });

    // Reopened: the String value is shown, the masked one nowhere, and its type is locked.
    await page.click('#open-params');
    await page.waitForSelector('#params-body tr');
    const paramRow = async (name) => page.evaluateHandle((n) => [...document.querySelectorAll('#params-body tr')]
      .find((r) => r.querySelector('.param-name').value === n), name);
    const url = await paramRow('JiraUrl');
    assert.strictEqual(await (await url.$('.param-value')).inputValue(), 'https://jira.example');
    const token = await paramRow('JiraToken');
    assert.ok(await (await token.$('.param-type')).isDisabled(), 'a masked type cannot be reverted');
    assert.strictEqual(await (await token.$('.param-value')).inputValue(), '');
    assert.strictEqual(await (await token.$('.param-value')).getAttribute('placeholder'), 'unchanged');
    assert.match(await (await token.$('.masked-value')).innerText(), /\(masked\)/);
    await assertNowhere('super-secret-value-42', 'a saved masked global parameter');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/params.png` });
    // Saving again untouched keeps the masked value (sent as null).
    await page.click('#params-save');
    await page.waitForSelector('#params-dialog', { state: 'hidden' });
    const saved = await page.evaluate(() => fetch('/api/v1/global-parameters').then((r) => r.json()));
    assert.deepStrictEqual(saved, [
      { name: 'JiraUrl', type: 'string', value: 'https://jira.example' },
      { name: 'JiraToken', type: 'masked', value: null },
    ]);
    // A bad name is refused next to its row; Escape cancels.
    await page.click('#open-params');
    await page.waitForSelector('#params-body tr');
    await page.click('#params-add');
    await page.fill(`${last} .param-name`, 'JiraUrl');
    await page.click('#params-save');
    await page.waitForSelector('#params-error:not([hidden])');
    assert.notStrictEqual((await page.innerText(`${last} .param-error`)).trim(), '');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#params-dialog', { state: 'hidden' });

    // Settings: Enable Automated Jobs.
    await page.click('#open-settings');
    await page.waitForSelector('#setting-automated:not([disabled])');
    assert.strictEqual(await page.isChecked('#setting-automated'), false);
    await page.check('#setting-automated');
    await page.waitForFunction(() => /Saved/.test(document.querySelector('#settings-status').textContent));
    const settings = await page.evaluate(() => fetch('/api/v1/settings').then((r) => r.json()));
    assert.strictEqual(settings.automated_jobs_enabled, true);
    await page.click('#settings-close');
    await page.waitForSelector('#settings-dialog', { state: 'hidden' });

    // A session that ends while the editor is open asks to sign in again
    // over it; what was typed is kept and saves afterwards.
    const temp = await api('POST', '/api/v1/tokens', { name: 'ui-temp', role: 'admin' });
    await page.click('#signout');
    await page.fill('#signin-token', temp.token);
    await page.click('#signin-submit');
    await page.waitForSelector(row);
    await page.click('#new-job');
    await page.fill('#job-name', 'Kept Work');
    await page.setInputFiles('#job-file', { name: 'kept.js', mimeType: 'text/javascript', buffer: Buffer.from(script) });
    await page.check('#job-trigger-manual');
    await api('DELETE', `/api/v1/tokens/${temp.id}`);
    await page.click('#job-save-close');
    await page.waitForSelector('#reauth-dialog[open]');
    assert.ok(await page.isVisible('#job-dialog'), 'the editor stays open under the sign-in');
    await page.fill('#reauth-token', TOKEN);
    await page.click('#reauth-submit');
    await page.waitForSelector('#reauth-dialog', { state: 'hidden' });
    assert.strictEqual(await page.inputValue('#job-name'), 'Kept Work');
    await page.click('#job-save-close');
    await page.waitForSelector('#job-dialog', { state: 'hidden' });
    await page.waitForSelector('tr[data-job="kept-work"]');

    // A narrow window still works: nothing sticks out sideways, and the
    // action menu opens and is reachable.
    await page.setViewportSize({ width: 390, height: 800 });
    await page.click('#refresh');
    await page.waitForSelector(row);
    await assertNoSidewaysScroll(page);
    // (A person scrolls the table to the button first; a scroll closes the menu.)
    await page.locator(`${row} button.menu-button`).scrollIntoViewIfNeeded();
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    await page.click(`${row} button.menu-button`);
    await page.waitForSelector('#job-menu:not([hidden])');
    const menuBox = await page.locator('#job-menu').boundingBox();
    assert.ok(menuBox.x >= 0 && menuBox.x + menuBox.width <= 390, 'the menu fits the window');
    await page.keyboard.press('Escape');
    await page.waitForSelector('#job-menu', { state: 'hidden' });
    // The job editor fits too: nothing in it is wider than the pop-up.
    await page.click('#new-job');
    await page.check('#job-trigger-scheduled');
    const fits = await page.$eval('#job-form', (f) => f.scrollWidth <= f.clientWidth);
    assert.ok(fits, 'the job editor fits a narrow window');
    await page.click('#job-cancel');
    await page.waitForSelector('#job-dialog', { state: 'hidden' });

    // Sign out: back to the sign-in form.
    await page.click('#signout');
    await page.waitForSelector('#signin-token', { state: 'visible' });

    // A viewer sees the grid but is not offered what its role cannot do.
    await page.setViewportSize({ width: 1280, height: 800 });
    const viewer = await api('POST', '/api/v1/tokens', { name: 'ui-viewer', role: 'viewer' });
    await page.fill('#signin-token', viewer.token);
    await page.click('#signin-submit');
    await page.waitForSelector(row);
    assert.strictEqual(await page.innerText('#session-role'), 'viewer');
    assert.ok(!(await page.isVisible('#new-job')), 'no + New Job for a viewer');
    assert.ok(!(await page.isVisible(`${row} button.menu-button`)), 'no action menu for a viewer');
    assert.ok(await page.isDisabled(`${row} input.enabled`), 'the toggle is read-only for a viewer');
    assert.ok(await page.isVisible(`${row} button.history`), 'history is still there');
    await page.click(`${nightly} button.job-edit`);
    await page.waitForFunction(() => document.querySelector('#job-name').value === 'Nightly Sync');
    assert.ok(!(await page.isVisible('#job-save')), 'no Save for a viewer');
    await page.click('#job-cancel');
    await page.click('#signout');
    await page.waitForSelector('#signin-token', { state: 'visible' });
    assert.deepStrictEqual(problems, []);
  } finally {
    await browser.close();
  }
}

run(main);
