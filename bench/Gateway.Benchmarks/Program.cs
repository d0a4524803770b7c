using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Gateway.Benchmarks -- --filter '*'
// dotnet run -c Release --project bench/Gateway.Benchmarks -- --interleaved-scanner   (the scanner vs its former algorithm, alternating)
// dotnet run -c Release --project bench/Gateway.Benchmarks -- --interleaved-clef      (the usage event's CLEF line vs the former writer, alternating)
if (args is ["--interleaved-clef"])
{
    Gateway.Benchmarks.InterleavedClefComparison.Run();
    return;
}

if (args is ["--interleaved-scanner"])
{
    Gateway.Benchmarks.InterleavedScannerComparison.Run();
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Gateway.Benchmarks.SseUsageTeeBenchmark).Assembly).Run(args);
