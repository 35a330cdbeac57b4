// The web UI in a real browser (playwright-core driving Debian's Chromium)
// against a real `junction serve`, as a person uses it. Run by the Rust test
// `the_web_ui_works_in_a_real_browser` (crates/junction-cli/tests/cli.rs),
// which starts the server, prepares the jobs and passes:
//   JUNCTION_URL, JUNCTION_TOKEN, SHOTS (a directory for screenshots).
// Exits non-zero with the failed step on stderr.

const assert = require('assert');
const { chromium } = require('playwright-core');

const URL = process.env.JUNCTION_URL;
const TOKEN = process.env.JUNCTION_TOKEN;
const SHOTS = process.env.SHOTS;

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await ctx.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // Chromium reports every non-2xx answer as a console error; the page
    // itself must log none (400 comes from the refused parameter below).
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[013]/.test(m.text())) problems.push(`console: ${m.text()}`);
    });

    // Sign in: a wrong token is refused next to the form, the right one opens the grid.
    await page.goto(`${URL}/`);
    await page.waitForSelector('#signin-token', { state: 'visible' });
    await page.fill('#signin-token', 'jct_not-a-token');
    await page.click('#signin-submit');
    await page.waitForFunction(() => document.querySelector('#signin-token-error').textContent.trim() !== '');
    await page.fill('#signin-token', TOKEN);
    await page.click('#signin-submit');
    await page.waitForSelector('tr[data-job="hello-job"]');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/grid.png` });

    const row = 'tr[data-job="hello-job"]';
    assert.match(await page.innerText(`${row} .last-run`), /SUCCESS/);
    assert.match(await page.innerText(`${row} .next-run`), /^in /);
    assert.ok(await page.getAttribute(`${row} .last-run time`, 'title'), 'UTC time on hover');

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
    assert.ok(!(await page.content()).includes(TOKEN), 'the token is never in the page');
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
    assert.ok(!(await page.content()).includes('super-secret-value-42'), 'a masked value is never in the page');
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

    // A narrow window still works.
    await page.setViewportSize({ width: 390, height: 800 });
    await page.click('#refresh');
    await page.waitForSelector(row);

    // Sign out: back to the sign-in form.
    await page.click('#signout');
    await page.waitForSelector('#signin-token', { state: 'visible' });
    assert.deepStrictEqual(problems, []);
  } finally {
    await browser.close();
  }
}

main().then(
  () => console.log('browser tests passed'),
  (e) => {
    console.error(e && e.stack ? e.stack : e);
    process.exit(1);
  },
);
