using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Gateway.Benchmarks -- --filter '*'
// dotnet run -c Release --project bench/Gateway.Benchmarks -- --interleaved-scanner   (the scanner vs its former algorithm, alternating)
if (args is ["--interleaved-scanner"])
{
    Gateway.Benchmarks.InterleavedScannerComparison.Run();
    return;
}

BenchmarkSwitcher.FromAssembly(typeof(Gateway.Benchmarks.SseUsageTeeBenchmark).Assembly).Run(args);
