using BenchmarkDotNet.Running;

namespace HeadLens.Benchmarks;

internal static class Program
{
    // `dotnet run -c Release --project bench/HeadLens.Benchmarks -- --filter '*'`; the CLI's `headlens bench`
    // is the quick, contract-shaped way to measure; this project is for detailed micro-benchmarks.
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
