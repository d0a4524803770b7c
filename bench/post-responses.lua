-- wrk: a small non-streamed Responses request with a gateway key (the fake upstream accepts any bearer key).
wrk.method = "POST"
wrk.body = '{"model":"gpt-4o-mini","input":"Say hello in five words.","max_output_tokens":64}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "gwk_bench_key")
