#!/usr/bin/env node
// check.mjs: the live contract check. Drives the main flows against a running shopd
// (it starts nothing) and validates every answer against docs/openapi.yaml: the status
// must be documented for the operation, the JSON body must match the response schema
// (ajv, all errors), and the documented headers (X-Request-Id, Location, ETag,
// WWW-Authenticate, Retry-After, RateLimit-*) must be present and match their schemas;
// one marked `required: false` (Access-Control-Allow-Origin) only when it is sent.
//
//   node tests/contract/check.mjs --url http://127.0.0.1:PORT --platform-token TOKEN
//        [--super-email E --super-password P] [--spec FILE]
//
// The cart -> checkout -> order flows use the test payment provider's magic e-mails
// ("+decline" is declined, "+pending" stays pending; see include/shopd/payment.h).
// With a super admin's credentials (made with `shopd create-super-admin`) the platform
// login and that token's access to store and platform routes are checked too.
// Each run creates its own store (slug ct-<random>) and deletes it at the end.
// Exit status: 0 when every answer matched, 1 otherwise (every mismatch is printed).
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
// The npm tools live in tools/node (scripts/deps.sh installs them).
const require = createRequire(resolve(root, 'tools/node/package.json'));
const YAML = require('yaml');
const Ajv = require('ajv');
const addFormats = require('ajv-formats');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}
const BASE = arg('url', process.env.SHOPD_URL);
const PTOK = arg('platform-token', process.env.SHOPD_PLATFORM_TOKEN);
const SUPER_EMAIL = arg('super-email');
const SUPER_PASSWORD = arg('super-password');
const SPEC = arg('spec', resolve(root, 'docs/openapi.yaml'));
if (!BASE || !PTOK) {
  console.error('usage: check.mjs --url http://127.0.0.1:PORT --platform-token TOKEN [--spec FILE]');
  process.exit(2);
}

const spec = YAML.parse(readFileSync(SPEC, 'utf8'));
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat('password', true);
ajv.addSchema(spec, 'spec');

// "#/components/responses/X" -> the object (one level of $ref, as the document uses).
function deref(o) {
  while (o && o.$ref) {
    o = o.$ref.slice(2).split('/').reduce((a, k) => a[k.replace(/~1/g, '/').replace(/~0/g, '~')], spec);
  }
  return o;
}
function schemaRef(pointer) {
  return { $ref: 'spec#' + pointer };
}

// The operation of a concrete path: the template whose segments match.
function findOperation(method, path) {
  const segs = path.split('?')[0].split('/');
  for (const [tpl, item] of Object.entries(spec.paths)) {
    const t = tpl.split('/');
    if (t.length !== segs.length) continue;
    if (t.every((s, i) => s.startsWith('{') || s === segs[i]) && item[method]) {
      return { tpl, op: item[method] };
    }
  }
  return null;
}

let failures = 0;
let checks = 0;
const seen = new Set();
function fail(what, detail) {
  failures++;
  console.log(`FAIL ${what}\n     ${detail}`);
}

function checkHeader(what, headers, name, h) {
  const value = headers.get(name);
  // A header the document marks `required: false` is conditional (the CORS echo
  // only for an allowed Origin): checked when present.
  if (value == null && deref(h).required === false) return;
  if (value == null) {
    // A header documented with required: false (Idempotent-Replayed) comes only sometimes.
    if (deref(h).required === false) return;
    fail(what, `documented header ${name} is missing`);
    return;
  }
  const schema = deref(h).schema;
  let v = value;
  if (schema && schema.type === 'integer') v = /^-?[0-9]+$/.test(value) ? Number(value) : value;
  const validate = ajv.compile(schema);
  if (!validate(v)) fail(what, `header ${name}: ${JSON.stringify(value)} ${ajv.errorsText(validate.errors)}`);
}

// One request, checked against the document. Returns {status, body, headers}.
async function call(method, path, { token, tenant, body, headers: extra = {}, raw, expect } = {}) {
  const headers = { ...extra };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (tenant) headers['X-Tenant-Id'] = tenant;
  let payload;
  if (raw !== undefined) payload = raw;
  else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(BASE + path, { method: method.toUpperCase(), headers, body: payload });
  const text = await res.text();
  const what = `${method.toUpperCase()} ${path} -> ${res.status}`;
  checks++;
  const found = findOperation(method, path);
  if (!found) {
    fail(what, 'no operation in the document');
    return { status: res.status, body: null, headers: res.headers };
  }
  const { tpl, op } = found;
  seen.add(`${method} ${tpl} ${res.status}`);
  if (expect !== undefined && res.status !== expect) fail(what, `expected status ${expect}; body ${text.slice(0, 300)}`);
  const response = deref(op.responses[String(res.status)]);
  if (!response) {
    fail(what, `status ${res.status} is not documented for ${op.operationId}; body ${text.slice(0, 300)}`);
    return { status: res.status, body: null, headers: res.headers };
  }
  for (const [name, h] of Object.entries(response.headers || {})) {
    // Cache headers are for public readers; store admins get Cache-Control: private only.
    if ((name === 'ETag' || name === 'X-Cache' || name === 'Vary') && res.headers.get('cache-control') === 'private, no-store') continue;
    // A header documented with required: false (X-Cart-Id: guests only) is checked when sent.
    if (deref(h).required === false && res.headers.get(name) == null) continue;
    checkHeader(what, res.headers, name, h);
  }
  let parsed = null;
  const media = response.content ? Object.keys(response.content)[0] : null;
  if (media === 'application/json') {
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      fail(what, `body is not JSON: ${text.slice(0, 200)}`);
      return { status: res.status, body: null, headers: res.headers };
    }
    const code = String(res.status);
    const ptr = op.responses[code].$ref
      ? `${op.responses[code].$ref.slice(1)}/content/application~1json/schema`
      : `/paths/${tpl.replace(/~/g, '~0').replace(/\//g, '~1')}/${method}/responses/${code}/content/application~1json/schema`;
    const validate = ajv.compile(schemaRef(ptr));
    if (!validate(parsed)) {
      const why = validate.errors.map((e) => `${e.instancePath || '(body)'} ${e.message} ${JSON.stringify(e.params)}`);
      fail(what, `body does not match ${op.operationId} ${code}:\n     ${why.join('\n     ')}`);
    }
  } else if (media === null && text.length > 0) {
    fail(what, `documented without a body, got ${text.slice(0, 200)}`);
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

const slug = `ct-${randomBytes(4).toString('hex')}`;
const admin = { email: `admin@${slug}.test`, password: 'contract-admin-pass-1', name: 'Contract Admin' };
const customer = { email: `customer@${slug}.test`, password: 'contract-customer-pass-1', name: 'Contract Customer' };

async function main() {
  await call('get', '/healthz', { expect: 200 });
  await call('get', '/readyz', { expect: 200 });
  await call('get', '/metrics', { expect: 200 });

  // Stores (platform token)
  await call('post', '/api/v1/stores', { token: PTOK, body: { slug, name: 'Contract Store', currency: 'EUR', admin }, expect: 201 });
  await call('post', '/api/v1/stores', { token: PTOK, body: { slug, name: 'Again', currency: 'EUR' }, expect: 409 });
  await call('get', '/api/v1/stores?limit=2', { token: PTOK, expect: 200 });
  await call('get', '/api/v1/stores?page=1&limit=1&status=active', { token: PTOK, expect: 200 });
  await call('get', `/api/v1/stores/${slug}`, { token: PTOK, expect: 200 });
  await call('patch', `/api/v1/stores/${slug}`, { token: PTOK, body: { settings: { theme: 'dark' } }, expect: 200 });
  await call('get', '/api/v1/stores', { expect: 401 });
  await call('get', '/api/v1/store', { tenant: slug, expect: 200 });
  await call('get', '/api/v1/store', { tenant: `${slug}-none`, expect: 404 });

  // Sign-in
  const login = await call('post', '/api/v1/auth/login', { tenant: slug, body: { email: admin.email, password: admin.password }, expect: 200 });
  const A = login.body && login.body.access_token;
  await call('post', '/api/v1/auth/login', { tenant: slug, body: { email: admin.email, password: 'wrong-password-1' }, expect: 401 });
  const reg = await call('post', '/api/v1/auth/register', { tenant: slug, body: customer, expect: 201 });
  const C = reg.body && reg.body.access_token;
  await call('get', '/api/v1/me', { token: C, tenant: slug, expect: 200 });
  await call('patch', '/api/v1/me', { token: C, tenant: slug, body: { name: 'Renamed Customer' }, expect: 200 });
  const ref = await call('post', '/api/v1/auth/refresh', { body: { refresh_token: reg.body && reg.body.refresh_token }, expect: 200 });
  await call('post', '/api/v1/auth/logout', { body: { refresh_token: ref.body && ref.body.refresh_token }, expect: 204 });
  await call('post', '/api/v1/auth/forgot-password', { tenant: slug, body: { email: customer.email }, expect: 202 });
  await call('post', '/api/v1/auth/reset-password', { tenant: slug, body: { token: 'not-a-token', password: 'another-pass-123' }, expect: 400 });

  // The platform's super admin (optional)
  if (SUPER_EMAIL) {
    const sup = await call('post', '/api/v1/platform/auth/login', { body: { email: SUPER_EMAIL, password: SUPER_PASSWORD }, expect: 200 });
    const S = sup.body && sup.body.access_token;
    await call('post', '/api/v1/platform/auth/login', { body: { email: SUPER_EMAIL, password: 'not-the-password-1' }, expect: 401 });
    await call('get', `/api/v1/stores/${slug}`, { token: S, expect: 200 });
    await call('get', '/api/v1/admin/users?role=STORE_ADMIN&status=active', { token: S, tenant: slug, expect: 200 });
    await call('get', '/api/v1/stores', { token: A, expect: 403 });
  }

  // Users
  await call('get', '/api/v1/admin/users?limit=1', { token: A, tenant: slug, expect: 200 });
  const staff = await call('post', '/api/v1/admin/users', { token: A, tenant: slug, body: { email: `staff@${slug}.test`, password: 'contract-staff-pass-1', role: 'STORE_ADMIN' }, expect: 201 });
  const sid = staff.body && staff.body.id;
  await call('get', `/api/v1/admin/users/${sid}`, { token: A, tenant: slug, expect: 200 });
  await call('patch', `/api/v1/admin/users/${sid}`, { token: A, tenant: slug, body: { name: 'Staff' }, expect: 200 });
  await call('delete', `/api/v1/admin/users/${sid}`, { token: A, tenant: slug, expect: 204 });
  await call('get', '/api/v1/admin/users', { token: C, tenant: slug, expect: 403 });
  await call('get', '/api/v1/admin/users/999999999', { token: A, tenant: slug, expect: 404 });

  // Categories
  const root = await call('post', '/api/v1/categories', { token: A, tenant: slug, body: { name: 'Shirts' }, expect: 201 });
  const rid = root.body && root.body.id;
  const tees = await call('post', '/api/v1/categories', { token: A, tenant: slug, body: { name: 'Tees', parent_id: rid, position: 1 }, expect: 201 });
  const cid = tees.body && tees.body.id;
  await call('post', '/api/v1/categories', { token: A, tenant: slug, body: { name: 'Shirts' }, expect: 409 });
  await call('patch', `/api/v1/categories/${rid}`, { token: A, tenant: slug, body: { parent_id: cid }, expect: 409 });
  await call('patch', `/api/v1/categories/${cid}`, { token: A, tenant: slug, body: { position: 2 }, expect: 200 });
  await call('get', '/api/v1/categories', { tenant: slug, expect: 200 });
  const cat = await call('get', `/api/v1/categories/${cid}`, { tenant: slug, expect: 200 });
  await call('get', `/api/v1/categories/${cid}`, { tenant: slug, headers: { 'If-None-Match': cat.headers.get('etag') || '"0"' }, expect: 304 });
  await call('get', '/api/v1/categories', { token: A, tenant: slug, expect: 200 });

  // Attributes
  const size = await call('post', '/api/v1/attributes', { token: A, tenant: slug, body: { name: 'Size', values: ['S', 'M'] }, expect: 201 });
  const aid = size.body && size.body.id;
  const vals = size.body ? size.body.values.map((v) => v.id) : [];
  const l = await call('post', `/api/v1/attributes/${aid}/values`, { token: A, tenant: slug, body: { value: 'L' }, expect: 201 });
  await call('patch', `/api/v1/attributes/${aid}/values/${l.body && l.body.id}`, { token: A, tenant: slug, body: { position: 5 }, expect: 200 });
  await call('patch', `/api/v1/attributes/${aid}`, { token: A, tenant: slug, body: { position: 1 }, expect: 200 });
  await call('get', '/api/v1/attributes', { tenant: slug, expect: 200 });
  await call('get', `/api/v1/attributes/${aid}`, { tenant: slug, expect: 200 });
  await call('get', `/api/v1/attributes/${aid}/values`, { tenant: slug, expect: 200 });

  // Products and variants
  const prod = await call('post', '/api/v1/products', { token: A, tenant: slug,
    body: { name: 'Basic Tee', base_price: 1999, status: 'active', brand: 'Acme', category_id: cid, option_value_ids: vals, attributes: { material: 'cotton' } }, expect: 201 });
  const pid = prod.body && prod.body.id;
  await call('post', '/api/v1/products', { token: A, tenant: slug, body: { name: 'Draft', base_price: 500 }, expect: 201 });
  await call('post', '/api/v1/products', { token: A, tenant: slug, body: { name: 'Basic Tee', base_price: 1 }, expect: 409 });
  await call('post', '/api/v1/products', { token: A, tenant: slug, body: { name: '', base_price: -1 }, expect: 422 });
  await call('post', '/api/v1/products', { token: A, tenant: slug, raw: '{"name":', headers: { 'Content-Type': 'application/json' }, expect: 400 });
  // The bulk import: one row in (its variant, its category by slug), one refused (a taken slug).
  await call('post', '/api/v1/imports/products', { token: A, tenant: slug, expect: 200,
    body: { rows: [{ name: 'Imported Mug', base_price: 900, status: 'draft', category: 'ct-mugs', variants: [{ sku: 'CT-MUG-M', options: { Size: 'M' }, stock: 2 }] },
                   { name: 'Basic Tee', base_price: 1 }] } });
  await call('post', '/api/v1/imports/products', { token: A, tenant: slug, body: { rows: [] }, expect: 422 });
  await call('post', '/api/v1/products', { token: A, tenant: slug, raw: 'name=x', headers: { 'Content-Type': 'text/plain' }, expect: 415 });
  await call('post', '/api/v1/products', { tenant: slug, body: { name: 'x', base_price: 1 }, expect: 401 });
  await call('post', '/api/v1/products', { token: C, tenant: slug, body: { name: 'x', base_price: 1 }, expect: 403 });
  await call('post', `/api/v1/products/${pid}/variants/generate`, { token: A, tenant: slug, expect: 201 });
  await call('post', `/api/v1/products/${pid}/variants/generate`, { token: A, tenant: slug, expect: 200 });
  const v = await call('post', `/api/v1/products/${pid}/variants`, { token: A, tenant: slug,
    body: { sku: `${slug}-XL`.toUpperCase(), options: { Size: 'XL' }, price: 2499, stock: 5, weight_g: 200, barcode: '4006381333931' }, expect: 201 });
  const vid = v.body && v.body.id;
  await call('patch', `/api/v1/variants/${vid}`, { token: A, tenant: slug, body: { barcode: null }, expect: 200 });
  await call('patch', `/api/v1/variants/${vid}/inventory`, { token: A, tenant: slug, body: { adjust: -2, reason: 'sold' }, expect: 200 });
  await call('patch', `/api/v1/variants/${vid}/inventory`, { token: A, tenant: slug, body: { adjust: -100 }, expect: 409 });
  await call('patch', `/api/v1/variants/${vid}/inventory`, { token: A, tenant: slug, body: { set: 10 }, expect: 200 });
  await call('get', `/api/v1/variants/${vid}/movements`, { token: A, tenant: slug, expect: 200 });
  await call('patch', `/api/v1/products/${pid}`, { token: A, tenant: slug, body: { description: 'A plain tee.' }, expect: 200 });
  // Idempotency-Key: a first answer, its replay, another body under the key, a malformed key.
  const ik = `contract-${slug}`;
  const first = await call('patch', `/api/v1/products/${pid}`, { token: A, tenant: slug, body: { brand: 'Acme' }, headers: { 'Idempotency-Key': ik }, expect: 200 });
  const again = await call('patch', `/api/v1/products/${pid}`, { token: A, tenant: slug, body: { brand: 'Acme' }, headers: { 'Idempotency-Key': ik }, expect: 200 });
  if (again.headers.get('idempotent-replayed') !== 'true' || first.headers.get('idempotent-replayed') != null)
    fail('idempotency', 'the retry must carry Idempotent-Replayed: true and the first answer must not');
  await call('patch', `/api/v1/products/${pid}`, { token: A, tenant: slug, body: { brand: 'Other' }, headers: { 'Idempotency-Key': ik }, expect: 422 });
  await call('patch', `/api/v1/products/${pid}`, { token: A, tenant: slug, body: { brand: 'Acme' }, headers: { 'Idempotency-Key': 'k'.repeat(256) }, expect: 400 });
  const page = await call('get', '/api/v1/products?limit=1&sort=price', { tenant: slug, expect: 200 });
  const cursor = page.body && page.body.next_cursor;
  if (cursor) await call('get', `/api/v1/products?limit=1&sort=price&cursor=${encodeURIComponent(cursor)}`, { tenant: slug, expect: 200 });
  await call('get', `/api/v1/products?category=${rid}&min_price=100&max_price=5000&brand=Acme&q=tee&page=1`, { tenant: slug, expect: 200 });
  // The whole products, and the cached page's gzip copy (fetch inflates it).
  await call('get', '/api/v1/products?limit=2&sort=price&expand=variants', { tenant: slug, expect: 200 });
  await call('get', '/api/v1/products?limit=2&sort=price&expand=variants', { tenant: slug, headers: { 'Accept-Encoding': 'gzip' }, expect: 200 });
  await call('get', '/api/v1/products?expand=all', { tenant: slug, expect: 422 });
  await call('get', '/api/v1/products?status=draft', { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/products?status=draft', { tenant: slug, expect: 403 });
  await call('get', '/api/v1/products?limit=0&sort=cheapest', { tenant: slug, expect: 422 });
  await call('get', '/api/v1/products?sort=price&sort=-price', { tenant: slug, expect: 400 });
  await call('get', '/api/v1/products?color=red', { tenant: slug, expect: 400 });
  await call('get', '/api/v1/products/basic-tee', { tenant: slug, expect: 200 });
  await call('get', `/api/v1/products/${pid}`, { tenant: slug, expect: 200 });
  await call('get', '/api/v1/products/999999999', { tenant: slug, expect: 404 });
  await call('get', `/api/v1/products/${pid}/variants`, { tenant: slug, expect: 200 });
  // Search: full text, a typo, facets under filters, a page, refusals; suggestions.
  const hits = await call('get', '/api/v1/search?q=tee&limit=1', { tenant: slug, expect: 200 });
  const scur = hits.body && hits.body.next_cursor;
  if (scur) await call('get', `/api/v1/search?q=tee&limit=1&cursor=${encodeURIComponent(scur)}`, { tenant: slug, expect: 200 });
  await call('get', '/api/v1/search?q=tshrit', { tenant: slug, expect: 200 });
  await call('get', `/api/v1/search?category=${rid}&brand=Acme&price_min=100&price_max=5000&in_stock=true&attr.Size=M&sort=-price`, { tenant: slug, expect: 200 });
  await call('get', '/api/v1/search?sort=cheapest', { tenant: slug, expect: 422 });
  await call('get', '/api/v1/search?colour=red', { tenant: slug, expect: 400 });
  await call('get', '/api/v1/search/suggest?q=bas', { tenant: slug, expect: 200 });
  await call('get', '/api/v1/search/suggest', { tenant: slug, expect: 422 });
  await call('get', `/api/v1/variants/${vid}`, { tenant: slug, expect: 200 });

  // Pricing: addresses, shipping zones and rates, taxes, discounts
  const aBody = { name: 'Ada Lovelace', line1: '1 Main St', city: 'London', postal_code: 'N1 9GU', country: 'GB', is_default_shipping: true };
  const adr = await call('post', '/api/v1/me/addresses', { token: C, tenant: slug, body: aBody, expect: 201 });
  const adrId = adr.body && adr.body.id;
  await call('post', '/api/v1/me/addresses', { token: C, tenant: slug, body: { ...aBody, country: 'XX' }, expect: 422 });
  await call('get', '/api/v1/me/addresses', { token: C, tenant: slug, expect: 200 });
  await call('get', `/api/v1/me/addresses/${adrId}`, { token: C, tenant: slug, expect: 200 });
  await call('patch', `/api/v1/me/addresses/${adrId}`, { token: C, tenant: slug, body: { line2: 'Flat 2', is_default_billing: true }, expect: 200 });
  await call('get', '/api/v1/me/addresses/999999999', { token: C, tenant: slug, expect: 404 });
  await call('get', '/api/v1/me/addresses', { tenant: slug, expect: 401 });
  const zone = await call('post', '/api/v1/admin/shipping-zones', { token: A, tenant: slug, body: { name: 'EU', countries: ['DE', 'FR'] }, expect: 201 });
  const zid = zone.body && zone.body.id;
  await call('post', '/api/v1/admin/shipping-zones', { token: A, tenant: slug, body: { name: 'Other', countries: ['FR'] }, expect: 409 });
  await call('post', '/api/v1/admin/shipping-zones', { token: A, tenant: slug, body: { name: '' }, expect: 422 });
  await call('get', '/api/v1/admin/shipping-zones', { token: C, tenant: slug, expect: 403 });
  const rate = await call('post', `/api/v1/admin/shipping-zones/${zid}/rates`, { token: A, tenant: slug, body: { name: 'Standard', kind: 'flat', price: 500, free_above: 5000 }, expect: 201 });
  const rid2 = rate.body && rate.body.id;
  await call('post', `/api/v1/admin/shipping-zones/${zid}/rates`, { token: A, tenant: slug, body: { name: 'Light', kind: 'weight', price: 300, min_weight_g: 0, max_weight_g: 1000 }, expect: 201 });
  await call('post', `/api/v1/admin/shipping-zones/${zid}/rates`, { token: A, tenant: slug, body: { name: 'Bad', kind: 'flat', price: 1, min_weight_g: 5 }, expect: 422 });
  await call('patch', `/api/v1/admin/shipping-rates/${rid2}`, { token: A, tenant: slug, body: { price: 600 }, expect: 200 });
  await call('get', `/api/v1/admin/shipping-zones/${zid}/rates`, { token: A, tenant: slug, expect: 200 });
  await call('patch', `/api/v1/admin/shipping-zones/${zid}`, { token: A, tenant: slug, body: { countries: ['DE', 'AT'] }, expect: 200 });
  await call('get', `/api/v1/admin/shipping-zones/${zid}`, { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/shipping-zones', { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/shipping-zones/999999999', { token: A, tenant: slug, expect: 404 });
  const tax = await call('post', '/api/v1/admin/tax-rates', { token: A, tenant: slug, body: { country: 'DE', rate_bps: 1900, name: 'MwSt' }, expect: 201 });
  const tid = tax.body && tax.body.id;
  await call('post', '/api/v1/admin/tax-rates', { token: A, tenant: slug, body: { country: 'US', region: 'CA', rate_bps: 725, name: 'CA' }, expect: 201 });
  await call('post', '/api/v1/admin/tax-rates', { token: A, tenant: slug, body: { country: 'DE', rate_bps: 700, name: 'again' }, expect: 409 });
  await call('patch', `/api/v1/admin/tax-rates/${tid}`, { token: A, tenant: slug, body: { rate_bps: 2000 }, expect: 200 });
  await call('patch', `/api/v1/admin/tax-rates/${tid}`, { token: A, tenant: slug, body: { rate_bps: 10001 }, expect: 422 });
  await call('get', '/api/v1/admin/tax-rates', { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/tax-settings', { token: A, tenant: slug, expect: 200 });
  await call('patch', '/api/v1/admin/tax-settings', { token: A, tenant: slug, body: { prices_include_tax: true }, expect: 200 });
  await call('patch', '/api/v1/admin/tax-settings', { token: A, tenant: slug, body: { tax_shipping: 'yes' }, expect: 422 });
  await call('get', '/api/v1/admin/payments/stripe', { token: A, tenant: slug, expect: 404 });
  await call('patch', '/api/v1/admin/payments/stripe', { token: A, tenant: slug, body: { secret_key: 'pk_public' }, expect: 422 });
  await call('patch', '/api/v1/admin/payments/stripe', { token: A, tenant: slug, body: { secret_key: 'sk_test_contract_0000', webhook_secrets: ['whsec_contract_0000'] }, expect: 200 });
  await call('get', '/api/v1/admin/payments/stripe', { token: A, tenant: slug, expect: 200 });
  await call('post', `/api/v1/payments/stripe/webhook/${slug}`, { raw: '{"id":"evt_1"}', headers: { 'Content-Type': 'application/json', 'Stripe-Signature': 't=1,v1=00' }, expect: 400 });
  await call('post', '/api/v1/payments/stripe/webhook/no-such-store-here', { raw: '{}', headers: { 'Content-Type': 'application/json', 'Stripe-Signature': 't=1,v1=00' }, expect: 404 });
  const disc = await call('post', '/api/v1/admin/discounts', { token: A, tenant: slug,
    body: { code: 'SUMMER10', kind: 'percent', value: 1000, starts_at: '2026-01-01T00:00:00Z', ends_at: '2099-01-01T00:00:00Z', usage_limit: 100 }, expect: 201 });
  const did = disc.body && disc.body.id;
  await call('post', '/api/v1/admin/discounts', { token: A, tenant: slug, body: { code: 'summer10', kind: 'fixed', value: 100 }, expect: 409 });
  await call('post', '/api/v1/admin/discounts', { token: A, tenant: slug, body: { code: 'bad code', kind: 'bogo', value: 0 }, expect: 422 });
  await call('patch', `/api/v1/admin/discounts/${did}`, { token: A, tenant: slug, body: { per_customer_limit: 1, active: false }, expect: 200 });
  await call('get', `/api/v1/admin/discounts/${did}`, { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/discounts', { token: A, tenant: slug, expect: 200 });
  await call('delete', `/api/v1/admin/discounts/${did}`, { token: A, tenant: slug, expect: 204 });
  await call('get', `/api/v1/admin/discounts/${did}`, { token: A, tenant: slug, expect: 404 });
  await call('delete', `/api/v1/admin/tax-rates/${tid}`, { token: A, tenant: slug, expect: 204 });
  await call('delete', `/api/v1/admin/shipping-rates/${rid2}`, { token: A, tenant: slug, expect: 204 });
  await call('delete', `/api/v1/admin/shipping-zones/${zid}`, { token: A, tenant: slug, expect: 204 });
  await call('delete', `/api/v1/me/addresses/${adrId}`, { token: C, tenant: slug, expect: 204 });

  // Carts, checkout and orders (guest carts by X-Cart-Id, the test payment provider)
  const address = { name: 'Ada Lovelace', line1: 'Invalidenstr. 1', city: 'Berlin', postal_code: '10115', country: 'DE' };
  const stocked = async (sku, stock, price) => {
    const r = await call('post', `/api/v1/products/${pid}/variants`, { token: A, tenant: slug, body: { sku: `${slug}-${sku}`.toUpperCase(), options: { Size: sku }, price, stock }, expect: 201 });
    return r.body && r.body.id;
  };
  const va = await stocked('CA', 10, 2000);
  const vb = await stocked('CB', 5, 500);
  const cartOf = (r) => r.headers.get('x-cart-id') || '';
  const g = (id) => ({ 'X-Cart-Id': id });
  const shipZone = await call('post', '/api/v1/admin/shipping-zones', { token: A, tenant: slug, body: { name: 'Germany', countries: ['DE'] }, expect: 201 });
  await call('post', `/api/v1/admin/shipping-zones/${shipZone.body && shipZone.body.id}/rates`, { token: A, tenant: slug, body: { name: 'Standard', kind: 'flat', price: 490 }, expect: 201 });
  const quote = await call('get', '/api/v1/checkout/shipping-rates?country=DE', { tenant: slug, expect: 200 });
  const rateId = quote.body && quote.body.rates.length ? quote.body.rates[0].id : 1;
  const checkout = (headers, extra, expect, token) =>
    call('post', '/api/v1/checkout', { token, tenant: slug, headers, body: { shipping_address: address, shipping_rate_id: rateId, ...extra }, expect });

  await call('get', '/api/v1/cart', { tenant: slug, expect: 200 });
  const firstAdd = await call('post', '/api/v1/cart/add', { tenant: slug, body: { variant_id: va, quantity: 2 }, expect: 200 });
  const G = cartOf(firstAdd);
  await call('post', '/api/v1/cart/add', { tenant: slug, headers: g(G), body: { variant_id: vb }, expect: 200 });
  await call('post', '/api/v1/cart/add', { tenant: slug, headers: g(G), body: { variant_id: va, quantity: 9 }, expect: 409 });
  await call('post', '/api/v1/cart/add', { tenant: slug, headers: g(G), body: { variant_id: 999999999 }, expect: 404 });
  await call('post', '/api/v1/cart/add', { tenant: slug, headers: g(G), body: { quantity: 0 }, expect: 422 });
  await call('patch', `/api/v1/cart/item/${va}`, { tenant: slug, headers: g(G), body: { quantity: 3 }, expect: 200 });
  await call('patch', `/api/v1/cart/item/${va}`, { tenant: slug, headers: g(G), body: { quantity: 1000 }, expect: 422 });
  await call('patch', `/api/v1/cart/item/${va}`, { tenant: slug, headers: g(G), body: { quantity: 11 }, expect: 409 });
  await call('delete', `/api/v1/cart/item/${vb}`, { tenant: slug, headers: g(G), expect: 200 });
  await call('delete', `/api/v1/cart/item/${vb}`, { tenant: slug, headers: g(G), expect: 404 });
  await call('post', '/api/v1/cart/discount', { tenant: slug, headers: g(G), body: { code: 'NO-SUCH-CODE' }, expect: 404 });
  await call('delete', '/api/v1/cart/discount', { tenant: slug, headers: g(G), expect: 200 });
  await call('get', '/api/v1/cart', { tenant: slug, headers: g(G), expect: 200 });
  await call('get', '/api/v1/checkout/shipping-rates?country=DE', { tenant: slug, headers: g(G), expect: 200 });
  await call('get', '/api/v1/checkout/shipping-rates?country=de', { tenant: slug, headers: g(G), expect: 422 });
  await call('get', '/api/v1/checkout/shipping-rates?country=DE&zip=1', { tenant: slug, expect: 400 });
  await checkout(g(G), {}, 422); // a guest needs an e-mail
  await checkout(g(G), { email: `guest@${slug}.test`, expected_total: 1 }, 409); // price_changed
  const placed = await checkout(g(G), { email: `guest@${slug}.test` }, 201);
  const order = placed.body && placed.body.id;
  await checkout(g(G), { email: `guest@${slug}.test` }, 409); // cart_checked_out
  // A checkout under an Idempotency-Key (kept in PostgreSQL with the order): the retry replays it.
  const ck = `checkout-${slug}`;
  const c7 = cartOf(await call('post', '/api/v1/cart/add', { tenant: slug, body: { variant_id: va }, expect: 200 }));
  const k1 = await checkout({ ...g(c7), 'Idempotency-Key': ck }, { email: `guest@${slug}.test` }, 201);
  const k2 = await checkout({ ...g(c7), 'Idempotency-Key': ck }, { email: `guest@${slug}.test` }, 201);
  if (k2.headers.get('idempotent-replayed') !== 'true' || JSON.stringify(k1.body) !== JSON.stringify(k2.body))
    fail('idempotency', 'a checkout retried under its key must replay the same order with Idempotent-Replayed: true');
  await checkout({ ...g(c7), 'Idempotency-Key': ck }, { email: `other@${slug}.test` }, 422);
  await call('get', '/api/v1/cart', { tenant: slug, headers: g(G), expect: 200 });

  // An empty cart, a cleared one, short stock, an unavailable line, a declined payment
  await call('delete', '/api/v1/cart', { tenant: slug, expect: 404 });
  const c2 = cartOf(await call('post', '/api/v1/cart/add', { tenant: slug, body: { variant_id: vb, quantity: 2 }, expect: 200 }));
  await call('delete', '/api/v1/cart', { tenant: slug, headers: g(c2), expect: 200 });
  await checkout(g(c2), { email: `guest@${slug}.test` }, 422); // cart_empty
  const c3 = cartOf(await call('post', '/api/v1/cart/add', { tenant: slug, body: { variant_id: vb, quantity: 4 }, expect: 200 }));
  await call('patch', `/api/v1/variants/${vb}/inventory`, { token: A, tenant: slug, body: { set: 1 }, expect: 200 });
  await call('get', '/api/v1/cart', { tenant: slug, headers: g(c3), expect: 200 });
  await checkout(g(c3), { email: `guest@${slug}.test` }, 409); // insufficient_stock
  await call('patch', `/api/v1/variants/${vb}/inventory`, { token: A, tenant: slug, body: { set: 5 }, expect: 200 });
  const mug = await call('post', '/api/v1/products', { token: A, tenant: slug, body: { name: 'Mug', base_price: 900, status: 'active' }, expect: 201 });
  const mugId = mug.body && mug.body.id;
  const mv = await call('post', `/api/v1/products/${mugId}/variants`, { token: A, tenant: slug, body: { sku: `${slug}-MUG`.toUpperCase(), stock: 3 }, expect: 201 });
  const c4 = cartOf(await call('post', '/api/v1/cart/add', { tenant: slug, body: { variant_id: mv.body && mv.body.id }, expect: 200 }));
  await call('patch', `/api/v1/products/${mugId}`, { token: A, tenant: slug, body: { status: 'draft' }, expect: 200 });
  await call('get', '/api/v1/cart', { tenant: slug, headers: g(c4), expect: 200 });
  await checkout(g(c4), { email: `guest@${slug}.test` }, 409); // cart_unavailable
  await call('delete', `/api/v1/products/${mugId}`, { token: A, tenant: slug, expect: 204 });
  const c5 = cartOf(await call('post', '/api/v1/cart/add', { tenant: slug, body: { variant_id: va }, expect: 200 }));
  await checkout(g(c5), { email: `card+decline@${slug}.test` }, 402);

  // A signed-in customer whose payments stay pending: a guest cart merged at login, the
  // customer's own cart, checkout, their orders, a cancel that returns the stock.
  const slow = { email: `wait+pending@${slug}.test`, password: 'contract-pending-pass-1', name: 'Pending Customer' };
  await call('post', '/api/v1/auth/register', { tenant: slug, body: slow, expect: 201 });
  const c6 = cartOf(await call('post', '/api/v1/cart/add', { tenant: slug, body: { variant_id: va }, expect: 200 }));
  const plog = await call('post', '/api/v1/auth/login', { tenant: slug, headers: g(c6), body: { email: slow.email, password: slow.password }, expect: 200 });
  const P = plog.body && plog.body.access_token;
  await call('post', '/api/v1/cart/add', { token: P, tenant: slug, body: { variant_id: vb, quantity: 1 }, expect: 200 });
  await call('get', '/api/v1/cart', { token: P, tenant: slug, expect: 200 });
  const pend = await checkout({}, {}, 201, P);
  const pendId = pend.body && pend.body.id;
  await call('get', '/api/v1/orders', { token: P, tenant: slug, expect: 200 });
  await call('get', `/api/v1/orders/${pendId}`, { token: P, tenant: slug, expect: 200 });
  await call('get', `/api/v1/orders/${order}`, { token: P, tenant: slug, expect: 404 });
  await call('post', `/api/v1/orders/${pendId}/cancel`, { token: P, tenant: slug, expect: 200 });
  await call('post', `/api/v1/orders/${pendId}/cancel`, { token: P, tenant: slug, expect: 409 });
  await call('get', '/api/v1/orders', { tenant: slug, expect: 401 });

  // The store admin: lists and filters, the state machine, refunds
  const pageOne = await call('get', '/api/v1/orders?limit=1', { token: A, tenant: slug, expect: 200 });
  const oc = pageOne.body && pageOne.body.next_cursor;
  if (oc) await call('get', `/api/v1/orders?limit=1&cursor=${oc}`, { token: A, tenant: slug, expect: 200 });
  await call('get', `/api/v1/orders?status=PAID&q=${encodeURIComponent(`guest@${slug}`)}&from=2020-01-01T00:00:00Z&to=2999-01-01T00:00:00Z`, { token: A, tenant: slug, expect: 200 });
  await call('get', `/api/v1/orders?customer=${encodeURIComponent(slow.email)}`, { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/orders?status=LOST&limit=500', { token: A, tenant: slug, expect: 422 });
  await call('get', '/api/v1/orders?from=not-a-date', { token: A, tenant: slug, expect: 422 });
  await call('get', `/api/v1/orders/${order}`, { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/orders/999999999', { token: A, tenant: slug, expect: 404 });
  const tr = (to, extra = {}, token = A, expect = 200) => call('post', `/api/v1/orders/${order}/transitions`, { token, tenant: slug, body: { to, ...extra }, expect });
  await tr('SHIPPED', {}, A, 409);
  await tr('PROCESSING', { note: 'packing' });
  await tr('SHIPPED', { tracking_number: '1Z999AA10123456784', note: 'DHL' });
  await tr('LOST', {}, A, 422);
  await tr('DELIVERED', {}, C, 403);
  await tr('DELIVERED', {}, null, 401);
  const refunds = `/api/v1/orders/${order}/refunds`;
  const item = placed.body && placed.body.items[0].id;
  await call('post', refunds, { token: A, tenant: slug, body: { amount: 1000, reason: 'damaged', restock_items: [{ item_id: item, quantity: 1 }] }, expect: 201 });
  await call('post', refunds, { token: A, tenant: slug, body: { amount: 13, reason: 'the test provider refuses 13' }, expect: 201 });
  await call('post', refunds, { token: A, tenant: slug, body: { amount: 100000000 }, expect: 409 });
  await call('post', refunds, { token: A, tenant: slug, body: { amount: 0 }, expect: 422 });
  await call('post', `/api/v1/orders/${pendId}/refunds`, { token: A, tenant: slug, body: { amount: 100 }, expect: 409 });
  await call('post', '/api/v1/orders/999999999/refunds', { token: A, tenant: slug, body: { amount: 100 }, expect: 404 });
  await call('post', refunds, { token: C, tenant: slug, body: { amount: 100 }, expect: 403 });
  await tr('DELIVERED');
  await tr('CANCELLED', {}, A, 409);

  // Outgoing webhooks and dead letters (nothing is delivered here: the endpoint is not
  // reachable, so its jobs wait in their retry schedule), the store's e-mail settings.
  const hook = await call('post', '/api/v1/admin/webhooks', { token: A, tenant: slug, body: { url: 'https://hooks.example.com/shopd', events: ['order.placed', 'order.paid'], description: 'contract' }, expect: 201 });
  const hid = hook.body && hook.body.id;
  await call('post', '/api/v1/admin/webhooks', { token: A, tenant: slug, body: { url: 'ftp://x', events: ['order.exploded'] }, expect: 422 });
  await call('get', '/api/v1/admin/webhooks', { token: A, tenant: slug, expect: 200 });
  await call('get', `/api/v1/admin/webhooks/${hid}`, { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/webhooks/999999999', { token: A, tenant: slug, expect: 404 });
  await call('patch', `/api/v1/admin/webhooks/${hid}`, { token: A, tenant: slug, body: { events: ['*'] }, expect: 200 });
  await call('get', `/api/v1/admin/webhooks/${hid}/deliveries`, { token: A, tenant: slug, expect: 200 });
  await call('post', `/api/v1/admin/webhooks/${hid}/replay`, { token: A, tenant: slug, body: { from: '2020-01-01T00:00:00Z', to: '2999-01-01T00:00:00Z' }, expect: 202 });
  await call('post', `/api/v1/admin/webhooks/${hid}/replay`, { token: A, tenant: slug, body: {}, expect: 422 });
  await call('post', `/api/v1/admin/webhooks/${hid}/replay`, { token: A, tenant: slug, body: { delivery_id: 999999999 }, expect: 404 });
  await call('get', `/api/v1/admin/webhooks/${hid}`, { token: C, tenant: slug, expect: 403 });
  await call('delete', `/api/v1/admin/webhooks/${hid}`, { token: A, tenant: slug, expect: 204 });
  await call('get', '/api/v1/admin/jobs/dead-letters', { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/jobs/dead-letters?state=discarded', { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/jobs/dead-letters/999999999', { token: A, tenant: slug, expect: 404 });
  await call('post', '/api/v1/admin/jobs/dead-letters/999999999/retry', { token: A, tenant: slug, expect: 404 });
  await call('delete', '/api/v1/admin/jobs/dead-letters/999999999', { token: A, tenant: slug, expect: 404 });
  await call('patch', `/api/v1/stores/${slug}`, { token: PTOK, body: { settings: { email: { sender_name: 'Contract Shop', logo_url: 'https://cdn.example.com/logo.png', reply_to: `help@${slug}.test` } } }, expect: 200 });
  await call('patch', `/api/v1/stores/${slug}`, { token: PTOK, body: { settings: { email: { logo_url: 'javascript:alert(1)' } } }, expect: 422 });
  // Analytics: the rollups follow the relay (one poll interval), so wait for a best seller
  // before checking the shapes; then the refusals.
  for (let i = 0; i < 50; i++) {
    const top = await call('get', '/api/v1/admin/analytics/top-products?by=units&limit=5', { token: A, tenant: slug, expect: 200 });
    if (top.body && top.body.data && top.body.data.length > 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await call('get', '/api/v1/admin/analytics/sales', { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/analytics/sales?from=2026-01-01&to=2026-03-31&interval=month', { token: A, tenant: slug, expect: 200 });
  await call('get', '/api/v1/admin/analytics/sales?from=2026-02-30', { token: A, tenant: slug, expect: 422 });
  await call('get', '/api/v1/admin/analytics/sales?interval=year', { token: A, tenant: slug, expect: 422 });
  await call('get', '/api/v1/admin/analytics/sales?period=day', { token: A, tenant: slug, expect: 400 });
  await call('get', '/api/v1/admin/analytics/sales', { token: C, tenant: slug, expect: 403 });
  await call('get', '/api/v1/admin/analytics/top-products?limit=0', { token: A, tenant: slug, expect: 422 });
  await call('post', '/api/v1/admin/analytics/rebuild', { token: PTOK, tenant: slug, expect: 200 });
  await call('post', '/api/v1/admin/analytics/rebuild', { token: A, tenant: slug, expect: 403 });

  // Deletes
  await call('delete', `/api/v1/variants/${vid}`, { token: A, tenant: slug, expect: 204 });
  await call('delete', `/api/v1/categories/${rid}`, { token: A, tenant: slug, expect: 409 });
  await call('delete', `/api/v1/categories/${rid}?move_to=root`, { token: A, tenant: slug, expect: 204 });
  await call('delete', `/api/v1/products/${pid}`, { token: A, tenant: slug, expect: 204 });
  await call('delete', `/api/v1/attributes/${aid}/values/${vals[0]}`, { token: A, tenant: slug, expect: 204 });
  await call('delete', `/api/v1/attributes/${aid}`, { token: A, tenant: slug, expect: 204 });
  await call('delete', `/api/v1/stores/${slug}`, { token: PTOK, expect: 204 });
  await call('get', `/api/v1/stores/${slug}`, { token: PTOK, expect: 404 });
}

try {
  await main();
} catch (e) {
  fail('run', e.stack || String(e));
}
const ops = new Set([...seen].map((s) => s.split(' ').slice(0, 2).join(' ')));
let total = 0;
const missed = [];
for (const [tpl, item] of Object.entries(spec.paths)) {
  for (const m of Object.keys(item).filter((k) => k !== 'parameters')) {
    total++;
    if (!ops.has(`${m} ${tpl}`)) missed.push(`${m.toUpperCase()} ${tpl}`);
  }
}
if (missed.length) console.log(`not exercised: ${missed.join(', ')}`);
console.log(`contract: ${checks} answers checked, ${ops.size} of ${total} operations covered, ${failures} mismatches`);
process.exit(failures ? 1 : 0);
