using System.Diagnostics;
using System.Globalization;
using HeadLens.Attention;
using HeadLens.Tensors;

namespace HeadLens.AttentionPeer;

// HeadLens's fused causal attention against PyTorch's scaled_dot_product_attention, sample by sample: a sample of
// HeadLens (in this process), a sample of SDPA (in a peer process that reads its commands from a pipe, peer_sdpa.py),
// a sample of HeadLens, ... and the ratio of each adjacent pair.
// Why: on a shared 2-core host the speed of both swings by up to 2x within seconds, so bench/compare-attention.sh's
// rounds (each side's whole run, a minute apart) can set one side's fast minute against the other's slow one, and
// even ROUNDS=3 left the T = 4096 ratio anywhere in 1.3-1.8x. Pairs a few hundred milliseconds apart see the same
// machine, and the median of their ratios keeps that (as bench/MatmulPeer does for the matrix product).
//
// Both sides get the same q, k, v and dO ([B, T, 12, 64], written to files the peer reads), and the peer's forward
// output is checked against HeadLens's before anything is timed. The forward is timed alone (no_grad for the peer),
// the backward alone after its forward (HeadLens's Backward from the saved output and log-sum-exp; the peer's
// autograd backward through SDPA), as bench/compare-attention.sh times them.
//
// Usage: dotnet AttentionPeer.dll --peer "COMMAND" [--T 256,1024,4096] [--batch 1] [--samples 9] [--sample-ms 300]
//        [--gap-ms 30] [--only fused|backward]
// COMMAND starts peer_sdpa.py (bench/compare-attention-interleaved.sh passes it under ../shared/peers/modern-torch).
internal static class Program
{
    private const int Heads = 12, HeadDim = 64;

    private static int Main(string[] args)
    {
        try
        {
            var options = Options.Parse(args);
            using var peer = Peer.Start(options.PeerCommand);
            return Run(options, peer);
        }
        catch (ToolException error)
        {
            Console.Error.WriteLine($"attention-peer: {error.Message}");
            return 2;
        }
    }

    private static int Run(Options options, Peer peer)
    {
        var causal = new AttentionOptions(Heads, Heads, HeadDim, HeadDim);
        Console.WriteLine(
            $"{options.Samples} interleaved samples of >= {options.SampleMs} ms each per side, {options.GapMs} ms apart (wall clock, {HeadLens.Kernels.ComputeThreads.Count} HeadLens threads); "
            + "ratio = median over adjacent pairs of SDPA's time / HeadLens's (above 1: HeadLens faster); range = middle half of the pairs");
        Console.WriteLine($"{"variant",-9} {"B",2} {"T",6} {"HeadLens ms",12} {"SDPA ms",10} {"ratio",6} {"range",11}");
        string directory = Directory.CreateTempSubdirectory("attention-peer-").FullName;
        try
        {
            foreach (int batch in options.Batches)
            {
                foreach (int length in options.Lengths)
                {
                    var inputs = new Inputs(causal, batch, length);
                    inputs.Share(directory);
                    peer.Ask($"load {batch} {length} {directory}", "ok");
                    inputs.Check(Path.Combine(directory, "out.bin"));
                    foreach (string variant in options.Variants)
                    {
                        var result = Measure(variant, inputs, peer, options);
                        Console.WriteLine(
                            $"{variant,-9} {batch,2} {length,6} {result.Ours,12:F2} {result.Peer,10:F2} {result.Ratio,6:F2} {result.Low,5:F2}-{result.High,-5:F2}");
                    }
                }
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }

        return 0;
    }

    private readonly record struct Result(double Ours, double Peer, double Ratio, double Low, double High);

    private static Result Measure(string variant, Inputs inputs, Peer peer, Options options)
    {
        Action ours = variant == "fused" ? inputs.Forward : inputs.Backward;
        ours();
        var oursMs = new List<double>();
        var peerMs = new List<double>();
        var ratios = new List<double>();
        for (int sample = 0; sample < options.Samples; sample++)
        {
            // Alternate which side goes first, so that neither always starts right after the other's threads went idle.
            bool oursFirst = sample % 2 == 0;
            double first = oursFirst ? SampleOurs(ours, options) : SamplePeer(variant, peer, options);
            double second = oursFirst ? SamplePeer(variant, peer, options) : SampleOurs(ours, options);
            (double mine, double theirs) = oursFirst ? (first, second) : (second, first);
            oursMs.Add(mine);
            peerMs.Add(theirs);
            ratios.Add(theirs / mine);
        }

        ratios.Sort();
        return new Result(
            Median(oursMs.Order().ToList()), Median(peerMs.Order().ToList()), Median(ratios),
            ratios[ratios.Count / 4], ratios[ratios.Count * 3 / 4]);
    }

    // Milliseconds per call, over back-to-back calls until sample-ms of them ran (at least one), after a pause that
    // lets the other side's idle threads stop polling (OpenMP's and HeadLens's workers poll for a while, then sleep).
    private static double SampleOurs(Action call, Options options)
    {
        Thread.Sleep(TimeSpan.FromMilliseconds(options.GapMs));
        var clock = Stopwatch.StartNew();
        int calls = 0;
        while (calls == 0 || clock.Elapsed.TotalMilliseconds < options.SampleMs)
        {
            call();
            calls++;
        }

        return clock.Elapsed.TotalMilliseconds / calls;
    }

    private static double SamplePeer(string variant, Peer peer, Options options)
    {
        Thread.Sleep(TimeSpan.FromMilliseconds(options.GapMs));
        string[] answer = peer.Ask(FormattableString.Invariant($"{variant} {options.SampleMs}")).Split(' ');
        if (answer.Length != 2
            || !int.TryParse(answer[0], CultureInfo.InvariantCulture, out int calls) || calls < 1
            || !double.TryParse(answer[1], CultureInfo.InvariantCulture, out double seconds))
        {
            throw new ToolException($"the peer answered '{string.Join(' ', answer)}' to '{variant}', expected 'CALLS SECONDS'");
        }

        return seconds * 1000 / calls;
    }

    private static double Median(List<double> sorted)
    {
        int middle = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }

    /// <summary>One configuration's tensors, in an arena (64-byte aligned, as `bench attention` and a model keep them).</summary>
    private sealed class Inputs
    {
        private readonly AttentionOptions options;
        private readonly int batch, length;
        private readonly Memory<float> q, k, v, outputGrad, output, logSumExp, qGrad, kGrad, vGrad;

        public Inputs(AttentionOptions options, int batch, int length)
        {
            this.options = options;
            this.batch = batch;
            this.length = length;
            var arena = new Arena($"attention B={batch} T={length}");
            foreach (string name in new[] { "q", "k", "v", "outputGrad", "output", "qGrad", "kGrad", "vGrad" })
            {
                arena.Reserve(name, batch, length, Heads, HeadDim);
            }

            arena.Reserve("logSumExp", batch, Heads, length);
            arena.Allocate();
            var random = new Random(42);
            q = Fill(random, arena.Get("q").Memory);
            k = Fill(random, arena.Get("k").Memory);
            v = Fill(random, arena.Get("v").Memory);
            outputGrad = Fill(random, arena.Get("outputGrad").Memory);
            output = arena.Get("output").Memory;
            logSumExp = arena.Get("logSumExp").Memory;
            qGrad = arena.Get("qGrad").Memory;
            kGrad = arena.Get("kGrad").Memory;
            vGrad = arena.Get("vGrad").Memory;
        }

        public void Forward() => ScaledDotProductAttention.Forward(
            options, batch, length, length, 0, q.Span, k.Span, v.Span, output.Span, logSumExp.Span);

        // From the output and log-sum-exp of the last Forward (Measure runs one before the samples).
        public void Backward() => ScaledDotProductAttention.Backward(
            options, batch, length, length, 0, q.Span, k.Span, v.Span, output.Span, outputGrad.Span, logSumExp.Span,
            qGrad.Span, kGrad.Span, vGrad.Span);

        public void Share(string directory)
        {
            foreach (var (name, values) in new[] { ("q", q), ("k", k), ("v", v), ("dout", outputGrad) })
            {
                File.WriteAllBytes(Path.Combine(directory, name + ".bin"), System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.Span).ToArray());
            }
        }

        // Both sides must compute the same attention, or the timing compares different work: the peer's forward output
        // against this one's, element by element. Softmax-weighted means of values in [-1, 1]: float rounding stays
        // near 1e-6; a wrong layout or mask is off by ~0.1.
        public void Check(string peerOutput)
        {
            Forward();
            byte[] bytes = File.ReadAllBytes(peerOutput);
            var theirs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes);
            var mine = output.Span;
            if (theirs.Length != mine.Length)
            {
                throw new ToolException($"B={batch} T={length}: the peer's output holds {theirs.Length} floats, HeadLens's {mine.Length}");
            }

            double worst = 0;
            for (int i = 0; i < mine.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(mine[i] - theirs[i]));
            }

            const double Tolerance = 1e-4;
            if (!(worst <= Tolerance))
            {
                throw new ToolException($"B={batch} T={length}: HeadLens's and the peer's outputs differ by {worst:G3} (> {Tolerance:G1}); they are not computing the same attention");
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

    /// <summary>The peer process: one command line out, one answer line back.</summary>
    private sealed class Peer : IDisposable
    {
        private readonly Process process;
        private readonly string command;

        private Peer(Process process, string command)
        {
            this.process = process;
            this.command = command;
        }

        public static Peer Start(string command)
        {
            var start = new ProcessStartInfo("bash", ["-c", command])
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                UseShellExecute = false,
            };
            try
            {
                return new Peer(Process.Start(start) ?? throw new ToolException($"could not start the peer: {command}"), command);
            }
            catch (System.ComponentModel.Win32Exception error)
            {
                throw new ToolException($"could not start the peer ({command}): {error.Message}");
            }
        }

        // Sends one command and returns the answer line; `expected`, when given, is the only acceptable answer.
        public string Ask(string line, string? expected = null)
        {
            string? answer;
            try
            {
                process.StandardInput.WriteLine(line);
                process.StandardInput.Flush();
                answer = process.StandardOutput.ReadLine();
            }
            catch (IOException)
            {
                answer = null; // the pipe closed: the peer has ended
            }

            if (answer is null)
            {
                process.WaitForExit();
                throw new ToolException($"the peer ({command}) ended (exit code {process.ExitCode}) at '{line}'; its own message, if any, is above");
            }

            if (answer.StartsWith("error:", StringComparison.Ordinal) || (expected is not null && answer != expected))
            {
                throw new ToolException($"the peer answered '{answer}' to '{line}'");
            }

            return answer;
        }

        public void Dispose()
        {
            try
            {
                if (!process.HasExited)
                {
                    process.StandardInput.WriteLine("quit");
                    process.StandardInput.Close();
                }
            }
            catch (IOException)
            {
                // It ended on its own meanwhile.
            }

            if (!process.WaitForExit(TimeSpan.FromSeconds(10)))
            {
                process.Kill(entireProcessTree: true);
            }

            process.Dispose();
        }
    }

    private sealed record Options(string PeerCommand, int[] Lengths, int[] Batches, int Samples, double SampleMs, double GapMs, string[] Variants)
    {
        public static Options Parse(string[] args)
        {
            var options = new Options("", [256, 1024, 4096], [1], 9, 300, 30, ["fused", "backward"]);
            for (int i = 0; i < args.Length; i++)
            {
                string name = args[i];
                string value = i + 1 < args.Length ? args[++i] : throw new ToolException($"option {name} needs a value");
                options = name switch
                {
                    "--peer" => options with { PeerCommand = value },
                    "--T" => options with { Lengths = Numbers(name, value, 64) },
                    "--batch" => options with { Batches = Numbers(name, value, 1) },
                    "--samples" => options with { Samples = Number(name, value, 1) },
                    "--sample-ms" => options with { SampleMs = Number(name, value, 1) },
                    "--gap-ms" => options with { GapMs = Number(name, value, 0) },
                    "--only" => value is "fused" or "backward" ? options with { Variants = [value] } : throw new ToolException($"--only takes fused or backward, not '{value}'"),
                    _ => throw new ToolException($"unknown option '{name}' (options: --peer, --T, --batch, --samples, --sample-ms, --gap-ms, --only)"),
                };
            }

            return options.PeerCommand.Length > 0 ? options : throw new ToolException("--peer COMMAND is required (bench/compare-attention-interleaved.sh passes it)");
        }

        private static int Number(string name, string value, int least) =>
            int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int number) && number >= least
                ? number
                : throw new ToolException($"{name} takes one whole number of at least {least}; got '{value}'");

        private static int[] Numbers(string name, string value, int least)
        {
            var numbers = new List<int>();
            foreach (string part in value.Split(','))
            {
                if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int number) || number < least)
                {
                    throw new ToolException($"{name} takes whole numbers of at least {least}, separated by commas; got '{value}'");
                }

                numbers.Add(number);
            }

            return [.. numbers];
        }
    }

    private sealed class ToolException(string message) : Exception(message);
}
