// bench/stripe_load.mjs: the load generator of bench/stripe.sh (node's
// standard library only; keep-alive connections, a closed loop per connection).
//
//   node stripe_load.mjs webhook URL SLUG SECRET CONNS SECONDS
//       signed Stripe webhook POSTs (payment_intent.processing about a PaymentIntent
//       shopd does not know: verified, deduplicated into webhook_events, acknowledged),
//       one event in ten a redelivery of an earlier one (answered duplicate: true)
//   node stripe_load.mjs checkout URL STORE VARIANT CONNS SECONDS
//       guest add-to-cart then a keyed checkout (Stripe, the fake) per loop; the
//       checkout's latency is what is counted (the add's is not)
//
// Prints one JSON line: requests, failures (non-2xx or a transport error, by
// status), seconds, per second, and latency percentiles in ms.
import crypto from 'node:crypto';
import http from 'node:http';

const [mode, base, a1, a2, conns, seconds] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(conns) });
const url = new URL(base);

function req(method, path, headers, body) {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const r = http.request({ host: url.hostname, port: url.port, path, method, agent,
      headers: { ...headers, 'Content-Length': body ? Buffer.byteLength(body) : 0 } }, (res) => {
      let d = '';
      res.on('data', (c) => { d += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: d, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    r.on('error', () => resolve({ status: 0, headers: {}, body: '', ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    r.end(body || undefined);
  });
}

const lat = [];
const failures = {};
let n = 0;
const sent = [];

async function webhookLoop(id, until) {
  const path = `/api/v1/payments/stripe/webhook/${a1}`;
  for (let i = 0; Date.now() < until; i++) {
    let body;
    if (i % 10 === 9 && sent.length) {
      body = sent[Math.floor(Math.random() * sent.length)];
    } else {
      const ev = { id: `evt_bench_${id}_${i}_${crypto.randomBytes(4).toString('hex')}`, object: 'event',
        type: 'payment_intent.processing', created: Math.floor(Date.now() / 1000),
        data: { object: { id: `pi_bench_${id}_${i}`, object: 'payment_intent', status: 'processing', metadata: {} } } };
      body = JSON.stringify(ev);
      if (sent.length < 1000) sent.push(body);
    }
    const t = Math.floor(Date.now() / 1000);
    const sig = crypto.createHmac('sha256', a2).update(`${t}.${body}`).digest('hex');
    const r = await req('POST', path, { 'Content-Type': 'application/json', 'Stripe-Signature': `t=${t},v1=${sig}` }, body);
    record(r);
  }
}

async function checkoutLoop(id, until) {
  const tenant = { 'X-Tenant-Id': a1, 'Content-Type': 'application/json' };
  for (let i = 0; Date.now() < until; i++) {
    const add = await req('POST', '/api/v1/cart/add', tenant, JSON.stringify({ variant_id: Number(a2), quantity: 1 }));
    const cart = add.headers['x-cart-id'];
    if (add.status !== 200 || !cart) { record({ status: add.status || 0, ms: add.ms }); continue; }
    const body = JSON.stringify({ email: `b${id}-${i}@bench.test`, shipping_address: { name: 'Ada', line1: 'Str 1', city: 'Berlin', postal_code: '10115', country: 'DE' }, shipping_rate_id: Number(process.env.RATE) });
    const r = await req('POST', '/api/v1/checkout', { ...tenant, 'X-Cart-Id': cart, 'Idempotency-Key': `bench-${process.pid}-${id}-${i}` }, body);
    record(r);
  }
}

function record(r) {
  n += 1;
  lat.push(r.ms);
  if (r.status < 200 || r.status > 299) failures[r.status] = (failures[r.status] || 0) + 1;
}

function pct(sorted, p) {
  return sorted.length ? Number(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))].toFixed(2)) : 0;
}

const t0 = Date.now();
const until = t0 + Number(seconds) * 1000;
const loop = mode === 'webhook' ? webhookLoop : checkoutLoop;
await Promise.all(Array.from({ length: Number(conns) }, (_, i) => loop(i, until)));
const secs = (Date.now() - t0) / 1000;
lat.sort((x, y) => x - y);
process.stdout.write(`${JSON.stringify({ mode, conns: Number(conns), requests: n, failures, seconds: secs,
  per_second: Number((n / secs).toFixed(1)), p50: pct(lat, 0.5), p90: pct(lat, 0.9), p99: pct(lat, 0.99),
  p999: pct(lat, 0.999), max: lat.length ? Number(lat[lat.length - 1].toFixed(2)) : 0 })}\n`);
agent.destroy();
