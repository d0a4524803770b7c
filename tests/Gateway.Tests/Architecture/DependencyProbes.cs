// Two tiny "folders" the dependency scanner is checked against (FolderDependencyTests.Edges_ReferenceOnlyInsideAMethodBody_IsFound).
namespace Gateway.ProbeTarget
{
    internal sealed class Target
    {
        public static int Answer() => 42;
    }
}

namespace Gateway.ProbeCaller
{
    internal static class Caller
    {
        public static async Task<int> CallAsync()
        {
            await Task.Yield();
            return ProbeTarget.Target.Answer();
        }

        public static bool StashInFeatures(Microsoft.AspNetCore.Http.HttpContext context)
        {
            context.Features.Set(new ProbeTarget.Target());
            return context.Features.Get<ProbeTarget.Target>() is not null;
        }
    }
}
