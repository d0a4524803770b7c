namespace Gateway.Usage;

/// <summary>
/// The tree of JSON paths worth reading, shared by every OpenAI shape the gateway meters: Responses bodies
/// and their SSE events (fields under <c>response</c>), chat completions and chunks, embeddings.
/// Array elements inherit their array's node, so <c>choices[].delta.content</c> is choices → delta → content.
/// </summary>
internal static class ScanPaths
{
    public const short Skip = -1;
    public const short Root = 0;

    internal sealed record Node(ScanField Scalar, ScanField ContainerFlag, ScanField ElementFlag, (byte[] Name, short Child)[] Children);

    private static readonly Node[] Nodes = Build(out UsageNodeId);

    // Each node's children grouped by the length of their name: a key is compared only with the names of its length
    // (the root has 13 children and a Responses body ~35 top-level keys, most of them not read; #15).
    private static readonly (byte[] Name, short Child)[]?[][] ChildrenByLength = GroupByLength(Nodes);

    public static readonly short UsageNodeId;

    public static Node Get(short id) => Nodes[id];

    /// <summary>The child of <paramref name="parent"/> named <paramref name="name"/>, or <see cref="Skip"/>.</summary>
    public static short Child(short parent, ReadOnlySpan<byte> name)
    {
        if (parent < 0)
        {
            return Skip;
        }

        var byLength = ChildrenByLength[parent];
        if ((uint)name.Length >= (uint)byLength.Length || byLength[name.Length] is not { } candidates)
        {
            return Skip;
        }

        foreach (var (childName, child) in candidates)
        {
            if (name.SequenceEqual(childName))
            {
                return child;
            }
        }

        return Skip;
    }

    private static (byte[] Name, short Child)[]?[][] GroupByLength(Node[] nodes) =>
        nodes.Select(node =>
        {
            var byLength = new (byte[] Name, short Child)[]?[node.Children.Length == 0 ? 0 : node.Children.Max(c => c.Name.Length) + 1];
            foreach (var group in node.Children.GroupBy(c => c.Name.Length))
            {
                byLength[group.Key] = [.. group];
            }

            return byLength;
        }).ToArray();

    private static Node[] Build(out short usageId)
    {
        var nodes = new List<Node>();
        short Add(ScanField scalar, ScanField containerFlag = ScanField.None, ScanField elementFlag = ScanField.None, params (string, short)[] children)
        {
            nodes.Add(new Node(scalar, containerFlag, elementFlag, children.Select(c => (System.Text.Encoding.UTF8.GetBytes(c.Item1), c.Item2)).ToArray()));
            return (short)(nodes.Count - 1);
        }

        // Placeholder for the root so it gets id 0; replaced below once its children exist.
        nodes.Add(null!);
        var inputDetails = Add(ScanField.None, children: [("cached_tokens", Add(ScanField.CachedTokens))]);
        var outputDetails = Add(ScanField.None, children: [("reasoning_tokens", Add(ScanField.ReasoningTokens))]);
        var usage = Add(ScanField.NullUsage, ScanField.UsageObject, children:
        [
            ("input_tokens", Add(ScanField.InputTokens)),
            ("output_tokens", Add(ScanField.OutputTokens)),
            ("total_tokens", Add(ScanField.TotalTokens)),
            ("prompt_tokens", Add(ScanField.PromptTokens)),
            ("completion_tokens", Add(ScanField.CompletionTokens)),
            ("input_tokens_details", inputDetails),
            ("prompt_tokens_details", inputDetails),
            ("output_tokens_details", outputDetails),
            ("completion_tokens_details", outputDetails),
        ]);
        var conversation = Add(ScanField.ConversationId, children: [("id", Add(ScanField.ConversationId))]);
        var id = Add(ScanField.Id);
        var model = Add(ScanField.Model);
        var status = Add(ScanField.Status);
        var background = Add(ScanField.Background);
        var response = Add(ScanField.None, children:
        [
            ("id", id), ("model", model), ("status", status), ("usage", usage), ("conversation", conversation), ("background", background),
        ]);
        var choiceDelta = Add(ScanField.None, children: [("content", Add(ScanField.ChatDeltaContent))]);
        var choices = Add(ScanField.None, ScanField.ChoicesArray, ScanField.ChoicesElement, children: [("delta", choiceDelta)]);
        var error = Add(ScanField.None, ScanField.ErrorObject);

        nodes[Root] = new Node(ScanField.None, ScanField.None, ScanField.None,
        [
            ("type"u8.ToArray(), Add(ScanField.Type)),
            ("id"u8.ToArray(), id),
            ("object"u8.ToArray(), Add(ScanField.Object)),
            ("model"u8.ToArray(), model),
            ("status"u8.ToArray(), status),
            ("sequence_number"u8.ToArray(), Add(ScanField.SequenceNumber)),
            ("delta"u8.ToArray(), Add(ScanField.Delta)),
            ("usage"u8.ToArray(), usage),
            ("response"u8.ToArray(), response),
            ("conversation"u8.ToArray(), conversation),
            ("background"u8.ToArray(), background),
            ("choices"u8.ToArray(), choices),
            ("error"u8.ToArray(), error),
        ]);
        usageId = usage;
        return nodes.ToArray();
    }
}
