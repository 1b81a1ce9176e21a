#!/usr/bin/env node
// cors.mjs: CORS as a real browser enforces it (issue 18). headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core) loads a page from one
// origin and calls the API of a store on another origin: the store's own host,
// http://<slug>.localhost:PORT, the way a storefront on its own domain calls it.
// Two tiny page servers on two ports of 127.0.0.1 are two origins: the store's
// settings.cors_origins (set through the API) lists the first and not the second.
//
// From the allowed origin, requests the browser must preflight (JSON bodies,
// Authorization, X-Tenant-Id, Idempotency-Key) go through and their exposed
// headers (RateLimit-*, X-Request-Id, Idempotent-Replayed) can be read; from the
// refused origin the same calls fail with a TypeError before they are sent (the
// server-side state shows the refused write never ran), and a simple GET, which
// the browser does send, cannot be read (a TypeError in cors mode, an opaque
// answer in no-cors mode). Last, the second origin is added to the store's list
// and its calls go through: the store's setting is what decides.
//
// It starts nothing but the page servers and the browser; shopd runs already, with
// SHOPD_BASE_DOMAIN=localhost (the default) and the platform token given:
//
//   node tests/browser/cors.mjs --url http://127.0.0.1:PORT --platform-token TOKEN
//        [--chromium /usr/bin/chromium] [--base-domain localhost]
//
// Each run creates its own store (slug cors-<random>) and deletes it at the end.
// Prints one line per check and "N passed, N failed"; exit status 0 when all passed.
import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
// The npm tools live in tools/node (scripts/deps.sh installs them).
const require = createRequire(resolve(root, 'tools/node/package.json'));
const { chromium } = require('playwright-core');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}
const BASE = arg('url', process.env.SHOPD_URL);
const PTOK = arg('platform-token', process.env.SHOPD_PLATFORM_TOKEN);
const CHROMIUM = arg('chromium', process.env.SHOPD_CHROMIUM || '/usr/bin/chromium');
const BASE_DOMAIN = arg('base-domain', 'localhost');
if (!BASE || !PTOK) {
  console.error('usage: cors.mjs --url http://127.0.0.1:PORT --platform-token TOKEN [--chromium PATH]');
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

// Node-side calls (no Origin: not subject to CORS) to set the scene and to look
// at the server's state afterwards.
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
    /* not JSON: kept as text */
  }
  return { status: res.status, body: json, text };
}

// A page server: one origin, one tiny page. The page only has to exist so that
// the browser's calls carry its origin; the calls are made by page.evaluate.
function pageServer(label) {
  const html = `<!doctype html><meta charset="utf-8"><title>storefront ${label}</title><h1>storefront ${label}</h1>`;
  const srv = createServer((req, res) => {
    if (req.url === '/favicon.ico') {
      res.writeHead(204).end(); /* asked for by every page; a 404 would only add console noise */
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' }).end(html);
  });
  return new Promise((ok, ko) => {
    srv.once('error', ko);
    srv.listen(0, '127.0.0.1', () => ok({ srv, origin: `http://127.0.0.1:${srv.address().port}` }));
  });
}

// Runs in the page: one fetch, and what the page can see of its answer. A
// TypeError is what fetch() gives a page for a call CORS refused.
async function pageFetch([url, init, readAs]) {
  try {
    const res = await fetch(url, init);
    const headers = {};
    for (const name of ['x-request-id', 'ratelimit-remaining', 'ratelimit-limit', 'idempotent-replayed', 'content-type']) {
      const v = res.headers.get(name);
      if (v !== null) headers[name] = v;
    }
    const text = await res.text();
    let body = null;
    if (readAs === 'json') {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    return { ok: true, type: res.type, status: res.status, headers, text, body };
  } catch (e) {
    return { ok: false, name: e.name, message: String(e.message) };
  }
}

const slug = `cors-${randomBytes(4).toString('hex')}`;
const apiPort = new URL(BASE).port;
// The store's own host: a preflight names its store by Host (it carries no
// X-Tenant-Id value), as a storefront calling its store's domain does.
const storeApi = `http://${slug}.${BASE_DOMAIN}:${apiPort}`;

let browser = null;
const servers = [];
let storeId = null;
let rc = 0;
try {
  const allowed = await pageServer('allowed');
  const refused = await pageServer('refused');
  servers.push(allowed.srv, refused.srv);

  // The store, then its allowed origins set through the API (PATCH, as an operator would).
  const made = await api('POST', '/api/v1/stores', { body: { slug, name: 'CORS browser test', currency: 'EUR' } });
  check('POST /api/v1/stores creates the test store', made.status === 201, made.text.slice(0, 300));
  storeId = made.body?.id;
  const patched = await api('PATCH', `/api/v1/stores/${storeId}`, { body: { settings: { cors_origins: [allowed.origin] } } });
  check(`PATCH settings.cors_origins = ["${allowed.origin}"]`, patched.status === 200, patched.text.slice(0, 300));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // This machine has no network beyond loopback: no background fetches, and
    // *.localhost straight to 127.0.0.1 (shopd listens there, not on ::1).
    args: [
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--host-resolver-rules=MAP *.${BASE_DOMAIN} 127.0.0.1`,
    ],
  });
  const context = await browser.newContext();

  // Each page's console: Chromium names the CORS rule a refused call broke there.
  async function open(origin) {
    const page = await context.newPage();
    const log = [];
    page.on('console', (m) => log.push(m.text()));
    const nav = await page.goto(`${origin}/`);
    check(`page ${origin}/ loads`, nav && nav.status() === 200);
    return { page, log, call: (url, init, readAs = 'json') => page.evaluate(pageFetch, [url, init, readAs]) };
  }
  // The console lines about url (Chromium logs the refusal a moment after fetch rejects).
  async function corsLines(p, url) {
    for (let i = 0; i < 20; i++) {
      const lines = p.log.filter((l) => l.includes('CORS policy') && l.includes(url));
      if (lines.length) return lines.join('\n');
      await new Promise((r) => setTimeout(r, 50));
    }
    return '';
  }

  // ---- the allowed origin
  const A = await open(allowed.origin);
  const email = `shopper-${randomBytes(4).toString('hex')}@cors.test`;
  const reg = await A.call(`${storeApi}/api/v1/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-Tenant-Id': slug },
    body: JSON.stringify({ email, password: 'browser-test-pass-1', name: 'First Name' }),
  });
  check('allowed origin: POST /auth/register (JSON body, X-Tenant-Id: preflighted) answers 201 to the page',
    reg.ok && reg.status === 201 && typeof reg.body?.access_token === 'string', reg);
  check('allowed origin: exposed X-Request-Id and RateLimit-Remaining are readable',
    reg.ok && reg.headers['x-request-id'] && /^[0-9]+$/.test(reg.headers['ratelimit-remaining'] || ''), reg.headers);
  const token = reg.body?.access_token;

  const key = `browser-${randomBytes(6).toString('hex')}`;
  const patchMe = {
    method: 'PATCH',
    headers: {
      Authorization: `Bearer ${token}`,
      'X-Tenant-Id': slug,
      'Idempotency-Key': key,
      'Content-Type': 'application/json',
    },
    body: JSON.stringify({ name: 'Allowed Shopper' }),
  };
  const upd = await A.call(`${storeApi}/api/v1/me`, patchMe);
  check('allowed origin: PATCH /me with Authorization, X-Tenant-Id, Idempotency-Key answers 200',
    upd.ok && upd.status === 200 && upd.body?.name === 'Allowed Shopper', upd);
  const again = await A.call(`${storeApi}/api/v1/me`, patchMe);
  check('allowed origin: the same Idempotency-Key replays, Idempotent-Replayed readable',
    again.ok && again.status === 200 && again.headers['idempotent-replayed'] === 'true', again);
  const me = await A.call(`${storeApi}/api/v1/me`, { headers: { Authorization: `Bearer ${token}`, 'X-Tenant-Id': slug } });
  check('allowed origin: GET /me with Authorization answers 200', me.ok && me.status === 200 && me.body?.email === email, me);
  const pub = await A.call(`${storeApi}/api/v1/store`, {});
  check('allowed origin: simple GET /store is readable', pub.ok && pub.status === 200 && pub.body?.slug === slug, pub);

  // ---- the refused origin
  const R = await open(refused.origin);
  const evil = await R.call(`${storeApi}/api/v1/me`, {
    ...patchMe,
    headers: { ...patchMe.headers, 'Idempotency-Key': `${key}-refused` },
    body: JSON.stringify({ name: 'Refused Origin' }),
  });
  check('refused origin: PATCH /me with the same headers fails with a TypeError',
    !evil.ok && evil.name === 'TypeError', evil);
  const evilWhy = await corsLines(R, `${storeApi}/api/v1/me`);
  check('refused origin: Chromium blames the preflight', /preflight/i.test(evilWhy), evilWhy || R.log);
  const meRefused = await R.call(`${storeApi}/api/v1/me`, { headers: { Authorization: `Bearer ${token}`, 'X-Tenant-Id': slug } });
  check('refused origin: GET /me with Authorization fails with a TypeError', !meRefused.ok && meRefused.name === 'TypeError', meRefused);

  const simple = await R.call(`${storeApi}/api/v1/store`, {});
  check('refused origin: simple GET /store cannot be read (TypeError)', !simple.ok && simple.name === 'TypeError', simple);
  const simpleWhy = await corsLines(R, `${storeApi}/api/v1/store`);
  check("refused origin: Chromium says the answer had no Access-Control-Allow-Origin",
    /Access-Control-Allow-Origin/.test(simpleWhy) && !/preflight/i.test(simpleWhy), simpleWhy || R.log);
  const opaque = await R.call(`${storeApi}/api/v1/store`, { mode: 'no-cors' }, 'text');
  check('refused origin: no-cors GET /store gives the page an opaque answer (status 0, no body)',
    opaque.ok && opaque.type === 'opaque' && opaque.status === 0 && opaque.text === '', opaque);

  // The refused write was never sent: a preflight failure stops the request itself.
  const after = await api('GET', '/api/v1/me', { token, tenant: slug });
  check('server state: the refused origin\'s PATCH never ran (name still "Allowed Shopper")',
    after.status === 200 && after.body?.name === 'Allowed Shopper', after.text.slice(0, 300));

  // ---- the setting decides: allow the second origin too, and the same calls go through.
  const both = await api('PATCH', `/api/v1/stores/${storeId}`, {
    body: { settings: { cors_origins: [allowed.origin, refused.origin] } },
  });
  check('PATCH settings.cors_origins adds the second origin', both.status === 200, both.text.slice(0, 300));
  const now = await R.call(`${storeApi}/api/v1/me`, { headers: { Authorization: `Bearer ${token}`, 'X-Tenant-Id': slug } });
  check('second origin, now listed: GET /me with Authorization answers 200', now.ok && now.status === 200 && now.body?.email === email, now);
  const nowSimple = await R.call(`${storeApi}/api/v1/store`, {});
  check('second origin, now listed: simple GET /store is readable', nowSimple.ok && nowSimple.status === 200, nowSimple);
} catch (e) {
  check('the browser test ran to its end', false, e.stack || String(e));
} finally {
  if (browser) await browser.close().catch(() => {});
  for (const s of servers) s.close();
  if (storeId != null) {
    const del = await api('DELETE', `/api/v1/stores/${storeId}`).catch((e) => ({ status: 0, text: String(e) }));
    if (del.status !== 204 && del.status !== 200) console.log(`note: DELETE of store ${slug} answered ${del.status}`);
  }
}
console.log(`\n${passed} passed, ${failed} failed`);
rc = failed === 0 && passed > 0 ? 0 : 1;
process.exit(rc);
