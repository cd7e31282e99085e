using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using HeadLens.Kernels;
using HeadLens.Tensors;

namespace HeadLens.MatmulPeer;

// HeadLens's matrix product against OpenBLAS's cblas_sgemm, in one process, on the same operands, timed in turn:
// a sample of HeadLens, a sample of OpenBLAS, a sample of HeadLens, ... and the ratio of each adjacent pair.
// Why: on a shared 2-core host both engines swing 130–230 GFLOP/s between runs half a minute apart, so two
// separate runs (bench matmul, then torch) compare two different machines. Adjacent samples a few milliseconds
// apart see the same machine, and the median of their ratios keeps that.
//
// The shapes are `headlens bench matmul`'s: squares of 512, 1024 and 2048, and the products of a GPT-2 124M
// training step with 256 tokens (B = 4, T = 64; --tokens 1024 for T = 256, without the squares): forward y = x·Wᵀ,
// input gradient dx = dy·W, weight gradient dW += dyᵀ·x, in the layouts HeadLens uses, which OpenBLAS receives as the
// same transposes (row-major cblas, beta = 1 where HeadLens accumulates).
//
// On one thread both engines run on the calling thread, so a sample is timed by that thread's CPU time: what a
// neighbour's process takes from the core while the sample runs is then not counted against either engine. On more
// threads the work is spread over threads that also wait for each other, so samples are timed by the wall clock.
//
// Usage: dotnet MatmulPeer.dll [--threads 1,2] [--samples N] [--sample-ms MS] [--gap-ms MS] [--only OP] [--sizes N,N]
//        [--shapes MxNxK,...] [--tokens N,N]
// Needs libopenblas.so.0 (Debian: libopenblas0-openmp); OPENBLAS_CORETYPE must be set before the process starts
// (the library reads it when it loads): compare-matmul-interleaved.sh sets it.
internal static class Program
{
    private static int Main(string[] args)
    {
        try
        {
            var options = Options.Parse(args);
            var peer = OpenBlas.Load();
            return Run(options, peer);
        }
        catch (ToolException error)
        {
            Console.Error.WriteLine($"matmul-peer: {error.Message}");
            return 2;
        }
    }

    private static int Run(Options options, OpenBlas peer)
    {
        var blocking = Gemm.Blocking;
        Console.WriteLine($"HeadLens blocking KC={blocking.Depth} MC={blocking.Rows} NC={blocking.Columns}; OpenBLAS {peer.Config} (core {peer.CoreName})");
        if (options.Threads.Any(threads => threads > 1) && !peer.Config.Contains("USE_OPENMP", StringComparison.Ordinal))
        {
            // Debian's pthread build (libopenblas0-pthread, which libopenblas-dev pulls in and which then wins the
            // alternatives) keeps its threads spinning long after a call, past the gap between samples, so on a
            // 2-core machine they hold the core HeadLens's second thread needs: on a Zen 4 machine the 2-thread
            // ratios of eight shapes fell to 0.46–0.89× (HeadLens at one thread's speed) and came back to 0.84–1.10×
            // against the OpenMP build in the next run.
            Console.Error.WriteLine(
                "matmul-peer: warning: this OpenBLAS is not the OpenMP build that the peers' README and the checks install; its idle threads spin " +
                "through the gaps and take cores from HeadLens, so the multi-thread ratios below are unfair to HeadLens " +
                "(Debian: apt-get install libopenblas0-openmp, and remove libopenblas0-pthread)");
        }

        Console.WriteLine($"{options.Samples} interleaved samples of >= {options.SampleMs} ms each per engine, {options.GapMs} ms apart (1 thread: the thread's CPU time; more: wall clock); ratio = median over adjacent pairs of HeadLens GFLOP/s / OpenBLAS GFLOP/s");
        Console.WriteLine($"{"op",-11} {"m",6} {"n",6} {"k",6} {"thr",3} {"HeadLens",9} {"OpenBLAS",9} {"ratio",6} {"range",11}");
        var ratios = options.Threads.ToDictionary(threads => threads, _ => new List<double>());
        foreach (var shape in Shapes(options))
        {
            var operands = new Operands(shape);
            operands.Check(peer);
            foreach (int threads in options.Threads)
            {
                var result = Measure(shape, operands, peer, threads, options);
                ratios[threads].Add(result.Ratio);
                Console.WriteLine(
                    $"{shape.Op,-11} {shape.M,6} {shape.N,6} {shape.K,6} {threads,3} {result.Ours,9:F0} {result.Peer,9:F0} {result.Ratio,6:F2} {result.Low,5:F2}-{result.High,-5:F2}");
            }
        }

        foreach (var (threads, list) in ratios)
        {
            if (list.Count == 0)
            {
                continue;
            }

            var sorted = list.Order().ToList();
            Console.WriteLine(
                $"threads={threads}: median ratio {Median(sorted):F2} over {sorted.Count} shapes (min {sorted[0]:F2}, max {sorted[^1]:F2}), {sorted.Count(r => r < 0.95)} below 0.95");
        }

        return 0;
    }

    private readonly record struct Result(double Ours, double Peer, double Ratio, double Low, double High);

    // Each sample runs one engine `calls` times back to back (so its threads stay warm, as in a training step) and
    // takes the time per call; a sample of the other engine follows after a short gap.
    private static Result Measure(Shape shape, Operands operands, OpenBlas peer, int threads, Options options)
    {
        peer.SetThreads(threads);
        Action ours = () => operands.RunOurs(threads);
        Action theirs = () => operands.RunPeer(peer);
        for (int i = 0; i < 2; i++)
        {
            ours();
            theirs();
        }

        // Calls per sample: enough for sample-ms on the slower engine, measured once.
        Func<long> clock = threads == 1 ? Clock.ThreadCpuNanoseconds : Clock.WallNanoseconds;
        double once = Math.Max(TimeOnce(ours, clock), TimeOnce(theirs, clock));
        int calls = (int)Math.Clamp(Math.Ceiling(options.SampleMs / once), 1, 1000);
        double flops = 2.0 * shape.M * shape.N * shape.K;
        var oursRates = new List<double>();
        var peerRates = new List<double>();
        var pairRatios = new List<double>();
        for (int sample = 0; sample < options.Samples; sample++)
        {
            // Alternate which engine goes first, so neither always runs right after the other's threads went idle.
            bool oursFirst = sample % 2 == 0;
            double first = Sample(oursFirst ? ours : theirs, calls, options.GapMs, clock);
            double second = Sample(oursFirst ? theirs : ours, calls, options.GapMs, clock);
            double oursRate = flops / (oursFirst ? first : second) / 1e9, peerRate = flops / (oursFirst ? second : first) / 1e9;
            oursRates.Add(oursRate);
            peerRates.Add(peerRate);
            pairRatios.Add(oursRate / peerRate);
        }

        pairRatios.Sort();
        // The middle half of the pair ratios: how far one pair may stray on this machine.
        return new Result(
            Median(oursRates.Order().ToList()), Median(peerRates.Order().ToList()), Median(pairRatios),
            pairRatios[pairRatios.Count / 4], pairRatios[(pairRatios.Count * 3) / 4]);
    }

    private static double TimeOnce(Action action, Func<long> clock)
    {
        long start = clock();
        action();
        return (clock() - start) / 1e6;
    }

    // Seconds per call over `calls` back-to-back calls, after a pause that lets the other engine's idle threads stop
    // spinning (OpenMP's and HeadLens's workers poll for a while after a product before they sleep).
    private static double Sample(Action action, int calls, double gapMs, Func<long> clock)
    {
        if (gapMs > 0)
        {
            Thread.Sleep(TimeSpan.FromMilliseconds(gapMs));
        }

        long start = clock();
        for (int i = 0; i < calls; i++)
        {
            action();
        }

        return (clock() - start) / 1e9 / calls;
    }

    private static double Median(List<double> sorted)
    {
        int middle = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }

    /// <summary>One product: C[m,n] (+)= op(A)[m,k] · op(B)[k,n], as `bench matmul` names it.</summary>
    private sealed record Shape(string Op, bool TransposeA, bool TransposeB, int M, int N, int K)
    {
        public bool Accumulate => Op == "weight-grad";
    }

    private static List<Shape> Shapes(Options options)
    {
        var shapes = new List<Shape>();
        // --tokens alone times the step's products only (as `bench matmul --tokens` does).
        foreach (int size in options.Sizes ?? (options.Tokens is null ? [512, 1024, 2048] : []))
        {
            shapes.Add(new Shape("square", false, false, size, size, size));
        }

        foreach (int tokens in options.Sizes is null ? options.Tokens ?? [256] : [])
        {
            // (output features, input features) of each GPT-2 124M linear layer; the last is the vocabulary head.
            foreach (var (outputs, inputs) in new[] { (2304, 768), (768, 768), (3072, 768), (768, 3072), (50257, 768) })
            {
                shapes.Add(new Shape("forward", false, true, tokens, outputs, inputs));       // y = x·Wᵀ, W [outputs, inputs]
                shapes.Add(new Shape("input-grad", false, false, tokens, inputs, outputs));   // dx = dy·W
                shapes.Add(new Shape("weight-grad", true, false, outputs, inputs, tokens));   // dW += dyᵀ·x, dy [tokens, outputs]
            }
        }

        return shapes.Where(shape => (options.Only is null || shape.Op == options.Only)
            && (options.Dims is null || options.Dims.Contains($"{shape.M}x{shape.N}x{shape.K}"))).ToList();
    }

    /// <summary>The operands of one shape, on 2 MiB pages as `bench matmul` keeps them; one C per engine.</summary>
    private sealed class Operands
    {
        private readonly Shape shape;
        private readonly Memory<float> a, b, ours, theirs;
        private readonly int lda, ldb;

        public Operands(Shape shape)
        {
            this.shape = shape;
            var arena = new Arena($"matmul {shape.M}x{shape.N}x{shape.K}", largePages: true);
            arena.Reserve("a", shape.M, shape.K);
            arena.Reserve("b", shape.K, shape.N);
            arena.Reserve("ours", shape.M, shape.N);
            arena.Reserve("theirs", shape.M, shape.N);
            arena.Allocate();
            var random = new Random(42);
            a = Fill(random, arena.Get("a").Memory);
            b = Fill(random, arena.Get("b").Memory);
            ours = arena.Get("ours").Memory;
            theirs = arena.Get("theirs").Memory;
            lda = shape.TransposeA ? shape.M : shape.K;
            ldb = shape.TransposeB ? shape.K : shape.N;
        }

        public void RunOurs(int threads) => Gemm.Multiply(
            shape.TransposeA, shape.TransposeB, shape.M, shape.N, shape.K, a.Span, lda, b.Span, ldb, ours.Span, shape.N, shape.Accumulate, threads);

        public void RunPeer(OpenBlas peer) => peer.Sgemm(
            shape.TransposeA, shape.TransposeB, shape.M, shape.N, shape.K, a.Span, lda, b.Span, ldb, theirs.Span, shape.N, shape.Accumulate);

        // Both engines must compute the same product, or the timing compares different work: one call each from a
        // zero C, compared element by element against the size of the sum (k terms of magnitude <= 1).
        public void Check(OpenBlas peer)
        {
            ours.Span.Clear();
            theirs.Span.Clear();
            RunOurs(1);
            peer.SetThreads(1);
            RunPeer(peer);
            var x = ours.Span;
            var y = theirs.Span;
            double worst = 0;
            for (int i = 0; i < x.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(x[i] - y[i]));
            }

            // float sums of k products: rounding grows at most like k·eps·Σ|a·b| <= k²·eps; sqrt(k)·k·eps is ample
            // for random signs and still far below a wrong layout's error (of the order of sqrt(k)).
            double tolerance = Math.Sqrt(shape.K) * shape.K * 1.2e-7 * 8;
            if (worst > tolerance)
            {
                throw new ToolException($"{shape.Op} {shape.M}x{shape.N}x{shape.K}: HeadLens and OpenBLAS disagree by {worst:G3} (> {tolerance:G3}); the layouts passed to cblas_sgemm are wrong");
            }
        }

        private static Memory<float> Fill(Random random, Memory<float> values)
        {
            var span = values.Span;
            for (int i = 0; i < span.Length; i++)
            {
                span[i] = (float)(random.NextDouble() * 2 - 1);
            }

            return values;
        }
    }

    // Never unloaded: OpenMP's worker threads live in the library until the process ends, and unloading it under them
    // crashed the process at exit.
    /// <summary>OpenBLAS's cblas_sgemm and thread setting, from the shared library Debian installs.</summary>
    private sealed unsafe class OpenBlas
    {
        private const string LibraryName = "libopenblas.so.0";
        private const int RowMajor = 101, NoTrans = 111, Trans = 112;

        private readonly nint library;
        private readonly delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> sgemm;
        private readonly delegate* unmanaged<int, void> setThreads;

        private OpenBlas(nint library)
        {
            this.library = library;
            sgemm = (delegate* unmanaged<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)Export("cblas_sgemm");
            setThreads = (delegate* unmanaged<int, void>)Export("openblas_set_num_threads");
            Config = Text("openblas_get_config");
            CoreName = Text("openblas_get_corename");
        }

        public string Config { get; }

        public string CoreName { get; }

        public static OpenBlas Load() => NativeLibrary.TryLoad(LibraryName, out nint library)
            ? new OpenBlas(library)
            : throw new ToolException($"OpenBLAS ({LibraryName}) is not installed; on Debian: apt-get install libopenblas0-openmp");

        public void SetThreads(int threads) => setThreads(threads);

        public void Sgemm(
            bool transposeA, bool transposeB, int m, int n, int k,
            ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, bool accumulate)
        {
            fixed (float* aPointer = a)
            fixed (float* bPointer = b)
            fixed (float* cPointer = c)
            {
                sgemm(
                    RowMajor, transposeA ? Trans : NoTrans, transposeB ? Trans : NoTrans, m, n, k,
                    1f, aPointer, lda, bPointer, ldb, accumulate ? 1f : 0f, cPointer, ldc);
            }
        }

        private nint Export(string name) => NativeLibrary.TryGetExport(library, name, out nint address)
            ? address
            : throw new ToolException($"{LibraryName} has no {name}: not an OpenBLAS build");

        private string Text(string name)
        {
            var function = (delegate* unmanaged<sbyte*>)Export(name);
            return new string(function()).Trim();
        }
    }

    private sealed record Options(int[] Threads, int Samples, double SampleMs, double GapMs, string? Only, int[]? Sizes, string[]? Dims = null, int[]? Tokens = null)
    {
        private static readonly string[] Ops = ["square", "forward", "input-grad", "weight-grad"];

        public static Options Parse(string[] args)
        {
            var options = new Options([1, 2], 15, 20, 20, null, null);
            for (int i = 0; i < args.Length; i++)
            {
                string name = args[i];
                string value = i + 1 < args.Length ? args[++i] : throw new ToolException($"option {name} needs a value");
                options = name switch
                {
                    "--threads" => options with { Threads = Integers(name, value) },
                    "--samples" => options with { Samples = Integers(name, value)[0] },
                    "--sample-ms" => options with { SampleMs = Number(name, value) },
                    "--gap-ms" => options with { GapMs = Number(name, value) },
                    "--only" => options with { Only = Ops.Contains(value) ? value : throw new ToolException($"--only expects one of {string.Join(", ", Ops)}, got '{value}'") },
                    "--sizes" => options with { Sizes = Integers(name, value) },
                    "--shapes" => options with { Dims = Shapes(value) },
                    "--tokens" => options with { Tokens = Integers(name, value) },
                    _ => throw new ToolException($"unknown option '{name}' (known: --threads, --samples, --sample-ms, --gap-ms, --only, --sizes, --shapes, --tokens)"),
                };
            }

            return options;
        }

        // "256x3072x768,512x512x512": the m×n×k of the shapes to keep (with --only, of that operation).
        private static string[] Shapes(string value) => value.Split(',').Select(text =>
        {
            string[] parts = text.Split('x');
            return parts.Length == 3 && parts.All(part => int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int size) && size > 0)
                ? text
                : throw new ToolException($"--shapes expects MxNxK[,MxNxK...], got '{text}'");
        }).ToArray();

        private static int[] Integers(string name, string value) => value.Split(',').Select(text =>
            int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int number) && number > 0 && number <= 65536
                ? number
                : throw new ToolException($"{name} expects positive whole numbers, got '{text}'")).Distinct().ToArray();

        private static double Number(string name, string value) =>
            double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double number) && number >= 0 && number <= 10000
                ? number
                : throw new ToolException($"{name} expects a number of milliseconds in [0, 10000], got '{value}'");
    }

    private sealed class ToolException(string message) : Exception(message);
}

/// <summary>Nanosecond clocks: the wall clock, and the CPU time of the calling thread (Linux).</summary>
internal static unsafe partial class Clock
{
    private const int ThreadCpuTimeId = 3; // CLOCK_THREAD_CPUTIME_ID

    public static long WallNanoseconds() => (long)(Stopwatch.GetTimestamp() * (1e9 / Stopwatch.Frequency));

    public static long ThreadCpuNanoseconds()
    {
        long* time = stackalloc long[2]; // struct timespec: seconds, nanoseconds
        return ClockGetTime(ThreadCpuTimeId, time) == 0
            ? (time[0] * 1_000_000_000L) + time[1]
            : throw new InvalidOperationException("clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed: run with --threads 2 for wall-clock timing");
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, long* time);
}
