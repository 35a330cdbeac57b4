// What both browser suites share: the browser, a page that records what a
// person would never want to see (page errors, unexpected failed requests,
// secrets in the DOM or in any answer the page received), and waiting.

const assert = require('assert');
const { chromium } = require('playwright-core');

const URL = process.env.JUNCTION_URL;
const TOKEN = process.env.JUNCTION_TOKEN;
const SHOTS = process.env.SHOTS;
// Not UTC, so the tests see that times are shown in the browser's zone.
const TIME_ZONE = 'America/New_York';

// The API as the admin token sees it, from the test itself (not the page):
// the status and the parsed body.
async function request(method, path, body) {
  const res = await fetch(URL + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

// The same, for setup that must succeed: the body, or a thrown error.
async function api(method, path, body) {
  const { status, body: answer } = await request(method, path, body);
  if (status >= 300) throw new Error(`${method} ${path}: ${status} ${JSON.stringify(answer)}`);
  return answer;
}

async function launch() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

// `expected`: [status, path prefix] pairs of failed requests the suite
// causes on purpose (Chromium logs every non-2xx answer as a console error).
async function openPage(browser, expected) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: 'en-US', timezoneId: TIME_ZONE });
  const page = await ctx.newPage();
  const problems = [];
  const bodies = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('response', async (r) => {
    const url = new globalThis.URL(r.url());
    if (r.status() >= 400 && !expected.some(([s, p]) => s === r.status() && url.pathname.startsWith(p))) {
      problems.push(`unexpected ${r.status()} from ${r.request().method()} ${url.pathname}`);
    }
    try {
      bodies.push(await r.text());
    } catch {
      // A redirect or an aborted request has no body.
    }
  });
  page.on('console', (m) => {
    if (m.type() === 'error' && !/the server responded with a status of/.test(m.text())) {
      problems.push(`console: ${m.text()}`);
    }
  });
  // A secret must be nowhere: not in the HTML, not in any input's value
  // (set as a property, which page.content() does not show), not in any
  // answer the page received.
  const assertNowhere = async (secret, what) => {
    assert.ok(!(await page.content()).includes(secret), `${what} is in the page HTML`);
    const inInputs = await page.evaluate((s) => [...document.querySelectorAll('input, textarea')]
      .some((i) => i.value.includes(s)), secret);
    assert.ok(!inInputs, `${what} is in an input's value`);
    assert.ok(!bodies.some((b) => b.includes(secret)), `${what} is in an answer the page received`);
  };
  return { ctx, page, problems, assertNowhere };
}

async function signIn(page) {
  await page.waitForSelector('#signin-token', { state: 'visible' });
  await page.fill('#signin-token', TOKEN);
  await page.click('#signin-submit');
  await page.waitForSelector('#main-nav:not([hidden])');
}

// Waits until the element's text matches. `refresh` is clicked between
// looks, for lists that reload only on demand (the grid refreshes itself
// once a minute); each look then waits for an API answer. Bounded: 30 s.
async function waitForText(page, selector, pattern, refresh = null) {
  const deadline = Date.now() + 30_000;
  if (!refresh) {
    await page.waitForFunction(([sel, src, flags]) => new RegExp(src, flags)
      .test(document.querySelector(sel)?.innerText ?? ''), [selector, pattern.source, pattern.flags], { timeout: 30_000 });
    return;
  }
  for (;;) {
    const text = await page.innerText(selector).catch(() => '');
    if (pattern.test(text)) return;
    if (Date.now() > deadline) throw new Error(`${selector} never matched ${pattern}; last text: ${text}`);
    await Promise.all([
      page.waitForResponse((r) => r.url().includes('/api/v1/'), { timeout: 10_000 }),
      page.click(refresh),
    ]);
  }
}

// Times are shown in the browser's zone, with the UTC instant on hover.
async function assertLocalTime(page, selector) {
  const [text, title] = await Promise.all([page.innerText(selector), page.getAttribute(selector, 'title')]);
  assert.match(title, /Z$/, 'UTC on hover');
  const local = new Intl.DateTimeFormat('en-US', { dateStyle: 'medium', timeStyle: 'medium', timeZone: TIME_ZONE })
    .format(new Date(title));
  assert.strictEqual(text, local, `${selector} shows local time`);
}

// The page never scrolls sideways (wide tables and graphs scroll in their box).
async function assertNoSidewaysScroll(page) {
  const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(over <= 0, `the page is ${over}px wider than the window`);
}

function run(main) {
  main().then(() => console.log('browser tests passed'), (e) => {
    console.error(e && e.stack ? e.stack : e);
    process.exit(1);
  });
}

module.exports = {
  URL, TOKEN, SHOTS, request, api, launch, openPage, signIn, waitForText, assertLocalTime, assertNoSidewaysScroll, run,
};
