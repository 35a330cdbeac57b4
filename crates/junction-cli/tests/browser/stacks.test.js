// The Stacks page (spec 001) in a real browser (playwright-core driving
// Debian's Chromium) against a fresh `junction serve`. Run by the Rust test
// `the_stacks_page_works_in_a_real_browser` (crates/junction-cli/tests/
// cli.rs), which passes JUNCTION_URL, JUNCTION_TOKEN (an admin token) and
// SHOTS (a directory for screenshots).
//
// A one-file stack is uploaded through the form, its system token seen
// once, its function called over HTTP from the test, the call found in the
// recent calls with its log, the token rotated and the stack deleted. No
// sleeps: every wait is bounded by playwright's timeouts.

const assert = require('assert');
const {
  URL, api, launch, openPage, signIn, waitForText, assertLocalTime, assertNoSidewaysScroll, SHOTS, run,
} = require('./common');

// Failed requests this suite causes on purpose.
const EXPECTED_FAILURES = [
  [401, '/api/v1/session'], // the probe before sign-in
  [400, '/api/v1/stacks'], // the upload that does not load
];

const SECRET = 'sk-stack-secret-5150';
const SOURCE = `exports.hooks = {
  preSavePage(options, callback) {
    console.log('saving', options.data.length, 'records with key', process.env.API_KEY, 'in', process.env.REGION);
    callback(null, { data: options.data, errors: [] });
  },
};
exports.reversedKey = (options, callback) => callback(null, String(process.env.API_KEY).split('').reverse().join(''));
`;

// The extension host, as integrator.io calls it.
async function callFunction(name, token, body) {
  const res = await fetch(`${URL}/stacks/${name}/function`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function main() {
  const browser = await launch();
  try {
    const { ctx, page, problems, assertNowhere } = await openPage(browser, EXPECTED_FAILURES);
    await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: URL });
    const clipboard = () => page.evaluate(() => navigator.clipboard.readText());
    // A token shown once must be gone from the page once its dialog closes
    // (the answer that carried it is, of course, among those received).
    const assertNotShown = async (secret, what) => {
      assert.ok(!(await page.content()).includes(secret), `${what} is still in the page HTML`);
      assert.ok(!(await page.evaluate((s) => document.body.innerText.includes(s)
        || [...document.querySelectorAll('input, textarea')].some((i) => i.value.includes(s)), secret)), `${what} is still shown`);
    };
    // Escape closes a dialog; its close event (which clears it and puts the
    // focus back) comes a moment later: wait for that, not only for [open].
    const escapeFrom = async (id) => {
      await page.evaluate((i) => {
        window.closedSeen = false;
        document.getElementById(i).addEventListener('close', () => setTimeout(() => { window.closedSeen = true; }), { once: true });
      }, id);
      await page.keyboard.press('Escape');
      await page.waitForFunction(() => window.closedSeen === true);
      await page.waitForSelector(`#${id}`, { state: 'hidden' });
    };
    const readToken = async (titlePattern) => {
      await page.waitForSelector('#stack-token-dialog[open]');
      assert.match(await page.innerText('#stack-token-title'), titlePattern);
      assert.match(await page.innerText('#stack-token-note'), /won't be shown again/);
      assert.strictEqual(await page.evaluate(() => document.activeElement?.id), 'stack-token-copy');
      const token = (await page.innerText('#stack-token-value')).trim();
      assert.match(token, /^jst_\S+$/);
      await page.click('#stack-token-copy');
      await waitForText(page, '#stack-token-copied', /Copied/);
      assert.strictEqual(await clipboard(), token, 'Copy puts the token on the clipboard');
      if (SHOTS) await page.screenshot({ path: `${SHOTS}/stack-token.png` });
      await escapeFrom('stack-token-dialog');
      await assertNotShown(token, 'the system token');
      return token;
    };

    // Signed in on an empty store: the page says what to do next.
    await page.goto(`${URL}/#/stacks`);
    await signIn(page);
    await page.waitForSelector('#stacks-empty', { state: 'visible' });
    assert.match(await page.innerText('#stacks-empty'), /No stacks yet: upload a \.js file/);
    assert.strictEqual(await page.getAttribute('#main-nav a[data-view="stacks"]', 'aria-current'), 'page');
    assert.ok(await page.isVisible('#stack-upload-form'));

    // A file that does not load: the server's details (field, rule, message) show.
    await page.setInputFiles('#stack-upload-file', { name: 'broken-hooks.js', mimeType: 'text/javascript', buffer: Buffer.from('module.exports = {') });
    assert.strictEqual(await page.inputValue('#stack-upload-name'), 'broken-hooks', 'the name comes from the file');
    await page.click('#stack-upload-submit');
    await page.waitForSelector('#stack-upload-error:not([hidden])');
    assert.match(await page.innerText('#stack-upload-details'), /data \(loads\): \S/);
    assert.strictEqual(await page.getAttribute('#stack-upload-file', 'aria-invalid'), 'true');
    assert.ok(await page.isVisible('#stacks-empty'), 'nothing was stored');

    // The one-file stack: created, its token shown once.
    await page.fill('#stack-upload-name', 'hooks');
    await page.setInputFiles('#stack-upload-file', { name: 'hooks.js', mimeType: 'text/javascript', buffer: Buffer.from(SOURCE) });
    await page.click('#stack-upload-submit');
    const token = await readToken(/Stack hooks created \(version 1\)/);
    assert.ok(await page.isHidden('#stack-upload-error'), 'the refusal is gone');
    const row = '#stacks-body tr[data-stack="hooks"]';
    await page.waitForSelector(row);
    assert.strictEqual((await page.innerText(`${row} .stack-version`)).trim(), 'v1');
    assert.strictEqual((await page.innerText(`${row} .stack-config`)).trim(), 'diy');
    assert.strictEqual((await page.innerText(`${row} .stack-timeout`)).trim(), '300 s');
    assert.strictEqual((await page.innerText(`${row} .stack-concurrency`)).trim(), '8');
    await assertLocalTime(page, `${row} time`);
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/stacks.png` });

    // The stack's page: function URL, versions with their functions, no env yet.
    await page.click(`${row} a`);
    await page.waitForSelector('#stack-versions');
    assert.strictEqual((await page.innerText('#stack-heading')).trim(), 'hooks');
    assert.strictEqual(await page.evaluate(() => document.activeElement?.id), 'stack-heading');
    const url = `${URL}/stacks/hooks/function`;
    assert.strictEqual((await page.innerText('#stack-function-url')).trim(), url);
    await page.click('#stack-url-copy');
    await waitForText(page, '#stack-url-copied', /Copied/);
    assert.strictEqual(await clipboard(), url);
    const v1 = '#stack-versions-body tr[data-version="1"]';
    assert.match(await page.innerText(v1), /current/);
    const { config } = await api('GET', '/api/v1/stacks/hooks');
    assert.strictEqual((await page.innerText(`${v1} .fn-file`)).trim(), config.diy, 'the module file is named');
    assert.match(await page.innerText(`${v1} [data-object="hooks"]`), /hooks: preSavePage/);
    assert.match(await page.innerText(`${v1} [data-object=""]`), /top level: reversedKey/);
    assert.match(await page.innerText('#stack-env-empty'), /Use Settings/);
    await page.waitForSelector('#stack-calls-empty', { state: 'visible' });
    assert.match(await page.innerText('#stack-calls-empty'), /No calls yet/);

    // Settings: a timeout, an encrypted and a plain env entry.
    await page.click('#stack-settings');
    await page.waitForSelector('#stack-settings-dialog[open]');
    assert.strictEqual(await page.evaluate(() => document.activeElement?.id), 'stack-settings-timeout');
    assert.strictEqual(await page.inputValue('#stack-settings-timeout'), '300');
    await page.fill('#stack-settings-timeout', '30');
    const last = '#stack-env-body tr:last-child';
    await page.click('#stack-env-add');
    await page.fill(`${last} .entry-name`, 'API_KEY');
    await page.check(`${last} .entry-encrypted`);
    assert.strictEqual(await page.getAttribute(`${last} .entry-value`, 'type'), 'password');
    await page.fill(`${last} .entry-value`, SECRET);
    await page.click('#stack-env-add');
    await page.fill(`${last} .entry-name`, 'REGION');
    await page.fill(`${last} .entry-value`, 'eu');
    await page.click('#stack-settings-save');
    await page.waitForSelector('#stack-settings-dialog', { state: 'hidden' });
    await waitForText(page, '#stack-timeout', /^30 s$/);
    assert.strictEqual((await page.innerText('#stack-env tr[data-env="API_KEY"] .env-value')).trim(), '********');
    assert.strictEqual((await page.innerText('#stack-env tr[data-env="REGION"] .env-value')).trim(), 'eu');
    assert.strictEqual(await page.evaluate(() => document.activeElement?.id), 'stack-settings');
    await assertNowhere(SECRET, 'an encrypted env value');
    // Reopened and saved untouched: the sealed value is kept.
    await page.click('#stack-settings');
    await page.waitForSelector('#stack-settings-dialog[open]');
    const locked = '#stack-env-body tr:first-child';
    assert.strictEqual(await page.inputValue(`${locked} .entry-value`), '');
    assert.strictEqual(await page.getAttribute(`${locked} .entry-value`, 'placeholder'), 'unchanged');
    assert.ok(await page.isDisabled(`${locked} .entry-encrypted`));
    await page.click('#stack-settings-save');
    await page.waitForSelector('#stack-settings-dialog', { state: 'hidden' });
    const stored = await api('GET', '/api/v1/stacks/hooks');
    assert.deepStrictEqual(stored.env, [{ name: 'API_KEY', encrypted: true }, { name: 'REGION', value: 'eu', encrypted: false }]);
    assert.strictEqual(stored.timeout_seconds, 30);

    // integrator.io calls the function with the token.
    const ok = await callFunction('hooks', token, {
      diy: true, type: 'hook', function: 'preSavePage',
      options: { data: [{ id: 1 }, { id: 2 }], errors: [], _integrationId: 'int-7', _flowId: 'flow-3' },
    });
    assert.strictEqual(ok.status, 200, JSON.stringify(ok.body));
    assert.deepStrictEqual(ok.body, { data: [{ id: 1 }, { id: 2 }], errors: [] });
    const reversed = await callFunction('hooks', token, { diy: true, function: 'reversedKey', options: {} });
    assert.strictEqual(reversed.body, [...SECRET].reverse().join(''), 'the function sees the sealed value');
    const bad = await callFunction('hooks', token, { diy: true, type: 'hook', function: 'noSuchHook', options: {} });
    assert.strictEqual(bad.status, 422);

    // The calls, newest first, with their logs.
    await waitForText(page, '#stack-calls-body', /noSuchHook/, '#stack-calls-refresh');
    assert.strictEqual(await page.locator('#stack-calls-body tr[data-call]').count(), 3);
    const calls = await api('GET', '/api/v1/stacks/hooks/calls');
    const okCall = `#stack-calls-body tr[data-call="${calls.find((c) => c.function === 'preSavePage').id}"]`;
    const badCall = `#stack-calls-body tr[data-call="${calls.find((c) => c.function === 'noSuchHook').id}"]`;
    assert.strictEqual((await page.innerText(`${okCall} .call-type`)).trim(), 'hook');
    assert.strictEqual((await page.innerText(`${okCall} .call-outcome`)).trim(), 'Succeeded');
    assert.match(await page.innerText(`${okCall} .call-size`), /^\d+ B$/);
    assert.match(await page.innerText(`${okCall} .call-duration`), /\d+ (ms|s)/);
    await assertLocalTime(page, `${okCall} time`);
    assert.strictEqual((await page.innerText(`${badCall} .call-outcome`)).trim(), 'Failed');
    assert.strictEqual((await page.innerText(`${badCall} .call-error`)).trim(), 'invalid_function');
    // Clicking the row opens its log, monospaced, the secret masked.
    await page.click(`${okCall} .call-function`);
    await page.waitForSelector('#stack-call-dialog[open]');
    await waitForText(page, '#stack-call-log', /\[LOG\] – saving 2 records with key \*{8} in eu/);
    assert.match(await page.innerText('#stack-call-meta'), /int-7[\s\S]*flow-3/);
    const font = await page.$eval('#stack-call-log', (p) => getComputedStyle(p).fontFamily);
    assert.match(font, /mono/i, 'the log is monospaced');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/stack-call-log.png` });
    await assertNowhere(SECRET, 'an encrypted env value');
    await escapeFrom('stack-call-dialog');
    // By keyboard: the time is a button; Escape returns to it.
    await page.focus(`${badCall} button.call-open`);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#stack-call-dialog[open]');
    await waitForText(page, '#stack-call-meta', /invalid_function/);
    await escapeFrom('stack-call-dialog');
    assert.ok(await page.evaluate((sel) => document.activeElement === document.querySelector(`${sel} button.call-open`), badCall));
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/stack.png`, fullPage: true });

    // Rotate the token: confirmed, the new one shown once, the old one refused.
    await page.click('#stack-rotate');
    await page.waitForSelector('#confirm-dialog[open]');
    assert.match(await page.innerText('#confirm-message'), /Rotate the system token of hooks/);
    await page.click('#confirm-yes');
    const rotated = await readToken(/New system token for hooks/);
    assert.notStrictEqual(rotated, token);
    await assertNotShown(token, 'the rotated-away token');
    assert.strictEqual(await page.evaluate(() => document.activeElement?.id), 'stack-rotate');
    assert.strictEqual((await callFunction('hooks', token, { diy: true, function: 'reversedKey', options: {} })).status, 401);
    assert.strictEqual((await callFunction('hooks', rotated, { diy: true, function: 'reversedKey', options: {} })).status, 200);

    // A narrow window: the page never scrolls sideways, tables scroll in their box.
    await page.setViewportSize({ width: 390, height: 800 });
    await assertNoSidewaysScroll(page);
    const scrolls = await page.$eval('#stack-calls', (t) => t.parentElement.scrollWidth > t.parentElement.clientWidth);
    assert.ok(scrolls, 'the calls table scrolls in its own box');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/stack-narrow.png`, fullPage: true });
    await page.click('.crumbs a');
    await page.waitForSelector(row);
    await assertNoSidewaysScroll(page);
    await page.setViewportSize({ width: 1280, height: 800 });

    // A viewer sees the stacks but no control that changes them.
    const viewer = await api('POST', '/api/v1/tokens', { name: 'stacks-viewer', role: 'viewer' });
    const v = await openPage(browser, EXPECTED_FAILURES);
    await v.page.goto(`${URL}/#/stacks`);
    await v.page.waitForSelector('#signin-token', { state: 'visible' });
    await v.page.fill('#signin-token', viewer.token);
    await v.page.click('#signin-submit');
    await v.page.waitForSelector(row);
    assert.ok(!(await v.page.isVisible('#stack-upload-form')), 'no upload form for a viewer');
    assert.ok(!(await v.page.isVisible(`${row} button.stack-delete`)), 'no Delete for a viewer');
    await v.page.click(`${row} a`);
    await v.page.waitForSelector('#stack-versions');
    for (const id of ['#stack-settings', '#stack-rotate', '#stack-delete']) {
      assert.ok(!(await v.page.isVisible(id)), `no ${id} for a viewer`);
    }
    assert.ok(await v.page.isVisible('#stack-url-copy'));
    await v.assertNowhere(SECRET, 'an encrypted env value (viewer)');
    assert.deepStrictEqual(v.problems, []);
    await v.ctx.close();

    // Delete, after confirming: back to the empty list.
    await page.click(`${row} a`);
    await page.waitForSelector('#stack-versions');
    await page.click('#stack-delete');
    await page.waitForSelector('#confirm-dialog[open]');
    assert.match(await page.innerText('#confirm-message'), /Delete stack hooks\?/);
    await page.click('#confirm-yes');
    await page.waitForSelector('#stacks-empty', { state: 'visible' });
    assert.match(await page.innerText('#stacks-status'), /Deleted stack hooks/);
    assert.deepStrictEqual(await api('GET', '/api/v1/stacks'), []);
    assert.strictEqual((await callFunction('hooks', rotated, { diy: true, function: 'reversedKey', options: {} })).status, 401);

    await assertNowhere(SECRET, 'an encrypted env value');
    await assertNowhere(process.env.JUNCTION_TOKEN, 'the API token');
    assert.deepStrictEqual(problems, []);
  } finally {
    await browser.close();
  }
}

run(main);
