namespace FakeUpstream;

/// <summary>Everything one fake instance remembers: settings, recorded requests, ledger, gates and stored objects.</summary>
internal sealed class FakeUpstreamState
{
    public FakeUpstreamState(FakeUpstreamSettings settings)
    {
        Settings = settings;
        Recorder = new RequestRecorder(settings.RecordRequests);
        Responses = new ObjectStore<ResponseState>(settings.MaxStoredObjects);
        Chats = new ObjectStore<ChatState>(settings.MaxStoredObjects);
        Conversations = new ObjectStore<ConversationState>(settings.MaxStoredObjects);
        Replays = new ReplayCatalog(ResolveRecordingsPath(settings.RecordingsPath));
    }

    public FakeUpstreamSettings Settings { get; }

    public RequestRecorder Recorder { get; }

    public UsageLedger Ledger { get; } = new();

    public GateRegistry Gates { get; } = new();

    public ObjectStore<ResponseState> Responses { get; }

    public ObjectStore<ChatState> Chats { get; }

    public ObjectStore<ConversationState> Conversations { get; }

    public ReplayCatalog Replays { get; }

    /// <summary>Instance-wide behaviour (<see cref="FakeUpstreamMode"/>), independent of request headers.</summary>
    public FakeUpstreamMode Mode { get; set; } = FakeUpstreamMode.Normal;

    /// <summary>Set by the host: stops listening (the <c>stop</c> mode of <c>POST /_fake/mode</c>).</summary>
    public Func<Task>? StopListening { get; set; }

    /// <summary>Signalled when the host starts shutting down (ends parked streams and delays).</summary>
    public CancellationToken Stopping { get; set; }

    /// <summary>The configured folder, else <c>Fixtures/openai-recordings</c> next to the assembly (test output folders
    /// copy it there), else the repository's <c>tests/Fixtures/openai-recordings</c> found by walking up.</summary>
    public static string? ResolveRecordingsPath(string? configured)
    {
        if (!string.IsNullOrEmpty(configured))
        {
            return Path.GetFullPath(configured);
        }

        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            foreach (var candidate in (ReadOnlySpan<string>)[Path.Combine(dir.FullName, "Fixtures", "openai-recordings"), Path.Combine(dir.FullName, "tests", "Fixtures", "openai-recordings")])
            {
                if (Directory.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }
}
