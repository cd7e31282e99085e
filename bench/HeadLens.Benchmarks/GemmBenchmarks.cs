using BenchmarkDotNet.Attributes;
using HeadLens.Kernels;

namespace HeadLens.Benchmarks;

[MemoryDiagnoser]
public class GemmBenchmarks
{
    private float[] a = [];
    private float[] b = [];
    private float[] c = [];

    [Params(256, 1024)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        a = Enumerable.Range(0, Size * Size).Select(_ => (float)random.NextDouble()).ToArray();
        b = Enumerable.Range(0, Size * Size).Select(_ => (float)random.NextDouble()).ToArray();
        c = new float[Size * Size];
    }

    [Benchmark]
    public void Multiply() => Gemm.Multiply(false, false, Size, Size, Size, a, Size, b, Size, c, Size, accumulate: false);
}
