using Gateway.Upstreams;

namespace Gateway.Tests.Upstreams;

public sealed class UpstreamFailoverPolicyTests
{
    private static readonly FailoverContext FirstOfThree = new(AttemptNumber: 1, MaxAttempts: 3, HasNextCandidate: true, FailoverAllowed: true, EarlierAttemptRateLimited: false);

    [Theory]
    [InlineData(429)]
    [InlineData(500)]
    [InlineData(502)]
    [InlineData(503)]
    [InlineData(504)]
    [InlineData(401)]
    [InlineData(403)]
    public void Decide_RetryableStatusWithAnotherCandidate_TryNext(int status) =>
        Assert.Equal(FailoverAction.TryNext, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(status), FirstOfThree));

    [Fact]
    public void Decide_ConnectFailureOrTimeoutWithAnotherCandidate_TryNext()
    {
        Assert.Equal(FailoverAction.TryNext, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.ConnectFailed, FirstOfThree));
        Assert.Equal(FailoverAction.TryNext, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.TimedOut, FirstOfThree));
    }

    [Theory]
    [InlineData(200)]
    [InlineData(400)]
    [InlineData(404)]
    [InlineData(409)]
    [InlineData(422)]
    public void Decide_AnswerOrClientError_Relay(int status) =>
        Assert.Equal(FailoverAction.Relay, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(status), FirstOfThree));

    [Fact]
    public void Decide_MaxAttemptsReached_NoFurtherTry()
    {
        var last = FirstOfThree with { AttemptNumber = 3 };

        Assert.Equal(FailoverAction.AnswerRateLimited, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(429), last));
        Assert.Equal(FailoverAction.AnswerRateLimited, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(503), last with { EarlierAttemptRateLimited = true }));
        Assert.Equal(FailoverAction.Relay, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(503), last));
        Assert.Equal(FailoverAction.AnswerBadGateway, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.ConnectFailed, last));
        Assert.Equal(FailoverAction.AnswerGatewayTimeout, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.TimedOut, last));
        Assert.Equal(FailoverAction.AnswerBadGateway, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(401), last));
    }

    [Fact]
    public void Decide_PinnedOrOnlyCandidate_UpstreamsOwnAnswerRelayedExceptAuth()
    {
        var pinned = FirstOfThree with { FailoverAllowed = false, HasNextCandidate = false };

        Assert.Equal(FailoverAction.Relay, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(429), pinned));
        Assert.Equal(FailoverAction.Relay, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(500), pinned));
        Assert.Equal(FailoverAction.AnswerBadGateway, UpstreamFailoverPolicy.Decide(UpstreamAttemptOutcome.Answered(403), pinned));
    }
}
