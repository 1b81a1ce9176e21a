#!/usr/bin/env node
// pages.mjs: the pages shopd serves (issue 17), in a real browser: headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core) against a
// running shopd with a store seeded by scripts/seed-demo.mjs (50 products,
// orders spread over three weeks, analytics rebuilt).
//
//   /docs    Swagger UI renders the operations of /openapi.yaml (as many
//            operations as the document has, the low-stock one among them);
//   /admin   the sign-in form signs a store admin in; the sales chart and the
//            top-products chart are drawn (canvases with non-blank pixels);
//            the totals, the top product's name, the recent orders and the
//            low-stock list match what the API answers for the same admin;
//   both     no console error, no uncaught exception, no failed request and
//            no Content-Security-Policy violation (each one is a failure).
// A screenshot of each page is kept (--artifacts, default build/artifacts/);
// their paths are printed.
//
//   node tests/browser/pages.mjs --url http://127.0.0.1:PORT --platform-token TOKEN \
//        [--database-url URL] [--chromium /usr/bin/chromium] [--artifacts DIR]
//
// Each run creates its own store (slug pages-<random>) and deletes it at the end.
// Prints one line per check and "N passed, N failed"; exit status 0 when all passed.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { seedStore } from '../../scripts/seed-demo.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const require = createRequire(resolve(root, 'tools/node/package.json'));
const { chromium } = require('playwright-core');
const YAML = require('yaml');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}
const BASE = arg('url', process.env.SHOPD_URL);
const PTOK = arg('platform-token', process.env.SHOPD_PLATFORM_TOKEN);
const DBURL = arg('database-url', process.env.SHOPD_DATABASE_URL);
const CHROMIUM = arg('chromium', process.env.SHOPD_CHROMIUM || '/usr/bin/chromium');
const ARTIFACTS = resolve(arg('artifacts', resolve(root, 'build/artifacts')));
if (!BASE || !PTOK) {
  console.error('usage: pages.mjs --url http://127.0.0.1:PORT --platform-token TOKEN [--database-url URL]');
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(what, ok, detail) {
  if (ok) {
    passed++;
    console.log(`ok     ${what}`);
  } else {
    failed++;
    console.log(`FAIL   ${what}${detail === undefined ? '' : `\n       ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`}`);
  }
}

async function api(method, path, { token = PTOK, tenant, body } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (tenant) headers['X-Tenant-Id'] = tenant;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(BASE + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: json, text, headers: res.headers };
}

// Everything a page reports that counts as a failure: console errors (a CSP
// violation is one, and the page also reports it through
// securitypolicyviolation), uncaught exceptions, requests that failed or were
// answered 4xx/5xx.
function watch(page, problems) {
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()} (${m.location()?.url || ''})`);
  });
  page.on('pageerror', (e) => problems.push(`exception: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`);
  });
}
const cspProbe = () => {
  document.addEventListener('securitypolicyviolation', (e) => {
    console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
  });
};

// Non-transparent pixels of a canvas inside selector (uPlot draws its series on one).
async function inkedPixels(page, selector) {
  return page.evaluate((sel) => {
    const c = document.querySelector(`${sel} canvas`);
    if (!c || !c.width || !c.height) return -1;
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
    return n;
  }, selector);
}

let storeId = null;
let browser = null;
try {
  mkdirSync(ARTIFACTS, { recursive: true });
  const slug = `pages-${randomBytes(4).toString('hex')}`;
  const email = `admin@${slug}.test`;
  const password = `pw-${randomBytes(8).toString('hex')}`;
  const made = await api('POST', '/api/v1/stores', {
    body: { slug, name: 'Pages Test Shop', currency: 'USD', admin: { email, password, name: 'Pages Admin' } },
  });
  check(`POST /api/v1/stores ${slug} with its admin`, made.status === 201, made.text.slice(0, 300));
  storeId = made.body?.id;

  const t0 = Date.now();
  const seeded = await seedStore({ url: BASE, token: PTOK, store: slug, databaseUrl: DBURL });
  check(`seeded: 50 products, ${seeded.orders} orders (${Date.now() - t0} ms)`, seeded.created.catalog && seeded.orders >= 10);
  const again = await seedStore({ url: BASE, token: PTOK, store: slug, databaseUrl: DBURL });
  check('the seed is idempotent (a second run adds nothing)', !again.created.catalog && again.created.orders === 0);

  // What the dashboard should show, asked of the API as the same admin.
  const login = await api('POST', '/api/v1/auth/login', { token: '', tenant: slug, body: { email, password } });
  check('the admin signs in through the API', login.status === 200, login.text.slice(0, 200));
  const atok = login.body?.access_token;
  const today = new Date().toISOString().slice(0, 10);
  const from = new Date(Date.now() - 29 * 86400000).toISOString().slice(0, 10);
  // The rollups follow the orders through the jobs relay (a step every
  // SHOPD_JOBS_POLL_MS): the figures are whole within a moment, not at once.
  let sales;
  for (let i = 0; i < 50; i++) {
    sales = await api('GET', `/api/v1/admin/analytics/sales?from=${from}&to=${today}&interval=day`, { token: atok, tenant: slug });
    if (sales.status !== 200 || sales.body.totals.orders === seeded.orders) break;
    await new Promise((ok) => setTimeout(ok, 200));
  }
  const top = await api('GET', `/api/v1/admin/analytics/top-products?from=${from}&to=${today}&limit=5&by=revenue`, { token: atok, tenant: slug });
  const orders = await api('GET', '/api/v1/orders?limit=10', { token: atok, tenant: slug });
  const low = await api('GET', '/api/v1/admin/inventory/low-stock?threshold=5&limit=20', { token: atok, tenant: slug });
  const days = (sales.body?.data || []).filter((d) => d.orders > 0).length;
  check(`analytics: ${sales.body?.totals?.orders} orders on ${days} days`, sales.status === 200 && sales.body.totals.orders === seeded.orders && days >= (DBURL ? 5 : 1), sales.text.slice(0, 300));
  check('analytics: a top product', top.status === 200 && top.body.data.length > 0, top.text.slice(0, 300));
  check('low stock: the seed left some variants low', low.status === 200 && low.body.data.length > 0, low.text.slice(0, 300));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1360, height: 1000 } });
  await context.addInitScript(cspProbe);

  // ---------------------------------------------------------------- /docs
  {
    const page = await context.newPage();
    const problems = [];
    watch(page, problems);
    const res = await page.goto(`${BASE}/docs`, { waitUntil: 'load' });
    check('GET /docs (redirected to /docs/) answers 200', res.status() === 200 && page.url().endsWith('/docs/'), `${res.status()} ${page.url()}`);
    const csp = res.headers()['content-security-policy'] || '';
    check("/docs has the pages' CSP (script-src 'self', no unsafe-inline)", csp.includes("script-src 'self'") && !csp.includes('unsafe'), csp);
    const doc = YAML.parse(readFileSync(resolve(root, 'docs/openapi.yaml'), 'utf8'));
    let nops = 0;
    for (const item of Object.values(doc.paths)) for (const m of Object.keys(item)) if (['get', 'post', 'put', 'patch', 'delete'].includes(m)) nops++;
    await page.waitForFunction((n) => document.querySelectorAll('.opblock').length >= n, nops, { timeout: 30000 }).catch(() => {});
    const shown = await page.locator('.opblock').count();
    check(`Swagger UI renders every operation of /openapi.yaml (${shown} of ${nops})`, shown === nops);
    const lowOp = await page.locator('.opblock-summary-path', { hasText: '/api/v1/admin/inventory/low-stock' }).count();
    check('Swagger UI lists GET /api/v1/admin/inventory/low-stock', lowOp === 1);
    const title = await page.locator('.info .title').first().textContent().catch(() => '');
    check(`Swagger UI shows the document's title (${title?.trim()})`, (title || '').includes(doc.info.title));
    const shot = resolve(ARTIFACTS, 'docs.png');
    await page.screenshot({ path: shot, fullPage: false });
    console.log(`       screenshot: ${shot}`);
    check('/docs: no console errors, exceptions, failed requests or CSP violations', problems.length === 0, problems.slice(0, 10).join('\n       '));
    await page.close();
  }

  // ---------------------------------------------------------------- /admin
  {
    const page = await context.newPage();
    const problems = [];
    watch(page, problems);
    const res = await page.goto(`${BASE}/admin/`, { waitUntil: 'load' });
    check('GET /admin/ answers 200 with the sign-in form', res.status() === 200 && (await page.locator('#signin-form').isVisible()));
    await page.fill('#signin-store', slug);
    await page.fill('#signin-email', email);
    await page.fill('#signin-password', 'wrong-password-1');
    await page.click('#signin-submit');
    await page.waitForSelector('#signin-error:not([hidden])', { timeout: 10000 }).catch(() => {});
    const wrong = await page.locator('#signin-error').textContent();
    check(`a wrong password is refused on the form ("${wrong}")`, /wrong/i.test(wrong || '') && !(await page.locator('#dashboard').isVisible()));
    // That refusal was a 401 the page asked for: not a problem of the page.
    for (let i = problems.length - 1; i >= 0; i--) if (/HTTP 401: POST .*\/auth\/login|status of 401/.test(problems[i])) problems.splice(i, 1);

    await page.fill('#signin-password', password);
    await page.click('#signin-submit');
    await page.waitForSelector('body[data-loaded]', { timeout: 20000 }).catch(() => {});
    check('signed in: the dashboard shows', await page.locator('#dashboard').isVisible());
    check('the store name is shown', (await page.locator('#store-name').textContent()) === 'Pages Test Shop');

    const kpi = (await page.locator('#kpi-orders').textContent())?.trim();
    check(`the orders total matches the API (${kpi})`, kpi === String(sales.body?.totals?.orders));
    const salesInk = await inkedPixels(page, '#sales-chart');
    check(`the sales chart is drawn (${salesInk} inked pixels)`, salesInk > 500);
    const topInk = await inkedPixels(page, '#top-chart');
    check(`the top-products chart is drawn (${topInk} inked pixels)`, topInk > 500);
    const firstTop = (await page.locator('#top-table tbody tr').first().locator('td').first().textContent())?.trim();
    check(`the top product is the API's ("${firstTop}")`, firstTop === top.body?.data?.[0]?.name);

    const orderRows = await page.locator('#orders-table tbody tr').count();
    const firstOrder = (await page.locator('#orders-table tbody tr').first().locator('td').first().textContent())?.trim();
    check(`recent orders listed (${orderRows}, newest ${firstOrder})`, orderRows === orders.body?.data?.length && firstOrder === orders.body.data[0].name);
    const stockSkus = await page.locator('#stock-table tbody tr td:nth-child(2)').allTextContents();
    check(`low-stock variants listed (${stockSkus.length})`, stockSkus.length === low.body?.data?.length && stockSkus[0] === low.body.data[0].sku);
    check('failed jobs: the empty state', (await page.locator('#jobs-empty').textContent()) === 'No failed jobs.');
    check('webhooks: the empty state', (await page.locator('#webhooks-empty').textContent()) === 'No webhook endpoints.');

    const shot = resolve(ARTIFACTS, 'admin.png');
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`       screenshot: ${shot}`);

    // A reload keeps the session (sessionStorage, this tab); signing out ends it.
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('body[data-loaded]', { timeout: 20000 }).catch(() => {});
    check('a reload stays signed in', await page.locator('#dashboard').isVisible());
    await page.click('#signout');
    await page.waitForSelector('#signin-form', { state: 'visible', timeout: 10000 }).catch(() => {});
    check('sign out shows the form again', (await page.locator('#signin-form').isVisible()) && !(await page.locator('#dashboard').isVisible()));
    check('/admin: no console errors, exceptions, failed requests or CSP violations', problems.length === 0, problems.slice(0, 10).join('\n       '));
    await page.close();
  }
} catch (e) {
  check('the run did not throw', false, e.stack || String(e));
} finally {
  if (browser) await browser.close();
  if (storeId) {
    const del = await api('DELETE', `/api/v1/stores/${storeId}`).catch(() => ({ status: 0 }));
    if (del.status !== 204 && del.status !== 200) console.log(`note: deleting store ${storeId}: HTTP ${del.status}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
