using Gateway.Upstreams;

namespace Gateway.Tests.Upstreams;

public sealed class UpstreamRouterTests
{
    [Fact]
    public void Choose_WeightsThreeToOne_SplitWithinTenPercentOver400Picks()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"], ("Gateway:Upstreams:a:Weight", "3")));

        var firstPicks = Enumerable.Range(0, 400).Select(_ => kit.Router.Choose("gpt-4o-mini").Candidates[0].Name).ToList();

        var a = firstPicks.Count(n => n == "a");
        Assert.InRange(a, 300 * 0.9, 300 * 1.1);
        Assert.InRange(400 - a, 100 * 0.9, 100 * 1.1);
    }

    [Fact]
    public void Choose_TwoPriorityGroups_LowerGroupFirstThenTheOtherAsFallback()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(
            ["ptu", "paygo", "openai"],
            ("Gateway:Upstreams:ptu:Priority", "1"), ("Gateway:Upstreams:paygo:Priority", "2"), ("Gateway:Upstreams:openai:Priority", "2")));

        for (var i = 0; i < 50; i++)
        {
            var order = kit.Router.Choose("gpt-4o-mini").Candidates.Select(c => c.Name).ToList();
            Assert.Equal("ptu", order[0]);
            Assert.Equal(["openai", "paygo"], order.Skip(1).Order().ToList());
        }
    }

    [Fact]
    public void Choose_ModelsMap_OnlyUpstreamsServingTheModelAndItsDeploymentName()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["azure", "openai"], ("Gateway:Upstreams:azure:Models:gpt-4.1-mini", "mini-ptu")));

        var mini = kit.Router.Choose("gpt-4.1-mini");
        var other = kit.Router.Choose("gpt-4o");

        Assert.Equal(["azure", "openai"], mini.Candidates.Select(c => c.Name).Order());
        Assert.Equal("mini-ptu", mini.Candidates.Single(c => c.Name == "azure").UpstreamModel("gpt-4.1-mini"));
        Assert.Equal("openai", Assert.Single(other.Candidates).Name);
        Assert.Equal("gpt-4o", other.Candidates[0].UpstreamModel("gpt-4o"));
    }

    [Fact]
    public void Choose_NoUpstreamServesModel_NoCandidates()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["azure"], ("Gateway:Upstreams:azure:Models:gpt-4.1-mini", "mini")));

        var choice = kit.Router.Choose("gpt-4o");

        Assert.Equal(UpstreamChoiceKind.NoUpstreamServesModel, choice.Kind);
        Assert.Empty(choice.Candidates);
    }

    [Fact]
    public void Choose_RateLimitedForOneModel_OtherModelsStillGoThere()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromSeconds(20)));

        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(["b"], kit.Router.Choose("gpt-4o").Candidates.Select(c => c.Name));
        }

        Assert.Contains(Enumerable.Range(0, 20), _ => kit.Router.Choose("gpt-4o-mini").Candidates[0].Name == "a");
    }

    [Fact]
    public void Choose_EveryCandidateCooling_AllCoolingDownWithSoonestRecovery()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        kit.Report("a", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromSeconds(30)));
        kit.Report("b", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromSeconds(7)));
        kit.Time.Advance(TimeSpan.FromSeconds(2));

        var choice = kit.Router.Choose("gpt-4o");

        Assert.Equal(UpstreamChoiceKind.AllCoolingDown, choice.Kind);
        Assert.Equal(TimeSpan.FromSeconds(5), choice.RetryAfter);
    }

    [Fact]
    public void Choose_SingleCandidateCooling_StillReturned()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["only"]));
        kit.Report("only", "gpt-4o", UpstreamAttemptOutcome.Answered(429, TimeSpan.FromMinutes(1)));

        var choice = kit.Router.Choose("gpt-4o");

        Assert.Equal(UpstreamChoiceKind.Candidates, choice.Kind);
        Assert.Equal("only", Assert.Single(choice.Candidates).Name);
        Assert.NotNull(kit.Health.TryBeginAttempt(choice.Candidates[0], "gpt-4o"));
    }

    [Fact]
    public void Choose_PinnedUpstreamCooling_OnlyThatUpstream()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        kit.Report("a", null, UpstreamAttemptOutcome.Answered(401));

        var choice = kit.Router.Choose("gpt-4o", pinnedUpstream: "A");

        Assert.Equal(UpstreamChoiceKind.Candidates, choice.Kind);
        Assert.Equal("a", Assert.Single(choice.Candidates).Name);
    }

    [Fact]
    public void Choose_PinnedUpstreamRemovedFromConfiguration_PinnedUpstreamGone()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));

        var choice = kit.Router.Choose("gpt-4o", pinnedUpstream: "c");

        Assert.Equal(UpstreamChoiceKind.PinnedUpstreamGone, choice.Kind);
        Assert.Empty(choice.Candidates);
    }

    [Fact]
    public void IsAnyUsable_EveryUpstreamCoolingAsAWhole_FalseUntilOneRecovers()
    {
        using var kit = new PoolTestKit(PoolTestKit.Config(["a", "b"]));
        kit.Report("a", null, UpstreamAttemptOutcome.Answered(401));
        Assert.True(kit.Router.IsAnyUsable());

        kit.Report("b", null, UpstreamAttemptOutcome.Answered(401));
        Assert.False(kit.Router.IsAnyUsable());

        kit.Time.Advance(kit.Routing.CooldownWithoutHint);
        Assert.True(kit.Router.IsAnyUsable());
    }
}
