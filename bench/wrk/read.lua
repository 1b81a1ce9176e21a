-- read.lua: one GET path for bench/read.sh, with the tenant header and, when given, a
-- bearer token, Accept-Encoding: gzip and a random product id appended to the path.
--   wrk ... -s bench/wrk/read.lua URL -- <path> <tenant> [token|-] [gzip|-] [idmin idmax]
local path, headers, idmin, idmax
function init(args)
  path = args[1] or "/api/v1/products?limit=20"
  headers = { ["X-Tenant-Id"] = args[2] or "bench" }
  if args[3] and args[3] ~= "-" then headers["Authorization"] = "Bearer " .. args[3] end
  if args[4] == "gzip" then headers["Accept-Encoding"] = "gzip" end
  idmin = tonumber(args[5] or ""); idmax = tonumber(args[6] or "")
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end
function request()
  local p = path
  if idmin then p = p .. math.random(idmin, idmax) end
  return wrk.format("GET", p, headers)
end
