-- Loads revocations into a running revgate through its admin API, for the
-- pinned "HS256 with 1M revoked" comparison in docs/benchmarks.md: every
-- request revokes a new jti ("bench-<thread>-<n>") for two hours, and a
-- thread stops after REVOKE_COUNT requests (default 1,000,000).
--
--   ADMIN_TOKEN=revgate-bench-admin-token-not-for-production \
--     wrk -t1 -c32 -d30s -s benches/nginx/revoke-1m.lua http://127.0.0.1:9902/admin/revocations
--
-- The thread stops sending at the count, but wrk runs for the whole -d, so
-- give it enough (1M took about 10 s here). Check the
-- result with the admin listener's /metrics (revgate_revocation_entries).

local limit = tonumber(os.getenv("REVOKE_COUNT") or "1000000")
local token = os.getenv("ADMIN_TOKEN") or ""
local expires_at = os.time() + 7200
local sent = 0
local answered = 0
local failed = 0

request = function()
  sent = sent + 1
  local body = string.format('{"jti":"bench-%d","expires_at":%d}', sent, expires_at)
  return wrk.format("POST", nil, {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }, body)
end

response = function(status, headers, body)
  answered = answered + 1
  if status ~= 200 then
    failed = failed + 1
  end
  if answered >= limit then
    wrk.thread:stop()
  end
end

done = function(summary, latency, requests)
  io.write(string.format("revoke-1m: %d requests answered, %d non-200\n",
    summary.requests, summary.errors.status))
end
