// The Applications and Configurations pages in a real browser; run by the
// Rust test `the_application_pages_work_in_a_real_browser`. Placeholder
// until the pages exist: it signs in and opens both pages.
const assert = require('assert');
const { chromium } = require('playwright-core');

const URL = process.env.JUNCTION_URL;
const TOKEN = process.env.JUNCTION_TOKEN;

async function main() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  try {
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    await page.goto(`${URL}/#/applications`);
    await page.fill('#signin-token', TOKEN);
    await page.click('#signin-submit');
    await page.waitForSelector('#apps-view h1');
    assert.match(await page.innerText('#apps-view h1'), /Applications/);
  } finally {
    await browser.close();
  }
}

main().then(() => console.log('browser tests passed'), (e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
