#!/usr/bin/env node
// seed-demo.mjs: a real-looking catalog and a few weeks of orders for a store,
// through the API (and psql for the one thing the API must not do: placing
// orders in the past). scripts/run.sh runs it for the demo store; the browser
// test (tests/browser/pages.mjs) imports seedStore() for a store of its own.
//
//   node scripts/seed-demo.mjs --url http://127.0.0.1:8080 --store demo \
//        --platform-token TOKEN [--database-url postgresql://...] [--orders 24]
//
// What it makes, each part only when missing, so a re-run changes nothing:
//   - 50 products in 7 categories (by slug, made by the import), with size or
//     colour variants and stock (a few nearly sold out, for the low-stock list):
//     one POST /api/v1/imports/products, skipped when the first product exists;
//   - a US shipping zone with a flat rate, when the store ships nowhere;
//   - guest checkouts (the test payment provider pays them), skipped when the
//     store has any order; then, with a database URL, the orders are spread
//     over the last 21 days and the analytics rollups rebuilt
//     (analytics_rebuild), so the dashboard's chart has a curve.
// Node 20's fetch and no npm package: it runs wherever shopd's scripts run.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

// ------------------------------------------------------------ the catalog

const BRANDS = ['Harbor & Pine', 'Northwind Goods', 'Fieldnote Co.', 'Saltmarsh'];
const SIZES = ['S', 'M', 'L', 'XL'];

// category slug, name, base price (cents), variant axis
const CATALOG = [
  ['t-shirts', 'Classic Crew Tee', 2400, 'size'],
  ['t-shirts', 'Heavyweight Pocket Tee', 3200, 'size'],
  ['t-shirts', 'Organic Cotton V-Neck', 2800, 'size'],
  ['t-shirts', 'Vintage Wash Tee', 3000, 'size'],
  ['t-shirts', 'Long Sleeve Henley', 3900, 'size'],
  ['t-shirts', 'Striped Breton Top', 4500, 'size'],
  ['t-shirts', 'Graphic Mountain Tee', 2900, 'size'],
  ['t-shirts', 'Performance Running Tee', 3400, 'size'],
  ['sweatshirts', 'Everyday Pullover Hoodie', 6400, 'size'],
  ['sweatshirts', 'Zip-Up Fleece Hoodie', 7200, 'size'],
  ['sweatshirts', 'Quarter-Zip Sweatshirt', 6800, 'size'],
  ['sweatshirts', 'Crewneck Sweatshirt', 5600, 'size'],
  ['sweatshirts', 'Sherpa-Lined Jacket', 11800, 'size'],
  ['sweatshirts', 'Lightweight Windbreaker', 8900, 'size'],
  ['sweatshirts', 'Quilted Vest', 7900, 'size'],
  ['headwear', 'Six-Panel Cap', 2800, 'colour'],
  ['headwear', 'Wool Beanie', 2600, 'colour'],
  ['headwear', 'Bucket Hat', 3200, 'colour'],
  ['headwear', 'Trucker Cap', 2500, 'colour'],
  ['headwear', 'Sun Visor', 2200, 'colour'],
  ['headwear', 'Knit Headband', 1800, 'colour'],
  ['drinkware', 'Ceramic Coffee Mug', 1800, 'colour'],
  ['drinkware', 'Insulated Travel Tumbler', 3400, 'colour'],
  ['drinkware', 'Enamel Camp Mug', 1600, 'colour'],
  ['drinkware', 'Glass Pour-Over Set', 4800, null],
  ['drinkware', 'Stainless Water Bottle', 2900, 'colour'],
  ['drinkware', 'Espresso Cup Pair', 2400, null],
  ['drinkware', 'Stoneware Teapot', 5200, null],
  ['home', 'Linen Throw Pillow', 4200, 'colour'],
  ['home', 'Wool Blanket', 12900, 'colour'],
  ['home', 'Soy Wax Candle', 2600, null],
  ['home', 'Cotton Tea Towels, Set of 3', 2200, null],
  ['home', 'Cork Coasters, Set of 4', 1600, null],
  ['home', 'Ceramic Planter', 3600, 'colour'],
  ['home', 'Woven Storage Basket', 4400, null],
  ['home', 'Scented Reed Diffuser', 3000, null],
  ['accessories', 'Canvas Tote Bag', 2800, 'colour'],
  ['accessories', 'Leather Card Wallet', 4900, 'colour'],
  ['accessories', 'Everyday Backpack', 9800, 'colour'],
  ['accessories', 'Crossbody Sling', 5400, 'colour'],
  ['accessories', 'Merino Crew Socks', 1900, 'size'],
  ['accessories', 'Waxed Canvas Dopp Kit', 3900, null],
  ['accessories', 'Braided Key Lanyard', 1400, 'colour'],
  ['accessories', 'Packable Rain Poncho', 4200, null],
  ['stationery', 'Dot-Grid Notebook', 1600, null],
  ['stationery', 'Recycled Kraft Journal', 1400, null],
  ['stationery', 'Brass Ballpoint Pen', 3800, null],
  ['stationery', 'Weekly Desk Planner', 2400, null],
  ['stationery', 'Letterpress Card Set', 1800, null],
  ['stationery', 'Washi Tape Trio', 1200, null],
];
const COLOURS = {
  headwear: ['Black', 'Navy', 'Olive'],
  drinkware: ['White', 'Black', 'Sage'],
  home: ['Oat', 'Charcoal'],
  accessories: ['Black', 'Tan'],
};
const BLURB = {
  't-shirts': 'Soft, pre-shrunk cotton jersey with a relaxed fit that holds its shape wash after wash.',
  sweatshirts: 'Brushed inside for warmth, finished with ribbed cuffs and a hem that stays put.',
  headwear: 'Made to be worn every day: breathable, packable and easy to adjust.',
  drinkware: 'Dishwasher safe and made to keep your coffee, tea or water just right.',
  home: 'Natural materials and quiet colours for the rooms you spend the most time in.',
  accessories: 'Durable everyday carry, built from materials that wear in, not out.',
  stationery: 'Thoughtfully made paper goods for lists, plans and the occasional letter.',
};

// A small deterministic generator: the same store gets the same catalog.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function slugify(s) {
  return s.toLowerCase().replace(/&/g, 'and').replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

function skuPrefix(name) {
  return name
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w.slice(0, 3).toUpperCase())
    .join('-')
    .slice(0, 40);
}

/** The 50 import rows (products.import), the same on every call. */
export function catalogRows() {
  const r = rng(17);
  return CATALOG.map(([category, name, price, axis], i) => {
    const values = axis === 'size' ? SIZES : axis === 'colour' ? COLOURS[category] : [null];
    const prefix = skuPrefix(name);
    const variants = values.map((v, j) => {
      // Every seventh product runs low on one variant, so the low-stock list has entries.
      const stock = i % 7 === 3 && j === 0 ? Math.floor(r() * 4) : 12 + Math.floor(r() * 140);
      const row = { sku: v ? `${prefix}-${slugify(v).toUpperCase()}` : prefix, stock, position: j };
      if (v) row.options = { [axis === 'size' ? 'Size' : 'Colour']: v };
      if (v === 'XL') row.price = price + 300;
      return row;
    });
    return {
      name,
      slug: slugify(name),
      description: BLURB[category],
      base_price: price,
      status: 'active',
      brand: BRANDS[i % BRANDS.length],
      category,
      attributes: { material: category === 'drinkware' ? 'ceramic' : category === 'stationery' ? 'paper' : 'cotton' },
      // Images are uploaded after the import (seedImages): one PNG per product.
      variants,
    };
  });
}

// ------------------------------------------------------------ the API

function client(url, token, store) {
  return async function api(method, path, { body, raw, type, cart, auth = true } = {}) {
    const headers = { 'X-Tenant-Id': store };
    if (auth) headers.Authorization = `Bearer ${token}`;
    if (cart) headers['X-Cart-Id'] = cart;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (raw !== undefined) headers['Content-Type'] = type;
    let res;
    // The edge's budgets (SHOPD_RATE_CHECKOUT_IP: 30 checkouts a minute by
    // default) may run out on a second seeding soon after a first: wait as told.
    for (let attempt = 0; ; attempt++) {
      res = await fetch(url + path, { method, headers, body: raw !== undefined ? raw : body === undefined ? undefined : JSON.stringify(body) });
      if (res.status !== 429 || attempt >= 40) break;
      await res.arrayBuffer();
      const wait = Math.min(5, Number(res.headers.get('retry-after')) || 1);
      await new Promise((ok) => setTimeout(ok, wait * 1000));
    }
    const text = await res.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, json, text, headers: res.headers };
  };
}

function must(r, what, ...ok) {
  if (!ok.includes(r.status)) throw new Error(`${what}: HTTP ${r.status} ${r.text.slice(0, 400)}`);
  return r.json;
}

const FIRST = ['Ava', 'Liam', 'Maya', 'Noah', 'Zoe', 'Ethan', 'Lena', 'Omar', 'Iris', 'Caleb', 'Nora', 'Felix', 'Ruby', 'Jonas'];
const LAST = ['Carter', 'Nguyen', 'Patel', 'Okafor', 'Schmidt', 'Rossi', 'Kim', 'Silva', 'Dubois', 'Larsen', 'Haddad', 'Moreau'];
const CITIES = [
  ['Portland', 'OR', '97205'],
  ['Austin', 'TX', '78701'],
  ['Denver', 'CO', '80202'],
  ['Chicago', 'IL', '60601'],
  ['Brooklyn', 'NY', '11201'],
  ['Asheville', 'NC', '28801'],
];

// ------------------------------------------------------------ images

const CRC = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A w x h RGB PNG: a diagonal gradient from one colour to another with a
 *  lighter disc in the middle, distinct per product (no npm packages). */
export function demoPng(w, h, from, to) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    raw[row] = 0;
    for (let x = 0; x < w; x++) {
      const t = (x + y) / (w + h);
      const dx = x - w / 2, dy = y - h / 2;
      const disc = dx * dx + dy * dy < (w * w) / 10 ? 40 : 0;
      for (let c = 0; c < 3; c++)
        raw[row + 1 + x * 3 + c] = Math.min(255, Math.round(from[c] + (to[c] - from[c]) * t) + disc);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const HUES = {
  apparel: [[52, 73, 94], [133, 193, 233]],
  drinkware: [[120, 66, 18], [240, 178, 122]],
  stationery: [[20, 90, 50], [130, 224, 170]],
};

/** One image per product that has none (POST /api/v1/products/:id/images with
 *  a raw PNG; the renditions follow as a background job). Returns how many
 *  were uploaded. A store whose first product has an image is left alone. */
async function seedImages(api, rows, log) {
  const first = must(await api('GET', `/api/v1/products/${rows[0].slug}`), 'product lookup', 200);
  const has = must(await api('GET', `/api/v1/products/${first.id}/images`), 'images', 200);
  if ((has.data || has).length > 0) {
    log('images: present');
    return 0;
  }
  let done = 0;
  const queue = rows.map((row, i) => ({ row, i }));
  async function worker() {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const p = must(await api('GET', `/api/v1/products/${job.row.slug}`), 'product lookup', 200);
      const PALETTE = [[[94, 52, 73], [233, 133, 193]], [[73, 94, 52], [193, 233, 133]], [[52, 52, 94], [160, 160, 240]]];
      const [a, b] = HUES[job.row.category] || PALETTE[job.i % PALETTE.length];
      const shift = (job.i * 37) % 60;
      const img = demoPng(480, 480, a.map((v) => Math.min(255, v + shift)), b);
      must(await api('POST', `/api/v1/products/${p.id}/images`, { raw: img, type: 'image/png' }), 'image upload', 201);
      done++;
    }
  }
  await Promise.all([worker(), worker(), worker(), worker()]);
  log(`images: ${done} uploaded (renditions follow in the background)`);
  return done;
}

/**
 * Seeds one store (see the top of the file). opts: url, token (the platform
 * token or a store admin's), store (slug or id), orders (default 24),
 * databaseUrl (optional: without it the orders all stay on today), log.
 * Returns {products, orders, created: {catalog, orders}}.
 */
export async function seedStore(opts) {
  const log = opts.log || (() => {});
  const api = client(opts.url, opts.token, String(opts.store));
  const rows = catalogRows();
  const out = { products: rows.length, orders: 0, created: { catalog: false, orders: 0 } };

  const first = await api('GET', `/api/v1/products/${rows[0].slug}`);
  if (first.status === 404) {
    const res = must(await api('POST', '/api/v1/imports/products', { body: { rows } }), 'import', 200);
    if (res.rejected.length) throw new Error(`import refused rows: ${JSON.stringify(res.rejected).slice(0, 400)}`);
    out.created.catalog = true;
    log(`catalog: ${res.imported} products, ${res.variants} variants, ${res.categories_created} categories`);
  } else {
    must(first, 'product lookup', 200);
    log('catalog: present');
  }

  out.images = await seedImages(api, rows, log);

  let rates = must(await api('GET', '/api/v1/checkout/shipping-rates?country=US', { auth: false }), 'rates', 200);
  if (!rates.rates || rates.rates.length === 0) {
    const zone = must(await api('POST', '/api/v1/admin/shipping-zones', { body: { name: 'United States', countries: ['US'] } }), 'zone', 201);
    must(await api('POST', `/api/v1/admin/shipping-zones/${zone.id}/rates`, { body: { name: 'Standard', kind: 'flat', price: 500 } }), 'rate', 201);
    rates = must(await api('GET', '/api/v1/checkout/shipping-rates?country=US', { auth: false }), 'rates', 200);
  }
  const rateId = rates.rates[0].id;

  const existing = must(await api('GET', '/api/v1/orders?limit=1'), 'orders', 200);
  if (existing.data.length > 0) {
    log('orders: present');
    return out;
  }

  // Variant ids by product slug (the import answers counts, not ids).
  const list = must(await api('GET', '/api/v1/products?limit=100&status=active&expand=variants'), 'products', 200);
  const bySlug = new Map(list.data.map((p) => [p.slug, p]));
  const r = rng(4711);
  // A few favourites sell more, as in a real shop.
  const favourites = ['everyday-pullover-hoodie', 'classic-crew-tee', 'ceramic-coffee-mug', 'canvas-tote-bag', 'wool-beanie'];
  const n = opts.orders ?? 24;
  const placed = [];
  for (let k = 0; k < n; k++) {
    const lines = 1 + Math.floor(r() * 3);
    let cart = null;
    for (let l = 0; l < lines; l++) {
      const slug = r() < 0.55 ? favourites[Math.floor(r() * favourites.length)] : rows[Math.floor(r() * rows.length)].slug;
      const p = bySlug.get(slug) || (await api('GET', `/api/v1/products/${slug}`)).json;
      const vs = (p.variants || []).filter((v) => v.stock >= 3);
      if (vs.length === 0) continue;
      const v = vs[Math.floor(r() * vs.length)];
      const add = await api('POST', '/api/v1/cart/add', { auth: false, cart, body: { variant_id: v.id, quantity: 1 + Math.floor(r() * 2) } });
      must(add, 'cart add', 200, 201);
      cart = cart || add.headers.get('x-cart-id');
    }
    if (!cart) continue;
    const fn = FIRST[Math.floor(r() * FIRST.length)];
    const ln = LAST[Math.floor(r() * LAST.length)];
    const [city, region, zip] = CITIES[Math.floor(r() * CITIES.length)];
    const co = await api('POST', '/api/v1/checkout', {
      auth: false,
      cart,
      body: {
        email: `${fn}.${ln}${k}@example.com`.toLowerCase(),
        shipping_rate_id: rateId,
        shipping_address: { name: `${fn} ${ln}`, line1: `${100 + k * 7} Market Street`, city, region, postal_code: zip, country: 'US' },
      },
    });
    const order = must(co, 'checkout', 201);
    placed.push(order.id);
  }
  out.created.orders = placed.length;
  out.orders = placed.length;
  log(`orders: ${placed.length} placed`);

  if (opts.databaseUrl && placed.length) {
    // Spread over the last 21 days (newest ids latest), each at a daytime hour;
    // then the rollups are rebuilt from the orders (they were counted today).
    const ids = placed.join(',');
    const days = placed.map((_, i) => Math.floor(((placed.length - 1 - i) * 21) / placed.length)).join(',');
    const hours = placed.map(() => 9 + Math.floor(r() * 10)).join(',');
    const storeId = must(await api('GET', '/api/v1/store', { auth: false }), 'store', 200).id;
    const sql =
      `UPDATE orders o SET created_at = least(now() - interval '5 minutes', date_trunc('day', now()) - make_interval(days => d.days, hours => -d.hours)) ` +
      `FROM unnest('{${ids}}'::bigint[], '{${days}}'::int[], '{${hours}}'::int[]) AS d (id, days, hours) ` +
      `WHERE o.store_id = ${Number(storeId)} AND o.id = d.id; SELECT analytics_rebuild(${Number(storeId)});`;
    const psql = (q) =>
      execFileSync('psql', [opts.databaseUrl, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-c', q], {
        stdio: ['ignore', 'pipe', 'inherit'],
        encoding: 'utf8',
      }).trim();
    psql(sql);
    // The rebuild leaves the outbox rows not relayed yet to the jobs relay
    // (every SHOPD_JOBS_POLL_MS): wait for them, so the figures are whole when
    // the seed returns.
    const pending = `SELECT count(*) FROM outbox WHERE store_id = ${Number(storeId)} AND relayed_at IS NULL`;
    for (let i = 0; i < 100 && psql(pending) !== '0'; i++) await new Promise((ok) => setTimeout(ok, 100));
    log('orders: spread over the last 21 days; analytics rebuilt');
  }
  return out;
}

// ------------------------------------------------------------ command line

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const arg = (name, def) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : def;
  };
  const url = arg('url');
  const token = arg('platform-token', process.env.SHOPD_PLATFORM_TOKEN);
  const store = arg('store', 'demo');
  if (!url || !token) {
    console.error('usage: seed-demo.mjs --url http://127.0.0.1:8080 --platform-token TOKEN [--store demo] [--database-url URL] [--orders N]');
    process.exit(2);
  }
  const t0 = Date.now();
  seedStore({
    url,
    token,
    store,
    orders: Number(arg('orders', '24')),
    databaseUrl: arg('database-url', process.env.SHOPD_DATABASE_URL),
    log: (m) => console.log(`seed: ${m}`),
  })
    .then(() => console.log(`seed: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`))
    .catch((e) => {
      console.error(`seed: ${e.message}`);
      process.exit(1);
    });
}
