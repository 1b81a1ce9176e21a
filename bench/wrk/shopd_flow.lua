-- shopd_flow.lua: add-to-cart + checkout against shopd, the same flow and queueing as
-- the seed stack's flow.lua (../shared/peers/seed-stack), so both run under one tool.
-- Each cart: POST /api/v1/cart/add without X-Cart-Id (shopd issues the id), and once
-- that answer is in, POST /api/v1/checkout with the cart's X-Cart-Id.
--   wrk ... -s bench/wrk/shopd_flow.lua URL -- <tenant> <rate_id> normal <vmin> <vmax>
--   wrk ... -s bench/wrk/shopd_flow.lua URL -- <tenant> <rate_id> hot <variant_id>
-- (hot: a thread stops at its first 409 = stock exhausted.)
local threads, nthreads = {}, 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

local tenant, body, mode, vmin, vmax, ready
added, created, conflict, errors = 0, 0, 0, 0
function init(args)
  tenant = args[1] or "demo"
  body = '{"email":"bench@example.com","shipping_address":{"name":"Bench","line1":"Benchstr. 1",' ..
         '"city":"Berlin","postal_code":"10115","country":"DE"},"shipping_rate_id":' .. (args[2] or "1") .. '}'
  mode = args[3] or "normal"
  vmin = tonumber(args[4] or 1); vmax = tonumber(args[5] or vmin)
  ready = {}
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  local n = #ready
  if n > 0 then
    local cart = ready[n]; ready[n] = nil
    return wrk.format("POST", "/api/v1/checkout",
      { ["Content-Type"] = "application/json", ["X-Tenant-Id"] = tenant, ["X-Cart-Id"] = cart }, body)
  end
  local v = (mode == "hot") and vmin or math.random(vmin, vmax)
  return wrk.format("POST", "/api/v1/cart/add",
    { ["Content-Type"] = "application/json", ["X-Tenant-Id"] = tenant },
    '{"variant_id":' .. v .. ',"quantity":1}')
end

function response(status, headers, body)
  if status == 200 then
    local cart = headers["X-Cart-Id"]
    if cart then added = added + 1; ready[#ready + 1] = cart end
  elseif status == 201 then created = created + 1
  elseif status == 409 then
    conflict = conflict + 1
    if mode == "hot" then wrk.thread:stop() end
  else errors = errors + 1 end
end

function done(summary, latency, requests)
  local a, c, x, e = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("added"); c = c + t:get("created")
    x = x + t:get("conflict"); e = e + t:get("errors")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("FLOW adds_ok=%d checkouts_201=%d conflicts_409=%d other_errors=%d duration_s=%.2f checkouts_per_s=%.1f p99_ms=%.1f\n",
    a, c, x, e, secs, c / secs, latency:percentile(99) / 1000))
end
