// The Flows page (spec 001's record flows) in a real browser (playwright-core
// driving Debian's Chromium) against a fresh `junction serve`. Run by the
// Rust test `the_flows_page_works_in_a_real_browser` (crates/junction-cli/
// tests/flows.rs), which passes JUNCTION_URL, JUNCTION_TOKEN (an admin
// token) and SHOTS (a directory for screenshots).
//
// The "shop" stack (tests/fixtures/shop-stack.js) is uploaded through the
// API; the flow (tests/fixtures/orders-flow.json) through the page's form,
// after a refused one. It is run from its page and from the list, its
// counters read in the pipeline, its record error retried (as it is, then
// fixed in the retry data editor) and resolved. No sleeps: every wait is
// bounded by playwright's timeouts.

const assert = require('assert');
const fs = require('fs');
const path = require('path');
const {
  URL, api, launch, openPage, signIn, waitForText, assertLocalTime, assertNoSidewaysScroll, SHOTS, run,
} = require('./common');

// Failed requests this suite causes on purpose.
const EXPECTED_FAILURES = [
  [401, '/api/v1/session'], // the probe before sign-in
  [400, '/api/v1/flows'], // the upload naming a function the stack does not export
];

const SOURCE = fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'shop-stack.js'), 'utf8');
const FLOW = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'orders-flow.json'), 'utf8'));
// The connection's encrypted value: sent once with the upload, never shown.
const SECRET = FLOW.connections.shopApi.encrypted.apiKey;

const step = (name) => `#flow-pipeline .flow-step[data-step="${name}"]`;

async function main() {
  const browser = await launch();
  try {
    const { page, problems, assertNowhere } = await openPage(browser, EXPECTED_FAILURES);
    const count = async (name, key) => (await page.innerText(`${step(name)} .count-${key}-value`)).trim();
    const counts = async (name) => ({
      success: await count(name, 'success'), error: await count(name, 'error'),
      ignore: await count(name, 'ignore'), pages: await count(name, 'pages'),
    });
    const errorKeys = () => page.$$eval('#flow-errors-body tr[data-retry-key]', (rows) => rows.map((r) => r.dataset.retryKey));

    await api('POST', '/api/v1/stacks', { name: 'shop', data: SOURCE });

    // Signed in on a store without flows: the page says what a flow is.
    await page.goto(`${URL}/#/flows`);
    await signIn(page);
    await page.waitForSelector('#flows-empty', { state: 'visible' });
    assert.match(await page.innerText('#flows-empty'), /No flows yet/);
    assert.strictEqual(await page.getAttribute('#main-nav a[data-view="flows"]', 'aria-current'), 'page');
    assert.ok(await page.isVisible('#flow-upload-form'));
    assert.match(await page.inputValue('#flow-upload-text'), /"pageGenerators"/, 'an example to start from');

    // Not JSON: told before anything is sent.
    await page.fill('#flow-upload-text', '{"name": ');
    await page.click('#flow-upload-submit');
    await waitForText(page, '#flow-upload-message', /not valid JSON/);
    assert.strictEqual(await page.getAttribute('#flow-upload-text', 'aria-invalid'), 'true');

    // A hook the stack does not export: the server's field, rule and message.
    const bad = structuredClone(FLOW);
    bad.pageProcessors[0].hooks.preMap.function = 'noSuchHook';
    await page.fill('#flow-upload-text', JSON.stringify(bad, null, 2));
    await page.click('#flow-upload-submit');
    await waitForText(page, '#flow-upload-details', /pageProcessors\[0\]\.hooks\.preMap \(unknown_function\): .*noSuchHook/);
    assert.ok(await page.isVisible('#flows-empty'), 'nothing was stored');

    // The flow: stored, and its page opens.
    await page.fill('#flow-upload-text', JSON.stringify(FLOW, null, 2));
    await page.click('#flow-upload-submit');
    await page.waitForSelector('#flow-pipeline');
    assert.strictEqual(new globalThis.URL(page.url()).hash, '#/flows/orders_sync');
    assert.strictEqual((await page.innerText('#flow-heading')).trim(), 'orders_sync');
    await waitForText(page, '#flows-status', /Flow orders_sync: revision 1 stored/);
    await assertNowhere(SECRET, 'the connection secret');

    // The pipeline: the export, then the import, each with its hooks.
    assert.match(await page.innerText(`${step('orders')} .flow-step-kind`), /export · wrapper/);
    assert.strictEqual((await page.innerText(`${step('orders')} .flow-step-detail`)).trim(), 'shop.exportOrders');
    assert.strictEqual(await page.getAttribute(`${step('orders')} .hook-badge[data-hook="preSavePage"]`, 'title'), 'shop.tagPage');
    assert.match(await page.innerText(`${step('push')} .flow-step-kind`), /import · wrapper/);
    const hooks = await page.$$eval(`${step('push')} .hook-badge`, (b) => b.map((x) => x.dataset.hook));
    assert.deepStrictEqual(hooks, ['preMap', 'postMap', 'postSubmit', 'postResponseMap']);
    const order = await page.$$eval('#flow-pipeline .flow-step', (b) => b.map((x) => x.dataset.step));
    assert.deepStrictEqual(order, ['orders', 'push']);
    assert.match(await page.innerText('#flow-caption'), /No runs yet/);
    await page.waitForSelector('#flow-runs-empty', { state: 'visible' });
    await page.waitForSelector('#flow-errors-empty', { state: 'visible' });
    assert.match(await page.innerText('#flow-offline'), /none/);

    // Run: the boxes count the records (5 exported on 2 pages; at push 3
    // imported, the cancelled one ignored, order 4 refused).
    await page.click('#flow-run');
    await waitForText(page, '#flow-caption', /Completed with errors/);
    assert.deepStrictEqual(await counts('orders'), { success: '5', error: '0', ignore: '0', pages: '2' });
    assert.deepStrictEqual(await counts('push'), { success: '3', error: '1', ignore: '1', pages: '2' });
    assert.ok(await page.$eval(step('push'), (b) => b.classList.contains('has-errors')));
    assert.ok(await page.isHidden('#flow-stop'), 'no Stop once the run ended');
    const runRow = '#flow-runs-body tr[data-run]';
    await page.waitForSelector(runRow);
    assert.strictEqual((await page.innerText(`${runRow} .run-outcome`)).trim(), 'Completed with errors');
    assert.strictEqual((await page.innerText(`${runRow} .run-totals`)).trim(), '3 ok · 1 error · 1 ignored');
    await assertLocalTime(page, `${runRow} .run-start time`);
    await waitForText(page, '#flow-last-export', /orders/);

    // The error, with its retry data.
    await page.waitForSelector('#flow-errors-body tr.error-row');
    const [key1] = await errorKeys();
    assert.ok(key1, 'the error has a retry data key');
    const row1 = `#flow-errors-body tr[data-retry-key="${key1}"]`;
    assert.strictEqual((await page.innerText(`${row1} .error-step`)).trim(), 'push');
    assert.strictEqual((await page.innerText(`${row1} .error-code`)).trim(), 'rejected');
    assert.match(await page.innerText(`${row1} .error-message`), /order 4 is rejected/);
    await assertLocalTime(page, `${row1} .error-time time`);
    assert.ok(await page.isDisabled('#flow-retry-selected'), 'nothing selected yet');
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/flows.png`, fullPage: true });

    // Retry selected, as it is: refused again, a new error in its place.
    await page.check(`${row1} input.error-select`);
    assert.strictEqual((await page.innerText('#flow-retry-selected')).trim(), 'Retry selected (1)');
    await page.click('#flow-retry-selected');
    await waitForText(page, '#flows-status', /Retrying 1 record: run \S+ started/);
    await waitForText(page, '#flow-caption', /retry of 1 record[\s\S]*Completed with errors/);
    assert.deepStrictEqual(await counts('push'), { success: '0', error: '1', ignore: '0', pages: '1' });
    assert.deepStrictEqual(await counts('orders'), { success: '0', error: '0', ignore: '0', pages: '0' }, 'a retry exports nothing');
    await page.waitForFunction((old) => {
      const keys = [...document.querySelectorAll('#flow-errors-body tr[data-retry-key]')].map((r) => r.dataset.retryKey);
      return keys.length === 1 && keys[0] !== old;
    }, key1);
    const [key2] = await errorKeys();
    const row2 = `#flow-errors-body tr[data-retry-key="${key2}"]`;
    assert.match(await page.innerText('#flow-runs-body tr[data-run]:first-child .run-trigger'), /Retry of 1 record/);

    // Fixed in the retry data editor, then retried: imported.
    await page.click(`${row2} button.error-retry-data`);
    await page.waitForSelector('#flow-retry-dialog[open]');
    await page.waitForFunction(() => !document.getElementById('flow-retry-text').disabled);
    assert.strictEqual((await page.innerText('#flow-retry-step')).trim(), 'push');
    assert.deepStrictEqual(JSON.parse(await page.inputValue('#flow-retry-text')), { id: 4, status: 'open', bad: true, region: 'eu' });
    await page.fill('#flow-retry-text', '{"id": 4,');
    await page.click('#flow-retry-save');
    await waitForText(page, '#flow-retry-message', /not valid JSON/);
    assert.ok(await page.isVisible('#flow-retry-dialog'), 'still open');
    await page.fill('#flow-retry-text', JSON.stringify({ id: 4, status: 'open', bad: false, region: 'eu' }));
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/flow-retry-data.png` });
    await page.click('#flow-retry-save-run');
    await page.waitForSelector('#flow-retry-dialog', { state: 'hidden' });
    await waitForText(page, '#flow-caption', /retry of 1 record[\s\S]*Completed(?! with)/);
    assert.deepStrictEqual(await counts('push'), { success: '1', error: '0', ignore: '0', pages: '1' });
    await page.waitForSelector('#flow-errors-empty', { state: 'visible' });
    assert.match(await page.innerText('#flow-errors-empty'), /No open errors/);
    const stored = await api('GET', '/api/v1/flows/orders_sync/errors?include_resolved=true');
    assert.strictEqual(stored.length, 2);
    assert.ok(stored.every((e) => e.resolvedAt), 'both are done with');

    // The document, edited as shown (the secret stays ********) and saved: a new revision.
    await page.click('#flow-edit');
    await page.waitForSelector('#flow-edit-dialog[open]');
    const text = await page.inputValue('#flow-edit-text');
    assert.match(text, /"apiKey": "\*{8}"/);
    assert.ok(!text.includes(SECRET));
    await page.click('#flow-edit-submit');
    await page.waitForSelector('#flow-edit-dialog', { state: 'hidden' });
    await waitForText(page, '#flow-revision', /^r2$/);
    await waitForText(page, '#flows-status', /revision 2 stored/);

    // Run from the list: the flow's page follows it; the sealed key was kept,
    // so the import takes the records again.
    await page.click('.crumbs a');
    const listRow = '#flows-body tr[data-flow="orders_sync"]';
    await page.waitForSelector(listRow);
    assert.strictEqual((await page.innerText(`${listRow} .flow-revision`)).trim(), 'r2');
    assert.strictEqual((await page.innerText(`${listRow} .flow-steps`)).trim(), '1 export → 1 processor');
    await assertLocalTime(page, `${listRow} time`);
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/flows-list.png` });
    await page.click(`${listRow} button.flow-run`);
    await page.waitForSelector('#flow-pipeline');
    await waitForText(page, '#flows-status', /Run \S+ of orders_sync started/);
    await waitForText(page, '#flow-caption', /Completed with errors/);
    assert.deepStrictEqual(await counts('push'), { success: '3', error: '1', ignore: '1', pages: '2' });

    // Resolve the new error.
    await page.waitForSelector('#flow-errors-body tr.error-row');
    const [key3] = await errorKeys();
    await page.check('#flow-errors-all');
    assert.ok(await page.isChecked(`#flow-errors-body tr[data-retry-key="${key3}"] input.error-select`));
    await page.click('#flow-resolve-selected');
    await waitForText(page, '#flows-status', /Resolved 1 error\./);
    await page.waitForSelector('#flow-errors-empty', { state: 'visible' });
    await page.selectOption('#flow-errors-step', 'orders');
    await waitForText(page, '#flow-errors-empty', /No open errors at orders\./);
    await waitForText(page, '#flow-runs-body', /Retry of 1 record/);
    assert.strictEqual(await page.locator('#flow-runs-body tr[data-run]').count(), 4);

    // A narrow window: the page never scrolls sideways; the pipeline and tables scroll in their boxes.
    await page.setViewportSize({ width: 390, height: 800 });
    await assertNoSidewaysScroll(page);
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/flow-narrow.png`, fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });

    // A viewer sees the flow but no control that runs or changes it.
    const viewer = await api('POST', '/api/v1/tokens', { name: 'flows-viewer', role: 'viewer' });
    const v = await openPage(browser, EXPECTED_FAILURES);
    await v.page.goto(`${URL}/#/flows`);
    await v.page.waitForSelector('#signin-token', { state: 'visible' });
    await v.page.fill('#signin-token', viewer.token);
    await v.page.click('#signin-submit');
    await v.page.waitForSelector(listRow);
    assert.ok(!(await v.page.isVisible('#flow-upload-form')), 'no upload form for a viewer');
    assert.ok(!(await v.page.isVisible(`${listRow} button.flow-run`)), 'no Run for a viewer');
    await v.page.click(`${listRow} a`);
    await v.page.waitForSelector('#flow-runs-body tr[data-run]');
    for (const id of ['#flow-run', '#flow-edit', '#flow-delete', '#flow-retry-all', '#flow-resolve-all']) {
      assert.ok(!(await v.page.isVisible(id)), `no ${id} for a viewer`);
    }
    assert.match(await v.page.innerText(`${step('push')} .count-success-value`), /^\d+$/);
    await v.assertNowhere(SECRET, 'the connection secret (viewer)');
    assert.deepStrictEqual(v.problems, []);
    await v.ctx.close();

    // Delete, after confirming: back to the empty list.
    await page.click('#flow-delete');
    await page.waitForSelector('#confirm-dialog[open]');
    assert.match(await page.innerText('#confirm-message'), /Delete flow orders_sync\?/);
    await page.click('#confirm-yes');
    await page.waitForSelector('#flows-empty', { state: 'visible' });
    assert.match(await page.innerText('#flows-status'), /Deleted flow orders_sync/);
    assert.deepStrictEqual(await api('GET', '/api/v1/flows'), []);

    await assertNowhere(SECRET, 'the connection secret');
    await assertNowhere(process.env.JUNCTION_TOKEN, 'the API token');
    assert.deepStrictEqual(problems, []);
  } finally {
    await browser.close();
  }
}

run(main);
