// fake_stripe.mjs: a small stand-in for Stripe's API, for the integration
// tests (tests/integration/test_stripe.c). Node's standard library only.
//
//   node fake_stripe.mjs            listens on a free port of 127.0.0.1 and
//                                   prints "PORT <n>" as its first line
//
// Stripe's side: POST /v1/payment_intents, GET /v1/payment_intents/:id,
// POST /v1/payment_intents/:id/capture and /cancel (capture_method=manual:
// a succeeding card is authorized, requires_capture, until captured, all or
// part; a cancel releases the hold), POST /v1/refunds, with
// form-encoded bodies, Bearer sk_ keys and Stripe's idempotency rules: the same
// Idempotency-Key with the same parameters answers the saved answer; with
// other parameters 400 idempotency_error; while the first is still running 409.
// A fault (500, stall, malformed JSON, a huge body) is not saved, as a request
// that never ran.
//
// The test's side (JSON): POST /_control {create, refund, stall_ms} sets what
// the next creations and refunds do (next_pi_id: the next PaymentIntent's id); GET /_stats counts PaymentIntents and
// requests; POST /_webhook {url, secret, type, pi, ...} signs an event like
// Stripe (t=..., v1=HMAC-SHA256 of "t.body") and delivers it, maybe several
// times, concurrently, or with a stale timestamp; "signer":"stripe" has the
// header made by Stripe's own library.
import crypto from 'node:crypto';
import http from 'node:http';
import { createRequire } from 'node:module';

// Stripe's official node library (tools/node, pinned): its
// webhooks.generateTestHeaderString makes the headers of "signer":"stripe"
// deliveries, so shopd's check is held to Stripe's own, not to ours.
let stripeLib = null;
try {
  const Stripe = createRequire(new URL('../../tools/node/package.json', import.meta.url))('stripe');
  stripeLib = new Stripe('sk_test_fake_library_only');
} catch (e) {
  stripeLib = null;
}

const state = {
  create: 'requires_payment_method', // succeed, decline, insufficient_funds, action, processing, 500, stall, malformed, huge
  refund: 'succeed', // succeed, pending, fail, 500
  capture: 'succeed', // succeed, 500, stall
  stall_ms: 30000,
  delay_ms: 0, // each creation answers after this long (then as `create` says)
  pis: new Map(),
  refunds: new Map(),
  keys: new Map(), // key -> {params, status, body} or {inflight: true, params}
  creates: 0,
  requests: 0,
  captures: 0, // captures done (a replayed key is not counted again)
  cancels: 0, // PaymentIntents cancelled (an authorization's hold released)
  next_pi_id: '', // the id the next PaymentIntent gets (a test that sends its events first)
  n: 0,
};

function id(prefix) {
  state.n += 1;
  return `${prefix}_${state.n.toString().padStart(6, '0')}${crypto.randomBytes(4).toString('hex')}`;
}

function formToObject(text) {
  const out = {};
  for (const [k, v] of new URLSearchParams(text)) out[k] = v;
  return out;
}

function metadataOf(params) {
  const m = {};
  for (const [k, v] of Object.entries(params)) {
    const x = /^metadata\[(.+)\]$/.exec(k);
    if (x) m[x[1]] = v;
  }
  return m;
}

function send(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function cardError(code, decline, pi) {
  return {
    error: { type: 'card_error', code, decline_code: decline, message: `Your card was declined (${decline}).`, payment_intent: pi },
  };
}

// Faults that answer nothing useful; true if the request was taken over.
function fault(mode, res) {
  if (mode === '500') {
    send(res, 500, { error: { type: 'api_error', message: 'fake Stripe is down' } });
    return true;
  }
  if (mode === 'stall') {
    setTimeout(() => { if (!res.writableEnded) send(res, 500, { error: { type: 'api_error' } }); }, state.stall_ms);
    return true;
  }
  if (mode === 'malformed') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"id": "pi_broken", "status": ');
    return true;
  }
  if (mode === 'huge') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    let left = 50;
    const more = () => {
      while (left > 0) {
        left -= 1;
        if (!res.write(chunk)) { res.once('drain', more); return; }
      }
      res.end('{}');
    };
    res.on('error', () => {});
    more();
    return true;
  }
  return false;
}

function createPI(params) {
  const pi = {
    id: state.next_pi_id || id('pi'),
    object: 'payment_intent',
    amount: Number(params.amount),
    currency: params.currency,
    metadata: metadataOf(params),
    status: 'requires_payment_method',
    client_secret: '',
    next_action: null,
    last_payment_error: null,
    latest_charge: null,
    amount_refunded: 0,
    capture_method: params.capture_method === 'manual' ? 'manual' : 'automatic',
    amount_capturable: 0,
    amount_received: 0,
  };
  pi.client_secret = `${pi.id}_secret_${crypto.randomBytes(6).toString('hex')}`;
  const m = state.create;
  // capture_method=manual: a card that would succeed is only authorized.
  if (m === 'succeed' && pi.capture_method === 'manual') { pi.status = 'requires_capture'; pi.amount_capturable = pi.amount; }
  else if (m === 'succeed') { pi.status = 'succeeded'; pi.amount_received = pi.amount; }
  else if (m === 'action') { pi.status = 'requires_action'; pi.next_action = { type: 'use_stripe_sdk' }; }
  else if (m === 'processing') pi.status = 'processing';
  pi.latest_charge = pi.status === 'succeeded' || pi.status === 'requires_capture' ? id('ch') : null;
  state.next_pi_id = '';
  state.pis.set(pi.id, pi);
  if (m === 'decline' || m === 'insufficient_funds') {
    const decline = m === 'decline' ? 'generic_decline' : 'insufficient_funds';
    pi.last_payment_error = { type: 'card_error', code: 'card_declined', decline_code: decline };
    return { status: 402, body: cardError('card_declined', decline, pi) };
  }
  return { status: 200, body: pi };
}

// Stripe's idempotency: run fn once per key and parameters.
async function idempotent(req, res, params, fn) {
  const key = req.headers['idempotency-key'];
  if (!key) { const r = await fn(); if (r) send(res, r.status, r.body); return; }
  const canon = JSON.stringify(Object.entries(params).sort());
  const k = `${req.url} ${key}`;
  const seen = state.keys.get(k);
  if (seen) {
    if (seen.params !== canon) {
      send(res, 400, { error: { type: 'idempotency_error', message: 'Keys for idempotent requests can only be used with the same parameters they were first used with.' } });
      return;
    }
    if (seen.inflight) {
      send(res, 409, { error: { type: 'idempotency_error', message: 'There is currently another in-progress request using this Idempotent Key.' } });
      return;
    }
    res.setHeader('Idempotent-Replayed', 'true');
    send(res, seen.status, seen.body);
    return;
  }
  state.keys.set(k, { inflight: true, params: canon });
  const r = await fn();
  if (r) {
    state.keys.set(k, { params: canon, status: r.status, body: r.body });
    send(res, r.status, r.body);
  } else {
    state.keys.delete(k); // a fault: as if it never ran
  }
}

// Orders (store, order of the metadata) with more than one PaymentIntent: the
// bar says none, whatever crashed and was retried.
function dupOrders() {
  const seen = new Map();
  for (const pi of state.pis.values()) {
    const k = `${pi.metadata.store_id}/${pi.metadata.order_id}`;
    seen.set(k, (seen.get(k) || 0) + 1);
  }
  return [...seen.values()].filter((n) => n > 1).length;
}

function sign(secret, t, body) {
  return crypto.createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
}

function deliver(url, body, header) {
  return new Promise((resolve) => {
    const u = new URL(url);
    const req = http.request({ hostname: u.hostname, port: u.port, path: u.pathname, method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Stripe-Signature': header, 'Content-Length': Buffer.byteLength(body) } },
    (res) => { let d = ''; res.on('data', (c) => { d += c; }); res.on('end', () => resolve({ status: res.statusCode, body: d })); });
    req.on('error', (e) => resolve({ status: 0, body: String(e) }));
    req.end(body);
  });
}

async function webhook(p) {
  // The event's object: the PaymentIntent as the fake knows it (or as given).
  const pi = state.pis.get(p.pi) || { id: p.pi, object: 'payment_intent', metadata: p.metadata || {} };
  let object;
  if (p.type.startsWith('payment_intent.')) {
    const status = { 'payment_intent.succeeded': 'succeeded', 'payment_intent.payment_failed': 'requires_payment_method', 'payment_intent.canceled': 'canceled', 'payment_intent.processing': 'processing', 'payment_intent.requires_action': 'requires_action', 'payment_intent.amount_capturable_updated': 'requires_capture' }[p.type] || pi.status;
    if (p.apply !== false && state.pis.has(pi.id)) pi.status = status;
    object = { ...pi, status };
    if (p.type === 'payment_intent.payment_failed') object.last_payment_error = { type: 'card_error', code: 'card_declined', decline_code: p.decline_code || 'generic_decline' };
    if (p.metadata) object.metadata = p.metadata;
  } else if (p.type === 'charge.refunded') {
    object = { id: pi.latest_charge || id('ch'), object: 'charge', payment_intent: pi.id, amount_refunded: p.amount_refunded, refunded: true, metadata: p.metadata || pi.metadata };
  } else {
    object = { id: id('dp'), object: 'dispute', payment_intent: pi.id, metadata: p.metadata || pi.metadata };
  }
  const event = { id: p.event_id || id('evt'), object: 'event', type: p.type, created: Math.floor(Date.now() / 1000), data: { object } };
  const body = p.body !== undefined ? p.body : JSON.stringify(event);
  const t = Math.floor(Date.now() / 1000) + (p.t_offset || 0);
  const secrets = Array.isArray(p.secret) ? p.secret : [p.secret];
  const signed = p.sign_body !== undefined ? p.sign_body : body;
  let header = `t=${t},${secrets.map((s) => `v1=${sign(s, t, signed)}`).join(',')}`;
  if (p.signer === 'stripe') {
    if (!stripeLib) throw new Error('the stripe package is not installed (scripts/deps.sh)');
    header = stripeLib.webhooks.generateTestHeaderString({ payload: signed, secret: secrets[0], timestamp: t });
  }
  if (p.header !== undefined) header = p.header;
  const times = p.times || 1;
  const results = [];
  if (p.concurrent) {
    results.push(...await Promise.all(Array.from({ length: times }, () => deliver(p.url, body, header))));
  } else {
    for (let i = 0; i < times; i++) results.push(await deliver(p.url, body, header));
  }
  return { event_id: event.id, statuses: results.map((r) => r.status), bodies: results.map((r) => r.body) };
}

function readBody(req) {
  return new Promise((resolve) => {
    let d = '';
    req.on('data', (c) => { d += c; if (d.length > 1e6) req.destroy(); });
    req.on('end', () => resolve(d));
  });
}

const server = http.createServer(async (req, res) => {
  const text = await readBody(req);
  const url = new URL(req.url, 'http://x');
  const path = url.pathname;
  try {
    if (path === '/_control') {
      Object.assign(state, JSON.parse(text || '{}'));
      send(res, 200, { ok: true });
      return;
    }
    if (path === '/_stats') {
      send(res, 200, { payment_intents: state.pis.size, creates: state.creates, requests: state.requests, refunds: state.refunds.size, keys: state.keys.size, captures: state.captures, cancels: state.cancels, manual: [...state.pis.values()].filter((x) => x.capture_method === 'manual').length, dup_orders: dupOrders() });
      return;
    }
    if (path === '/_webhook') {
      send(res, 200, await webhook(JSON.parse(text)));
      return;
    }
    state.requests += 1;
    const auth = req.headers.authorization || '';
    if (!/^Bearer (sk|rk)_[A-Za-z0-9_]+$/.test(auth)) {
      send(res, 401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided' } });
      return;
    }
    const params = formToObject(text);
    if (req.method === 'POST' && path === '/v1/payment_intents') {
      state.creates += 1;
      if (!params.amount || !params.currency || params['automatic_payment_methods[enabled]'] !== 'true') {
        send(res, 400, { error: { type: 'invalid_request_error', message: 'Missing required param' } });
        return;
      }
      await idempotent(req, res, params, async () => {
        // delay_ms: a slow Stripe (the key stays in flight here meanwhile).
        if (state.delay_ms > 0) await new Promise((r) => setTimeout(r, state.delay_ms));
        return fault(state.create, res) ? null : createPI(params);
      });
      return;
    }
    let m = /^\/v1\/payment_intents\/([A-Za-z0-9_]+)(\/capture|\/cancel)?$/.exec(path);
    if (m) {
      const pi = state.pis.get(m[1]);
      if (!pi) { send(res, 404, { error: { type: 'invalid_request_error', code: 'resource_missing' } }); return; }
      if (m[2] === '/cancel') {
        if (pi.status === 'succeeded') { send(res, 400, { error: { type: 'invalid_request_error', code: 'payment_intent_unexpected_state' } }); return; }
        if (pi.status !== 'canceled') state.cancels += 1;
        pi.status = 'canceled';
        pi.amount_capturable = 0;
      } else if (m[2] === '/capture') {
        // Stripe's rules: only requires_capture, at most amount_capturable; the
        // rest of the hold is released. Idempotent by key like any POST.
        await idempotent(req, res, params, async () => {
          if (fault(state.capture || 'succeed', res)) return null;
          if (pi.status !== 'requires_capture') return { status: 400, body: { error: { type: 'invalid_request_error', code: 'payment_intent_unexpected_state', message: `This PaymentIntent could not be captured because it has a status of ${pi.status}.` } } };
          const amount = params.amount_to_capture ? Number(params.amount_to_capture) : pi.amount_capturable;
          if (!(amount > 0) || amount > pi.amount_capturable) return { status: 400, body: { error: { type: 'invalid_request_error', code: 'amount_too_large' } } };
          state.captures += 1;
          pi.status = 'succeeded';
          pi.amount_received = amount;
          pi.amount_capturable = 0;
          return { status: 200, body: { ...pi } };
        });
        return;
      }
      send(res, 200, pi);
      return;
    }
    if (req.method === 'POST' && path === '/v1/refunds') {
      await idempotent(req, res, params, async () => {
        if (fault(state.refund, res)) return null;
        const pi = state.pis.get(params.payment_intent);
        if (!pi || pi.status !== 'succeeded') return { status: 400, body: { error: { type: 'invalid_request_error', code: 'charge_not_refundable' } } };
        const amount = Number(params.amount);
        if (pi.amount_refunded + amount > (pi.amount_received || pi.amount)) return { status: 400, body: { error: { type: 'invalid_request_error', code: 'charge_already_refunded' } } };
        const status = state.refund === 'pending' ? 'pending' : state.refund === 'fail' ? 'failed' : 'succeeded';
        if (status !== 'failed') pi.amount_refunded += amount;
        const rf = { id: id('re'), object: 'refund', amount, payment_intent: pi.id, status };
        state.refunds.set(rf.id, rf);
        return { status: 200, body: rf };
      });
      return;
    }
    send(res, 404, { error: { type: 'invalid_request_error', message: 'Unrecognized request URL' } });
  } catch (e) {
    send(res, 400, { error: { type: 'invalid_request_error', message: String(e) } });
  }
});

server.keepAliveTimeout = 30000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
