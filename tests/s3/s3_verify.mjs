#!/usr/bin/env node
// s3_verify.mjs: an S3-compatible server for the media tests that checks every
// signature. npm s3rver stores objects but never verifies SigV4, so this puts
// a proxy in front of it that recomputes each request's signature with an
// independent signer (npm aws4) over the headers the request says it signed,
// checks x-amz-content-sha256 against the body, and refuses (403) a request
// that does not match before it reaches s3rver.
//
//   node tests/s3/s3_verify.mjs --port P --dir D --bucket B
//        [--access-key S3RVER --secret-key S3RVER --region us-east-1]
//
// Prints "listening <port>" once both servers run. Test hooks on the proxy:
//   GET  /__stats      {"verified": n, "refused": n, "mismatched": n, "unsigned": n, "failed": n, "requests": [...]}
//   POST /__fail?n=K   the next K signed requests get 503 (retries are tested)
// Unsigned GETs (a browser fetching a public object) pass without a check and
// are counted as unsigned.
import http from 'node:http';
import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(resolve(here, '../../tools/node/package.json'));
const aws4 = require('aws4');
const S3rver = require('s3rver');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}
const PORT = Number(arg('port', '0'));
const DIR = arg('dir', '/tmp/s3verify');
const BUCKET = arg('bucket', 'media');
const ACCESS = arg('access-key', 'S3RVER');
const SECRET = arg('secret-key', 'S3RVER');
const REGION = arg('region', 'us-east-1');

const stats = { verified: 0, refused: 0, mismatched: 0, unsigned: 0, failed: 0, requests: [] };
let failNext = 0;

const backend = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory: DIR,
  serviceEndpoint: 'localhost',
  configureBuckets: [{ name: BUCKET }],
});
const info = await backend.run();
const BACK_PORT = info.port;

function refuse(res, why, method, url) {
  stats.refused++;
  stats.requests.push({ method, url, ok: false, why });
  res.writeHead(403, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>${why}</Message></Error>`);
}

// The request as aws4 sees it: the signed headers only, with their values as
// received (joined with commas when repeated), the raw path and query.
function verify(req, body) {
  const auth = req.headers.authorization || '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return 'malformed Authorization';
  const [, key, date, region, signed, signature] = m;
  if (key !== ACCESS) return 'unknown access key';
  if (region !== REGION) return `signed for region ${region}`;
  const names = signed.split(';');
  for (const need of ['host', 'x-amz-date', 'x-amz-content-sha256'])
    if (!names.includes(need)) return `${need} not signed`;
  const amzDate = req.headers['x-amz-date'] || '';
  if (!amzDate.startsWith(date)) return 'x-amz-date and the credential date differ';
  const payload = createHash('sha256').update(body).digest('hex');
  if (req.headers['x-amz-content-sha256'] !== payload) return 'x-amz-content-sha256 is not the body hash';
  const headers = {};
  for (const n of names) {
    const v = req.headers[n];
    if (v === undefined) return `signed header ${n} missing`;
    headers[n] = Array.isArray(v) ? v.join(',') : v;
  }
  const opts = {
    host: req.headers.host,
    method: req.method,
    path: req.url,
    service: 's3',
    region: REGION,
    headers,
    body,
    doNotModifyHeaders: true, // sign exactly the headers the request signed
  };
  // The request's own x-amz-date is the signing time. aws4 reads it from the
  // headers only when it may modify them; with doNotModifyHeaders it signs
  // with its own clock (new Date) instead, so every request whose check came
  // in a later second than libcurl's signing (a slow body, a loaded machine)
  // "mismatched" with an identical canonical request: the flake once blamed
  // on libcurl. The signer is therefore given the date.
  const signer = new aws4.RequestSigner(opts, { accessKeyId: ACCESS, secretAccessKey: SECRET });
  signer.datetime = amzDate;
  signer.sign();
  const want = /Signature=([0-9a-f]{64})/.exec(opts.headers.Authorization)[1];
  const wantSigned = /SignedHeaders=([^,]+)/.exec(opts.headers.Authorization)[1];
  if (wantSigned !== signed) return `aws4 signed ${wantSigned}, the request ${signed}`;
  if (want !== signature)
    return `signature mismatch; aws4's canonical request: ${JSON.stringify(signer.canonicalString())}`;
  return null;
}

const proxy = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (req.url === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    if (req.url.startsWith('/__fail')) {
      failNext = Number(new URL(req.url, 'http://x').searchParams.get('n') || '1');
      res.writeHead(204);
      res.end();
      return;
    }
    if (!req.headers.authorization) {
      if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, 'unsigned write', req.method, req.url);
      stats.unsigned++;
    } else {
      // Any fault (unsigned, a header not signed, a wrong payload hash or
      // region, a signature aws4 computes differently) is refused.
      const why = verify(req, body);
      if (why) {
        if (why.startsWith('signature mismatch')) stats.mismatched++;
        return refuse(res, why, req.method, req.url);
      }
      if (failNext > 0) {
        failNext--;
        stats.failed++;
        res.writeHead(503, { 'content-type': 'application/xml' });
        res.end('<Error><Code>SlowDown</Code></Error>');
        return;
      }
      stats.verified++;
      stats.requests.push({ method: req.method, url: req.url, ok: true });
    }
    const fwd = http.request(
      { host: '127.0.0.1', port: BACK_PORT, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode, up.headers);
        up.pipe(res);
      },
    );
    fwd.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    fwd.end(body);
  });
});
proxy.listen(PORT, '127.0.0.1', () => {
  console.log(`listening ${proxy.address().port}`);
});
process.on('SIGTERM', async () => {
  proxy.close();
  await backend.close();
  process.exit(0);
});
