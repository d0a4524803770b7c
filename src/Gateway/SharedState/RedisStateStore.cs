using System.Collections.Concurrent;
using System.Globalization;
using Gateway.Quotas;
using StackExchange.Redis;

namespace Gateway.SharedState;

/// <summary>
/// The cluster store. Every admission and every settle is one Lua script, so one atomic round trip (calls of one tenant
/// made while another of its calls is in flight are sent together, as one call, by <see cref="RedisGroupCommit"/>);
/// every key expires on its own; all keys of a tenant share the hash tag <c>{t:tenant}</c>, so the
/// scripts run unchanged on Redis Cluster.
/// </summary>
internal sealed class RedisStateStore(IConnectionMultiplexer redis, string keyPrefix) : ISharedStateStore
{
    // A counter's expiry is set when INCRBY creates it (the result is the increment: a new key, or one back at 0), not on
    // every write: one command fewer per counter and write (issue #15). Every window's TTL outlasts the window by far
    // (QuotaWindows), so a counter created during its window still outlives it; a late refund into a window whose
    // counter has expired creates it again, with its expiry, as before.
    // Blank first and last lines: spliced between two script lines, it must not join either.
    private const string IncrLua = """

        local function incr(key, delta, ttl)
          local value = redis.call('INCRBY', key, delta)
          if value == delta then redis.call('PEXPIRE', key, ttl) end
          return value
        end

        """;

    // KEYS: 1 requests(minute) 2 tokens(minute) 3 tokens(day) 4 tokens(month) 5 leases
    // ARGV: 1 rpm 2 tpm 3 tpd 4 tpmo 5 maxConcurrent 6 reserve 7 nowMs 8 leaseId 9 leaseExpiryMs 10 minuteTtlMs 11 dayTtlMs 12 monthTtlMs 13 leaseTtlMs
    //       14 tokensOnly (1: the request was counted and holds its lease already; check and reserve tokens only)
    // Dollar budgets (micro-dollars): KEYS 6 usd(day) 7 usd(month); ARGV 15 usdPerDay 16 usdPerMonth 17 reserveMicroUsd
    // The decision is AdmissionOrder's table, written out in Lua (decision = the refusing AdmissionDecision's value).
    // Redis' own CPU per request is mostly per command its scripts run (issue #15): the counters are read with one MGET,
    // and a counter's expiry is set when the counter is created, not on every write (see IncrLua).
    private static readonly string AdmitScriptText = """
        local rpm = tonumber(ARGV[1]); local tpm = tonumber(ARGV[2]); local tpd = tonumber(ARGV[3]); local tpmo = tonumber(ARGV[4])
        local maxc = tonumber(ARGV[5]); local reserve = tonumber(ARGV[6])
        if ARGV[14] == '1' then rpm = 0; maxc = 0 end
        """ + IncrLua + """
        local v = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6], KEYS[7])
        local r = tonumber(v[1] or '0'); local tm = tonumber(v[2] or '0'); local td = tonumber(v[3] or '0'); local tmo = tonumber(v[4] or '0')
        local upd = tonumber(ARGV[15]); local upmo = tonumber(ARGV[16]); local ru = tonumber(ARGV[17])
        local ud = tonumber(v[5] or '0'); local umo = tonumber(v[6] or '0')
        redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[7])
        local c = redis.call('ZCARD', KEYS[5])

        """ + AdmissionOrder.LuaDecision() + """
        if decision == 0 then
          if ARGV[14] ~= '1' then r = incr(KEYS[1], 1, ARGV[10]) end
          if reserve ~= 0 then
            tm = incr(KEYS[2], reserve, ARGV[10]); td = incr(KEYS[3], reserve, ARGV[11]); tmo = incr(KEYS[4], reserve, ARGV[12])
          end
          if ru ~= 0 then
            ud = incr(KEYS[6], ru, ARGV[11]); umo = incr(KEYS[7], ru, ARGV[12])
          end
          if maxc > 0 then
            redis.call('ZADD', KEYS[5], ARGV[9], ARGV[8]); redis.call('PEXPIRE', KEYS[5], ARGV[13])
            c = c + 1
          end
        end
        return { decision, r, tm, td, tmo, c, ud, umo }
        """;

    // KEYS: 1 counted mark 2 held reservation 3 leases 4 tokens(minute) 5 tokens(day) 6 tokens(month) (4-6: the reservation's windows, else now's)
    //       7-9 tokens(minute/day/month) of now 10 the conversation's context size
    // ARGV: 1 claim 2 claimTtlMs 3 hasReservation 4 reserved 5 billed 6 hold 7 holdUntilMs 8 leaseId 9 unused (empty)
    //       10 minuteTtlMs 11 dayTtlMs 12 monthTtlMs 13 minute 14 day 15 month 16 nowMs 17 heldKeyTtlMs
    //       18 input 19 estimated 20 mark value ("in:out:usd", "~in:out:usd" when estimated) 21 hasConversation
    // Dollar budgets (micro-dollars): KEYS 11-12 usd(day/month) of the reservation's windows (else now's) 13-14 of now;
    //       ARGV 22 reservedMicroUsd 23 billedMicroUsd
    // A held reservation's windows: KEYS 15-17 tokens(minute/day/month) 18-19 usd(day/month) of ARGV 24-26 (minute, day, month).
    // Redis Cluster requires every key a script touches in KEYS, so the caller names the held windows' keys before it
    // knows them: it guesses now's windows; a held reservation from other windows returns { -1, minute, day, month }
    // before anything is written, and the caller runs the script again with those.
    // A held reservation is remembered past its timeout (until heldKeyTtl) so that usage first seen after the timeout
    // is known to be covered by the estimate that was kept, and is not charged a second time.
    // The counted mark holds the usage that was counted: a later claim with the real usage of an estimated response
    // replaces it and charges the difference, once. Reservations are refunded in their windows (4-6), usage is charged
    // to now's (7-9), where it was spent.
    // The held reservation is read once (it is written only by a hold, which never reads it), and counters move with
    // IncrLua (issue #15).
    private const string SettleScriptText = SettleScriptHead + IncrLua + SettleScriptRest;

    private const string SettleScriptHead = """
        local held = nil
        if ARGV[1] == '1' and not (ARGV[6] == '1' and ARGV[3] == '1') then
          held = redis.call('HMGET', KEYS[2], 'r', 'm', 'd', 'mo', 'until', 'ru')
          if held[2] and (held[2] ~= ARGV[24] or held[3] ~= ARGV[25] or held[4] ~= ARGV[26]) then
            return { -1, tonumber(held[2]), tonumber(held[3]), tonumber(held[4]) }
          end
        end
        """;

    // The settle never reads a counter (nor returns one): it only moves them. So in a batch (RedisGroupCommit) its
    // increments are summed per key and applied once per key when the batch's items are done (one INCRBY per counter
    // per batch instead of one per item and counter), the counter's expiry set as IncrLua does, when INCRBY creates it.
    // Nothing outside the script sees the counters in between (a script runs atomically); a sum of 0 writes nothing.
    private const string SettleBatchPrologue = """
        local sums, ttls, order = {}, {}, {}
        local function incr(key, delta, ttl)
          if sums[key] == nil then sums[key] = 0; ttls[key] = ttl; order[#order + 1] = key end
          sums[key] = sums[key] + delta
        end
        """;

    private const string SettleBatchEpilogue = """
        for _, key in ipairs(order) do
          local delta = sums[key]
          if delta ~= 0 and redis.call('INCRBY', key, delta) == delta then redis.call('PEXPIRE', key, ttls[key]) end
        end
        """;

    private const string SettleScriptRest = """
        local function add(tm, td, tmo, delta)
          if delta ~= 0 then incr(tm, delta, ARGV[10]); incr(td, delta, ARGV[11]); incr(tmo, delta, ARGV[12]) end
        end
        local function addusd(ud, umo, delta)
          if delta ~= 0 then incr(ud, delta, ARGV[11]); incr(umo, delta, ARGV[12]) end
        end
        local input = tonumber(ARGV[18]); local output = tonumber(ARGV[5]) - input; local cost = tonumber(ARGV[23])
        local first = 1; local corrected = 0; local din = 0; local dout = 0; local du = 0
        if ARGV[1] == '1' then
          local mark = redis.call('GET', KEYS[1])
          if not mark then
            redis.call('SET', KEYS[1], ARGV[20], 'PX', ARGV[2])
          else
            first = 0
            if ARGV[19] ~= '1' and string.sub(mark, 1, 1) == '~' then
              local sep = string.find(mark, ':', 1, true); local sep2 = string.find(mark, ':', sep + 1, true)
              din = input - tonumber(string.sub(mark, 2, sep - 1))
              if sep2 then
                dout = output - tonumber(string.sub(mark, sep + 1, sep2 - 1)); du = cost - tonumber(string.sub(mark, sep2 + 1))
              else
                dout = output - tonumber(string.sub(mark, sep + 1))
              end
              corrected = 1
              redis.call('SET', KEYS[1], ARGV[20], 'PX', ARGV[2])
            end
          end
        end
        local billed = 0; local billedu = 0
        if first == 1 then billed = tonumber(ARGV[5]); billedu = cost end
        if ARGV[6] == '1' and ARGV[3] == '1' then
          redis.call('HSET', KEYS[2], 'r', ARGV[4], 'm', ARGV[13], 'd', ARGV[14], 'mo', ARGV[15], 'until', ARGV[7], 'ru', ARGV[22])
          redis.call('PEXPIRE', KEYS[2], ARGV[17])
        else
          if first == 1 and ARGV[1] == '1' then
            if held[1] then
              redis.call('DEL', KEYS[2])
              if tonumber(held[5]) > tonumber(ARGV[16]) then
                add(KEYS[15], KEYS[16], KEYS[17], -tonumber(held[1]))
                addusd(KEYS[18], KEYS[19], -tonumber(held[6] or '0'))
              else
                billed = 0; billedu = 0
              end
            end
          end
          -- A negative correction gives back budget (day, month), never per-minute room (see MemoryStateStore).
          local charge = billed + math.max(0, din + dout)
          if din + dout < 0 then
            incr(KEYS[8], din + dout, ARGV[11]); incr(KEYS[9], din + dout, ARGV[12])
          end
          if KEYS[4] == KEYS[7] then
            add(KEYS[7], KEYS[8], KEYS[9], charge - tonumber(ARGV[4]))
          else
            add(KEYS[4], KEYS[5], KEYS[6], -tonumber(ARGV[4]))
            add(KEYS[7], KEYS[8], KEYS[9], charge)
          end
          -- Dollars have day and month windows only, so a correction's difference of either sign is charged where it is seen.
          if KEYS[11] == KEYS[13] then
            addusd(KEYS[13], KEYS[14], billedu + du - tonumber(ARGV[22]))
          else
            addusd(KEYS[11], KEYS[12], -tonumber(ARGV[22]))
            addusd(KEYS[13], KEYS[14], billedu + du)
          end
        end
        if ARGV[21] == '1' and ARGV[1] == '1' and (first == 1 or corrected == 1) then
          redis.call('SET', KEYS[10], input + output, 'PX', ARGV[2])
        end
        if ARGV[8] ~= '' then redis.call('ZREM', KEYS[3], ARGV[8]) end
        return { first, corrected, din, dout, du }
        """;

    // KEYS: 1 requests(minute) 2 tokens(minute) 3 tokens(day) 4 tokens(month) 5 leases 6 usd(day) 7 usd(month); ARGV: 1 nowMs
    private const string ReadScriptText = """
        return { tonumber(redis.call('GET', KEYS[1]) or '0'), tonumber(redis.call('GET', KEYS[2]) or '0'),
                 tonumber(redis.call('GET', KEYS[3]) or '0'), tonumber(redis.call('GET', KEYS[4]) or '0'),
                 redis.call('ZCOUNT', KEYS[5], '(' .. ARGV[1], '+inf'),
                 tonumber(redis.call('GET', KEYS[6]) or '0'), tonumber(redis.call('GET', KEYS[7]) or '0') }
        """;

    // One per store, so per connection: which scripts its servers have loaded (RedisScript).
    // Admissions and settles of one tenant in flight at once go as one script call (RedisGroupCommit).
    private readonly RedisGroupCommit _admissions = new(redis, AdmitScriptText, keysPerItem: 7, valuesPerItem: 17);
    private readonly RedisGroupCommit _settles = new(redis, SettleScriptText, keysPerItem: 19, valuesPerItem: 26,
        new RedisGroupCommit.BatchParts(SettleBatchPrologue, SettleScriptHead + "\n" + SettleScriptRest, SettleBatchEpilogue));
    private readonly RedisScript _readScript = new(ReadScriptText);
    private readonly RedisOwnershipStore _owners = new(redis, keyPrefix);

    // Each tenant's counter keys of the latest windows seen (issue #15): an admission and a settle name up to 22 counter
    // keys, nearly always of the current windows, which were built again (a string per key and per window number) on
    // every call. One entry per tenant (tenants come from the configuration), replaced when a newer window begins.
    private readonly ConcurrentDictionary<string, WindowKeys> _windowKeys = new(StringComparer.Ordinal);

    public string Kind => "redis";

    /// <summary>Admission batches sent (calls carrying two admissions or more), and the admissions they carried.</summary>
    internal (long Calls, long Items) AdmissionBatches => (_admissions.BatchCalls, _admissions.BatchedItems);

    /// <summary>Settle batches sent, and the settles they carried.</summary>
    internal (long Calls, long Items) SettleBatches => (_settles.BatchCalls, _settles.BatchedItems);

    public async ValueTask<AdmissionResult> AdmitAsync(AdmissionRequest request, CancellationToken cancellationToken)
    {
        var w = request.Windows;
        var limits = request.Limits;
        var keys = KeysOf(request.TenantId, w.Minute, w.Day, w.Month);
        var now = w.Now.ToUnixTimeMilliseconds();
        var result = await _admissions.EvaluateAsync(request.TenantId,
            [keys.Requests, keys.TokensMinute, keys.TokensDay, keys.TokensMonth, keys.Leases, keys.UsdDay, keys.UsdMonth],
            [
                limits.RequestsPerMinute, limits.TokensPerMinute, limits.TokensPerDay, limits.TokensPerMonth, limits.MaxConcurrentRequests,
                request.ReserveTokens, now, request.LeaseId, now + (long)request.LeaseTimeout.TotalMilliseconds,
                Ms(QuotaWindows.MinuteTtl), Ms(QuotaWindows.DayTtl), Ms(QuotaWindows.MonthTtl), Ms(request.LeaseTimeout),
                request.TokensOnly ? "1" : "0", request.MicroUsdPerDay, request.MicroUsdPerMonth, request.ReserveMicroUsd,
            ]);
        var values = (RedisResult[])result!;
        return new AdmissionResult(MapDecision((int)values[0]),
            new QuotaCounters((long)values[1], (long)values[2], (long)values[3], (long)values[4], (long)values[5], (long)values[6], (long)values[7]));
    }

    public async ValueTask<SettleResult> SettleAsync(SettleRequest request, CancellationToken cancellationToken)
    {
        var reservation = request.Reservation;
        var responseId = request.ClaimResponseId ?? request.HoldForResponseId ?? "-";
        var w = request.Now;
        var (minute, day, month) = reservation is null
            ? (w.Minute, w.Day, w.Month)
            : (reservation.MinuteWindow, reservation.DayWindow, reservation.MonthWindow);
        var now = w.Now.ToUnixTimeMilliseconds();
        var input = request.InputTokens;
        var output = request.BilledTokens - input;
        var mark = string.Concat(request.Estimated ? "~" : "", Num(input), ":", Num(output), ":", Num(request.BilledMicroUsd));
        var current = KeysOf(request.TenantId, w.Minute, w.Day, w.Month);
        var reserved = current.Of(minute, day, month);
        var prefix = current.Prefix;
        var held = (Minute: w.Minute, Day: w.Day, Month: w.Month);
        for (var attempt = 1; ; attempt++)
        {
            var values = await SettleOnceAsync(held.Minute, held.Day, held.Month);
            if ((int)values[0] != -1)
            {
                return new SettleResult((int)values[0] == 1, (int)values[1] == 1 ? new UsageCorrection((long)values[2], (long)values[3], (long)values[4]) : null);
            }

            // A held reservation hash is written once per response id, so the second attempt names its windows.
            if (attempt == 3)
            {
                throw new InvalidOperationException($"The held reservation of '{responseId}' kept changing windows while being settled.");
            }

            held = ((long)values[1], (long)values[2], (long)values[3]);
        }

        async Task<RedisResult[]> SettleOnceAsync(long heldMinute, long heldDay, long heldMonth)
        {
            var heldKeys = current.Of(heldMinute, heldDay, heldMonth);
            return (RedisResult[])(await _settles.EvaluateAsync(request.TenantId,
            [
                prefix + "counted:" + responseId, prefix + "held:" + responseId, current.Leases,
                reserved.TokensMinute, reserved.TokensDay, reserved.TokensMonth,
                current.TokensMinute, current.TokensDay, current.TokensMonth,
                prefix + "ctx:" + (request.ConversationId ?? "-"),
                reserved.UsdDay, reserved.UsdMonth, current.UsdDay, current.UsdMonth,
                heldKeys.TokensMinute, heldKeys.TokensDay, heldKeys.TokensMonth,
                heldKeys.UsdDay, heldKeys.UsdMonth,
            ],
            [
                request.ClaimResponseId is null ? "0" : "1", Ms(request.ClaimRetention), reservation is null ? "0" : "1",
                reservation?.ReservedTokens ?? 0, request.BilledTokens, request.HoldForResponseId is null ? "0" : "1", now + Ms(request.HoldTimeout),
                reservation?.LeaseId ?? "", "", Ms(QuotaWindows.MinuteTtl), Ms(QuotaWindows.DayTtl), Ms(QuotaWindows.MonthTtl),
                minute, day, month, now, Ms(request.HoldTimeout + request.ClaimRetention),
                input, request.Estimated ? "1" : "0", mark, request.ConversationId is null ? "0" : "1",
                reservation?.ReservedMicroUsd ?? 0, request.BilledMicroUsd, heldMinute, heldDay, heldMonth,
            ]))!;
        }
    }

    public async ValueTask<long> GetContextTokensAsync(string tenantId, string? previousResponseId, string? conversationId, CancellationToken cancellationToken)
    {
        if (previousResponseId is null && conversationId is null)
        {
            return 0;
        }

        var prefix = TenantPrefix(tenantId);
        var values = await redis.GetDatabase().StringGetAsync(
            [prefix + "counted:" + (previousResponseId ?? "-"), prefix + "ctx:" + (conversationId ?? "-")]);
        return (previousResponseId is null ? 0 : MarkTokens(values[0])) + (conversationId is null ? 0 : MarkTokens(values[1]));
    }

    public async ValueTask<QuotaCounters> ReadCountersAsync(string tenantId, QuotaWindows windows, CancellationToken cancellationToken)
    {
        var keys = KeysOf(tenantId, windows.Minute, windows.Day, windows.Month);
        var result = await _readScript.EvaluateAsync(redis.GetDatabase(),
            [keys.Requests, keys.TokensMinute, keys.TokensDay, keys.TokensMonth, keys.Leases, keys.UsdDay, keys.UsdMonth],
            [windows.Now.ToUnixTimeMilliseconds()]);
        var values = (RedisResult[])result!;
        return new QuotaCounters((long)values[0], (long)values[1], (long)values[2], (long)values[3], (long)values[4], (long)values[5], (long)values[6]);
    }

    public ValueTask RecordOwnerAsync(string objectId, string tenantId, string? upstream, TimeSpan retention, CancellationToken cancellationToken) =>
        _owners.RecordOwnerAsync(objectId, tenantId, upstream, retention);

    public ValueTask ExpireOwnerAsync(string objectId, string tenantId, TimeSpan keepFor, CancellationToken cancellationToken) =>
        _owners.ExpireOwnerAsync(objectId, tenantId, keepFor);

    public ValueTask<ObjectOwner?> GetOwnerAsync(string objectId, CancellationToken cancellationToken) => _owners.GetOwnerAsync(objectId);

    public async ValueTask<bool> PingAsync(CancellationToken cancellationToken)
    {
        await redis.GetDatabase().PingAsync();
        return true;
    }

    private static AdmissionDecision MapDecision(int code) =>
        Enum.IsDefined((AdmissionDecision)code) ? (AdmissionDecision)code : throw new InvalidOperationException($"The admission script returned {code}.");

    private string TenantPrefix(string tenantId) => string.Concat(keyPrefix, ":{t:", tenantId, "}:");

    /// <summary>The tenant's keys of these windows: the cached ones when they are the latest, else built (and cached).</summary>
    private WindowKeys KeysOf(string tenantId, long minute, long day, long month)
    {
        if (_windowKeys.TryGetValue(tenantId, out var cached))
        {
            if (cached.Covers(minute, day, month))
            {
                return cached;
            }

            if (cached.Minute > minute)
            {
                return cached.Of(minute, day, month); // an older window (a late settle): built, the newer entry kept
            }
        }

        var keys = new WindowKeys(cached?.Prefix ?? TenantPrefix(tenantId), minute, day, month);
        _windowKeys[tenantId] = keys;
        return keys;
    }

    /// <summary>A tenant's counter keys of one minute, day and month (immutable; shared by the calls of those windows).</summary>
    private sealed class WindowKeys(string prefix, long minute, long day, long month)
    {
        public string Prefix { get; } = prefix;

        public long Minute { get; } = minute;

        public long Day { get; } = day;

        public long Month { get; } = month;

        public string Leases { get; } = prefix + "leases";

        public string Requests { get; } = prefix + "r:" + Num(minute);

        public string TokensMinute { get; } = prefix + "tm:" + Num(minute);

        public string TokensDay { get; } = prefix + "td:" + Num(day);

        public string TokensMonth { get; } = prefix + "tmo:" + Num(month);

        public string UsdDay { get; } = prefix + "ud:" + Num(day);

        public string UsdMonth { get; } = prefix + "umo:" + Num(month);

        /// <summary>Whether these are the keys of those windows.</summary>
        public bool Covers(long otherMinute, long otherDay, long otherMonth) => otherMinute == Minute && otherDay == Day && otherMonth == Month;

        /// <summary>These keys when the windows are these, else the keys of those windows.</summary>
        public WindowKeys Of(long otherMinute, long otherDay, long otherMonth) =>
            Covers(otherMinute, otherDay, otherMonth) ? this : new WindowKeys(Prefix, otherMinute, otherDay, otherMonth);
    }

    /// <summary>Input + output of a counted mark (<c>in:out:usd</c>, <c>~in:out:usd</c> when estimated; <c>1</c> from older versions).</summary>
    private static long MarkTokens(RedisValue mark)
    {
        if (mark.IsNullOrEmpty)
        {
            return 0;
        }

        var text = ((string)mark!).AsSpan().TrimStart('~');
        var separator = text.IndexOf(':');
        if (separator >= 0 && text[(separator + 1)..].IndexOf(':') is var costSeparator and >= 0)
        {
            text = text[..(separator + 1 + costSeparator)];
        }

        return separator < 0
            ? (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var total) ? total : 0)
            : (long.TryParse(text[..separator], NumberStyles.Integer, CultureInfo.InvariantCulture, out var input) ? input : 0)
              + (long.TryParse(text[(separator + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out var output) ? output : 0);
    }

    private static string Num(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static long Ms(TimeSpan span) => (long)span.TotalMilliseconds;
}
