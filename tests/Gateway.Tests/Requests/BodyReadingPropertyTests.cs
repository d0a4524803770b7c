using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using CsCheck;
using Gateway.Configuration;
using Gateway.Requests;
using Gateway.Routing;
using Gateway.Tenants;

namespace Gateway.Tests.Requests;

/// <summary>
/// "One reading of the body, the upstream's", as a property: for generated bodies full of duplicated keys (under
/// escaped spellings too), nulls, wrong types, escapes, whitespace and any key order, the gateway's inspection and
/// policy edits either refuse the body with a 400 naming a parameter, or what the gateway believes equals what a
/// last-wins parse of the body it forwards says, the output limit is within the tenant's cap, and a chat stream asks
/// for usage. The reference parser below is independent of the gateway's: JsonDocument, keeping the last member.
/// </summary>
public sealed class BodyReadingPropertyTests
{
    private const int Bodies = 12_000;

    private static readonly string LongText = "\"" + new string('x', 300) + "\"";

    // Each key's values: ones the gateway accepts (most often drawn) and ones it must refuse.
    private static readonly string[] Models = ["\"gpt-4o-mini\"", "\"gpt-4o\"", "\"g\\u0070t-4o-mini\"", "\"gpt-4o-mini-2024-07-18\"", "\"gpt-\\ud83d\\ude00\"", "\"\""];

    private static readonly string[] BadModels = ["null", "5", "true", "[]", "{}", LongText, "\"\\ud800\""];

    private static readonly string[] Booleans = ["true", "false", "null"];

    private static readonly string[] BadBooleans = ["\"yes\"", "1", "\"true\"", "{}"];

    private static readonly string[] ResponseIds = ["\"resp_abc\"", "\"resp_\\u0061bc\"", "null", "\"\""];

    private static readonly string[] BadResponseIds = ["7", LongText, "[\"resp_1\"]", "\"resp_\\udc00\""];

    private static readonly string[] Conversations =
        ["\"conv_1\"", "{\"id\":\"conv_2\"}", "{\"i\\u0064\":\"conv_3\",\"metadata\":{\"id\":1}}", "{\"id\":null}", "{}", "null"];

    private static readonly string[] BadConversations = ["{\"id\":\"conv_1\",\"id\":\"conv_2\"}", "{\"id\":5}", "5", "{\"id\":" + LongText + "}", "[\"conv_1\"]"];

    private static readonly string[] Limits = ["1", "16", "100", "8192", "9000", "0", "-5", "null", "null", "9223372036854775807"];

    private static readonly string[] BadLimits = ["\"100\"", "100.0", "1e3", "99999999999999999999", "true"];

    private static readonly string[] Choices = ["1", "2", "3", "128", "null"];

    private static readonly string[] BadChoices = ["129", "0", "-1", "\"2\"", "1.5"];

    private static readonly string[] StreamOptions =
    [
        "null", "null", "{}", "{\"include_usage\":true}", "{\"include_usage\":false}", "{\"include_usage\":null}", "{\"include_obfuscation\":false}",
        "{\"incl\\u0075de_usage\":false, \"x\":[1,{\"include_usage\":false}]}", "{ \"include_usage\" : false , \"include_obfuscation\" : true }",
    ];

    private static readonly string[] BadStreamOptions = ["{\"include_usage\":\"yes\"}", "{\"include_usage\":true,\"include_usage\":false}", "\"x\"", "[]"];

    private static readonly (string Name, string Value)[] Fillers =
    [
        ("input", "\"hi\""), ("messages", "[{\"role\":\"user\",\"content\":\"hi \\\"model\\\": 1\"}]"), ("metadata", "{\"model\":\"x\",\"stream\":true,\"max_tokens\":null}"),
        ("Model", "\"gpt-5\""), ("a\\u0022b", "1"), ("temperature", "0.5"), ("tools", "[]"), ("stream_options_x", "null"),
    ];

    private static readonly string[] Whitespace = ["", "", " ", "\n", "\t ", "\r\n  "];

    private static readonly string[] EditedKeys = ["stream_options", "max_output_tokens", "max_completion_tokens", "max_tokens"];

    [Fact]
    public void InspectAndPolicy_AnyBody_RefusedNamingAParamOrBelievedAsTheForwardedBodyReads()
    {
        var accepted = 0;
        var refused = 0;
        var edited = 0;
        Cases.Sample(c =>
        {
            switch (Run(c))
            {
                case Verdict.Accepted:
                    Interlocked.Increment(ref accepted);
                    break;
                case Verdict.AcceptedEdited:
                    Interlocked.Increment(ref accepted);
                    Interlocked.Increment(ref edited);
                    break;
                default:
                    Interlocked.Increment(ref refused);
                    break;
            }
        }, iter: Bodies, print: c => c.ToString());

        // The property must not hold vacuously: many bodies go through (edited or not), many are refused. The bounds sit
        // far below the generator's rates (measured: about 20 % accepted, 8 % edited, 80 % refused; sd about 0.4 % at
        // this sample size), so a random sample cannot fail them; the old bound of exactly 20 % accepted failed one run in five.
        Assert.True(accepted > Bodies / 10, $"accepted {accepted} of {Bodies}");
        Assert.True(edited > Bodies / 40, $"edited {edited} of {Bodies}");
        Assert.True(refused > Bodies / 5, $"refused {refused} of {Bodies}");
    }

    private enum Verdict
    {
        Refused,
        Accepted,
        AcceptedEdited,
    }

    private sealed record Case(bool Chat, int? Cap, bool ModelList, string Body)
    {
        public override string ToString() => $"chat={Chat} cap={Cap?.ToString(CultureInfo.InvariantCulture) ?? "none"} list={ModelList} body={Body}";
    }

    private static Gen<Case> Cases =>
        Gen.Select(Gen.Bool, Gen.OneOf<int?>(null, 16, 100, 8192), Gen.Bool).SelectMany((chat, cap, list) =>
            Members(chat).Select(Gen.OneOf(Whitespace), (members, ws) => new Case(chat, cap, list, "{" + ws + string.Join("," + ws, members.OrderBy(m => m.Order).Select(m => m.Text)) + ws + "}")));

    private readonly record struct Member(int Order, string Text);

    private static Gen<Member[]> Members(bool chat)
    {
        var keys = new List<Gen<Member[]>>
        {
            Key("model", Models, BadModels), Key("stream", Booleans, BadBooleans), Key("background", Booleans, BadBooleans), Key("store", Booleans, BadBooleans),
            Key("previous_response_id", ResponseIds, BadResponseIds), Key("conversation", Conversations, BadConversations),
        };
        if (chat)
        {
            keys.AddRange([Key("max_completion_tokens", Limits, BadLimits), Key("max_tokens", Limits, BadLimits), Key("n", Choices, BadChoices),
                Key("stream_options", StreamOptions, BadStreamOptions)]);
        }
        else
        {
            keys.Add(Key("max_output_tokens", Limits, BadLimits));
        }

        keys.AddRange(Fillers.Select(f => Occurrences(Gen.Frequency((1, 0), (1, 1)), Gen.Const(f.Name), Gen.Const(f.Value))));
        var all = Gen.Const(Array.Empty<Member>());
        foreach (var key in keys)
        {
            var sofar = all;
            all = sofar.SelectMany(list => key.Select(more => (Member[])[.. list, .. more]));
        }

        return all;
    }

    /// <summary>A policy key: absent, once (most often) or twice, each time under a plain or partly escaped spelling.</summary>
    private static Gen<Member[]> Key(string name, string[] values, string[] badValues) =>
        Occurrences(Gen.Frequency((4, 0), (10, 1), (1, 2)), Spelling(name), Gen.Frequency<string>((15, Gen.OneOf(values)), (1, Gen.OneOf(badValues))));

    private static Gen<Member[]> Occurrences(Gen<int> count, Gen<string> names, Gen<string> values) =>
        count.SelectMany(n => Gen.Select(Gen.Int[0, 1000], names, values, Gen.OneOf(Whitespace), Gen.OneOf(Whitespace))
            .Select((order, key, value, before, after) => new Member(order, $"\"{key}\"{before}:{after}{value}"))
            .Array[n]);

    /// <summary>The key as sent: plain, or with one character written as a \u escape (<c>m\u006fdel</c>).</summary>
    private static Gen<string> Spelling(string name) =>
        Gen.Frequency<string>((3, Gen.Const(name)), (1, Gen.Int[0, name.Length - 1].Select(Gen.Bool, (i, upper) =>
            name[..i] + "\\u" + ((int)name[i]).ToString(upper ? "X4" : "x4", CultureInfo.InvariantCulture) + name[(i + 1)..])));

    private static Verdict Run(Case c)
    {
        var route = c.Chat ? ApiRouteTable.ChatCompletionsCreate : ApiRouteTable.ResponsesCreate;
        var tenant = new Tenant("tenant", new TenantOptions { MaxOutputTokens = c.Cap, Models = c.ModelList ? ["gpt-4o-mini", "gpt-4o"] : [] });
        var original = Encoding.UTF8.GetBytes(c.Body);
        var facts = RequestInspector.Inspect(original, route, out var error);
        if (facts is null)
        {
            AssertRefusal(error);
            return Verdict.Refused;
        }

        var buffer = ArrayPool<byte>.Shared.Rent(original.Length);
        original.CopyTo(buffer, 0);
        using var body = new PooledBody(buffer, original.Length);
        error = RequestPolicy.Apply(body, facts, route, tenant, out var hideChatUsageChunk);
        if (error is not null)
        {
            AssertRefusal(error);
            return Verdict.Refused;
        }

        using var forwardedDocument = JsonDocument.Parse(body.Memory);
        using var originalDocument = JsonDocument.Parse(original);
        var sent = LastWins(forwardedDocument.RootElement);
        var asked = LastWins(originalDocument.RootElement);

        Assert.Equal(Text(sent, "model"), facts.Model);
        Assert.Equal(Flag(sent, "stream") == true, facts.Stream);
        Assert.Equal(Flag(sent, "background") == true, facts.Background);
        Assert.Equal(Flag(sent, "store"), facts.Store);
        Assert.Equal(Text(sent, "previous_response_id"), facts.PreviousResponseId);
        Assert.Equal(sent.TryGetValue("conversation", out var conversation) && conversation.ValueKind == JsonValueKind.Object
            ? Text(LastWins(conversation), "id") : Text(sent, "conversation"), facts.ConversationId);

        long?[] limits = c.Chat ? [Number(sent, "max_completion_tokens"), Number(sent, "max_tokens")] : [Number(sent, "max_output_tokens")];
        Assert.Equal(limits.Max(), facts.MaxOutputTokens);
        if (c.Cap is { } cap)
        {
            // Whichever limit the upstream honours, there is one, and it is within the cap.
            Assert.NotNull(facts.MaxOutputTokens);
            Assert.All(limits, limit => Assert.True(limit is null || limit <= cap, $"limit {limit} above cap {cap}"));
        }

        if (c.Chat)
        {
            Assert.Equal(Number(sent, "n"), facts.Choices);
            if (facts.Stream)
            {
                Assert.True(sent.TryGetValue("stream_options", out var options) && options.ValueKind == JsonValueKind.Object, "a chat stream without stream_options");
                Assert.True(Flag(LastWins(options), "include_usage"), "a chat stream that does not ask for usage");
                var clientAskedForUsage = asked.TryGetValue("stream_options", out var before) && before.ValueKind == JsonValueKind.Object
                    && Flag(LastWins(before), "include_usage") == true;
                Assert.Equal(!clientAskedForUsage, hideChatUsageChunk);
            }
        }

        // Everything the policy does not edit is forwarded byte for byte; nothing else is added.
        foreach (var (name, value) in asked)
        {
            Assert.True(sent.ContainsKey(name), $"'{name}' was lost");
            if (!EditedKeys.Contains(name))
            {
                Assert.Equal(value.GetRawText(), sent[name].GetRawText());
            }
        }

        Assert.All(sent.Keys, name => Assert.True(asked.ContainsKey(name) || EditedKeys.Contains(name), $"'{name}' was added"));
        return body.Length == original.Length && body.Span.SequenceEqual(original) ? Verdict.Accepted : Verdict.AcceptedEdited;
    }

    private static void AssertRefusal(Errors.OpenAIError? error)
    {
        Assert.NotNull(error);
        Assert.True(error.StatusCode == 400 || (error.StatusCode == 404 && error.Code == "model_not_found"), $"{error.StatusCode} {error.Message}");
        Assert.Equal("invalid_request_error", error.Type);
        Assert.False(string.IsNullOrEmpty(error.Param), $"no param: {error.Message}");
    }

    /// <summary>The reference reading: every member, the last of equal (unescaped) names winning.</summary>
    private static Dictionary<string, JsonElement> LastWins(JsonElement element)
    {
        var members = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var member in element.EnumerateObject())
        {
            members[member.Name] = member.Value;
        }

        return members;
    }

    private static string? Text(Dictionary<string, JsonElement> members, string name) =>
        members.TryGetValue(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static bool? Flag(Dictionary<string, JsonElement> members, string name) =>
        members.TryGetValue(name, out var value) ? value.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => null } : null;

    private static long? Number(Dictionary<string, JsonElement> members, string name) =>
        members.TryGetValue(name, out var value) && value.ValueKind == JsonValueKind.Number ? value.GetInt64() : null;
}
