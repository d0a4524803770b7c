-- wrk: a hostile tenant's request: a streamed Responses request with a large body of varied text (under the o200k
-- tokenizing threshold, 64 KiB, by default: the most CPU per byte) whose stream the fake upstream cuts after two
-- events, so the gateway closes it without usage and estimates the body. LARGE_BODY_KB sets the size.
local words = { "gateway", "quota", "tenant", "stream", "usage", "estimate", "socket", "thread", "epoll", "latency",
  "budget", "replica", "upstream", "request", "answer", "token", "model", "proxy", "kernel", "buffer" }
math.randomseed(42)
local target = (tonumber(os.getenv("LARGE_BODY_KB")) or 60) * 1024
local parts, size = {}, 0
while size < target do
  local w = words[math.random(#words)] .. string.char(97 + math.random(0, 25)) .. math.random(0, 999)
  parts[#parts + 1] = w; size = size + #w + 1
end
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","stream":true,"input":"' .. table.concat(parts, " ") .. '"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "gwk_bench_key")
wrk.headers["x-fake-deltas"] = "50"
wrk.headers["x-fake-drop-after"] = "2"
