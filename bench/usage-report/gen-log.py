#!/usr/bin/env python3
"""Writes a synthetic gateway log (CLEF) for timing `usage-report`: usage events shaped like the gateway's own
(same properties, same order, ~700 bytes each), one other log line per 50 events, and 1 % duplicate RequestIds
(as two replicas' overlapping files would have). Usage: gen-log.py OUT_FILE SIZE_MB"""
import random, sys

out, size_mb = sys.argv[1], int(sys.argv[2])
random.seed(14)
tenants = [f"team-{i:02d}" for i in range(20)]
models = ["gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14", "gpt-5-mini-2025-08-07", "o4-mini-2025-04-16", "text-embedding-3-small", "gpt-4.1-nano-2025-04-14"]
endpoints = ["responses.create", "chat.completions", "embeddings", "responses.retrieve"]
template = ('{{"@t":"2026-11-{day:02d}T{h:02d}:{m:02d}:{s:02d}.{frac:07d}Z","@mt":"{{Tenant}} {{Endpoint}} {{StatusCode}} {{Outcome}}: {{TotalTokens}} tokens ({{UsageSource}}) in {{DurationMs}} ms",'
            '"@i":"8f1a2b3c","Tenant":"{tenant}","Endpoint":"{endpoint}","RequestedModel":"{rmodel}","Model":"{model}","Stream":true,"Background":false,'
            '"StatusCode":{status},"Outcome":"{outcome}","ResponseId":"resp_{rid:032x}","InputTokens":{inp},"CachedInputTokens":{cached},'
            '"OutputTokens":{outp},"ReasoningTokens":{reas},"TotalTokens":{total},"CostUsd":{cost},"UsageSource":"{source}","DurationMs":{dur},'
            '"TimeToFirstByteMs":{ttfb},"RequestId":"gw-{req:016x}","UpstreamRequestId":"req_{rid:032x}","Method":"POST","Path":"/v1/responses",'
            '"SourceContext":"Gateway.Usage.UsageAccounting","EventId":{{"Id":1000,"Name":"Usage"}}}}\n')
other = '{"@t":"2026-11-03T10:00:00.0000000Z","@mt":"Configuration reloaded: {TenantCount} tenants","TenantCount":20,"SourceContext":"Gateway.Configuration.GatewaySettings","EventId":{"Id":1101,"Name":"ConfigurationReloaded"}}\n'
limit = size_mb * 1024 * 1024
written, n, chunk = 0, 0, []
with open(out, "w") as f:
    while written < limit:
        model = random.choice(models)
        inp = random.randint(10, 20000); cached = random.randint(0, inp // 2); outp = random.randint(0, 2000)
        req = n if random.random() > 0.01 or n == 0 else random.randint(0, n - 1)
        line = template.format(day=1 + n % 28, h=n % 24, m=n % 60, s=(n * 7) % 60, frac=n % 10_000_000, tenant=random.choice(tenants),
                               endpoint=random.choice(endpoints), rmodel=model.rsplit("-20", 1)[0], model=model,
                               status=200 if n % 97 else 502, outcome="completed" if n % 97 else "upstream_error", rid=n,
                               inp=inp, cached=cached, outp=outp, reas=outp // 4, total=inp + outp,
                               cost=f"{(inp * 15 + outp * 60) / 100_000_000:.6f}", source="upstream" if n % 50 else "estimated",
                               dur=f"{random.uniform(20, 20000):.3f}", ttfb=f"{random.uniform(5, 900):.3f}", req=req)
        chunk.append(line); written += len(line); n += 1
        if n % 50 == 0:
            chunk.append(other); written += len(other)
        if len(chunk) >= 10000:
            f.write("".join(chunk)); chunk = []
    f.write("".join(chunk))
print(f"{out}: {written / 1e6:.0f} MB, {n} usage events", file=sys.stderr)
