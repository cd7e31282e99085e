using System.Diagnostics;
using System.Globalization;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using HeadLens.Checkpoints.Gguf;
using HeadLens.Kernels.Quantized;
using HeadLens.Model;
using LLama;
using LLama.Common;
using LLama.Native;

namespace HeadLens.Cli.Commands.Bench;

/// <summary>
/// `headlens bench gguf [--model FILE.gguf] [--prompt N] [--new-tokens N] [--layers N] [--keep DIR]`: HeadLens against llama.cpp
/// (LLamaSharp, in this process) on the same GGUF file: prompt processing of N tokens (default 64) in one pass, then
/// decoding one token at a time (default 32 tokens), greedy, llama.cpp on 2 threads with its KV cache in F32 (as
/// HeadLens keeps it); after a warm-up each, five rounds that time each engine once (alternating, so that other work
/// on the machine meets both), the median of each engine's five counting. HeadLens keeps the file's matrices in their types (<see cref="GgufModel.Open(string)"/>). Without
/// --model, five files are generated into a temporary directory: GPT-2 124M-shaped F32 and F16 (random weights,
/// written by HeadLens), and a 1.1B Llama-shaped model (22 layers, 2048 channels, 32 heads, 4 KV heads, MLP 5632,
/// vocabulary 32000) written as F32 and quantized by llama.cpp's own quantizer to Q8_0, Q4_K_M and Q5_K_M. --layers N
/// shrinks both generated models (a quick check of the command); --keep DIR writes them there and keeps them (for
/// measuring other commands on the same files, e.g. their resident memory). Generating the 1.1B file takes about 9 GB of
/// memory for a moment (the fp32 model and the writer's copy). Each file's HeadLens run reports the process's
/// resident set after its warm-ups (VmRSS, and VmHWM, the peak since that file's measurement began: the memory of the
/// generation and of the previous file is returned to the system and the peak restarted first, on Linux). Files
/// with Q8_0, Q4_K, Q5_K or Q6_K matrices are also run with 8-bit activations (`--activations q8` elsewhere), reported as
/// decode_q8act_tokens_per_s and prompt_q8act_tokens_per_s.
/// </summary>
internal sealed partial class GgufBenchmark : IBenchmark
{
    public string Name => "gguf";

    public string Summary => "HeadLens against llama.cpp on the same GGUF file: prompt processing and decoding tokens/s, resident memory.";

    public IReadOnlyList<CliOption> Options { get; } =
    [
        CliOption.Valued("model", "FILE.gguf", "the file to measure", "five generated files: GPT-2 124M F32/F16, 1.1B Llama Q8_0/Q4_K_M/Q5_K_M"),
        CliOption.Valued("prompt", "N", "prompt tokens processed in one pass", "64"),
        CliOption.Valued("new-tokens", "N", "tokens decoded one at a time", "32"),
        CliOption.Valued("layers", "N", "shrink the generated models to N layers (a quick check)"),
        CliOption.Valued("keep", "DIR", "write the generated files there and keep them"),
    ];

    public IReadOnlyList<BenchResult> Run(CommandArgs args, TextWriter progress)
    {
        string? file = args.Get("model");
        int prompt = args.GetInt("prompt", 64, 1, 4096), newTokens = args.GetInt("new-tokens", 32, 1, 4096);
        int? layers = args.Get("layers") is null ? null : args.GetInt("layers", 1, 1, 64);
        if (file is not null && !File.Exists(file))
        {
            throw new HeadLensException($"{file}: no such GGUF file");
        }

        LoadLlamaCpp(progress);
        string? keep = args.Get("keep");
        string directory = keep ?? Path.Combine(Path.GetTempPath(), "headlens-bench-gguf-" + Guid.NewGuid().ToString("N"));
        try
        {
            var files = file is not null ? [file] : Generate(directory, layers, progress);
            return [.. files.Select(path => Measure(path, prompt, newTokens, progress))];
        }
        finally
        {
            if (keep is null && Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
    }

    // LLamaSharp picks and loads its native build (AVX-512, AVX2, …) when NativeApi is first touched; some entry
    // points (the quantizer's defaults) import the library directly, so it is touched here before anything else.
    // With .NET's AVX-512 off (DOTNET_EnableAVX512=0: the AVX2 machine class, measured on an AVX-512 machine) llama.cpp
    // gets its AVX2 build too, so that both engines run with the same instructions; which build loaded is reported.
    private static void LoadLlamaCpp(TextWriter progress)
    {
        try
        {
            NativeLibraryConfig.All.WithLogCallback((level, message) => { });
            if (!Vector512.IsHardwareAccelerated && Avx2.IsSupported)
            {
                NativeLibraryConfig.All.WithAvx(AvxLevel.Avx2);
            }

            _ = NativeApi.llama_max_devices();
        }
        catch (Exception error) when (error is DllNotFoundException or TypeInitializationException or BadImageFormatException)
        {
            throw new HeadLensException($"bench gguf needs llama.cpp's native library (LLamaSharp.Backend.Cpu), which did not load: {error.Message.Split('\n')[0]}");
        }

        progress.WriteLine($"llama.cpp: {LoadedBuild()}; HeadLens: {(Vector512.IsHardwareAccelerated ? "AVX-512" : Vector256.IsHardwareAccelerated ? "AVX2" : "no AVX")}");
    }

    // The folder of the libllama that this process mapped (LLamaSharp keeps one per instruction set: avx512, avx2, …),
    // from /proc/self/maps; where that cannot be read, a plain "loaded".
    private static string LoadedBuild()
    {
        try
        {
            string? library = File.ReadLines("/proc/self/maps").Select(line => line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1])
                .FirstOrDefault(file => Path.GetFileName(file).StartsWith("libllama", StringComparison.Ordinal));
            return library is null ? "loaded" : $"the {Path.GetFileName(Path.GetDirectoryName(library))} build";
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            return "loaded";
        }
    }

    private static List<string> Generate(string directory, int? layers, TextWriter progress)
    {
        Directory.CreateDirectory(directory);
        var files = new List<string>();
        var gpt2 = Transformer.Create(ModelPresets.Get("gpt2") with { Layers = layers ?? 12 }, seed: 1);
        foreach (var (type, name) in new[] { (GgufWriteType.F32, "gpt2-124m-f32.gguf"), (GgufWriteType.F16, "gpt2-124m-f16.gguf") })
        {
            string path = Path.Combine(directory, name);
            GgufWriter.Write(path, gpt2, null, type);
            files.Add(path);
        }

        gpt2 = null;
        string llama = Path.Combine(directory, "llama-1.1b-f32.gguf");
        GgufWriter.Write(llama, Transformer.Create(ModelPresets.Llama(32000, 2048, layers ?? 22, 32, 4, 2048, 5632), seed: 2), null);
        GC.Collect();
        foreach (var (type, name) in new[] { (LLamaFtype.MOSTLY_Q8_0, "llama-1.1b-q8_0.gguf"), (LLamaFtype.MOSTLY_Q4_K_M, "llama-1.1b-q4_k_m.gguf"), (LLamaFtype.MOSTLY_Q5_K_M, "llama-1.1b-q5_k_m.gguf") })
        {
            string path = Path.Combine(directory, name);
            progress.WriteLine($"quantizing {Path.GetFileName(llama)} to {type} with llama.cpp");
            // quantizeOutputTensor as llama.cpp's own llama-quantize does (LLamaSharp's default leaves output.weight F32).
            if (!LLamaQuantizer.Quantize(llama, path, type, nthread: 2, quantizeOutputTensor: true))
            {
                throw new HeadLensException($"llama.cpp could not quantize {llama} to {type}");
            }

            files.Add(path);
        }

        File.Delete(llama);
        return files;
    }

    private static BenchResult Measure(string path, int promptLength, int newTokens, TextWriter progress)
    {
        string type;
        using (var file = GgufFile.Open(path))
        {
            // llama.cpp's name for the file's mix (general.file_type), else the type most of the bytes are in.
            type = file.Int("general.file_type") switch
            {
                0 => "F32",
                1 => "F16",
                7 => "Q8_0",
                15 => "Q4_K_M",
                17 => "Q5_K_M",
                32 => "BF16",
                _ => file.Tensors.GroupBy(tensor => tensor.Type).MaxBy(group => group.Sum(tensor => tensor.ByteCount))!.Key.ToString(),
            };
        }

        // The resident figures below are this file's: what generating the files or measuring the previous one held is
        // returned to the system first, and the peak restarts from here.
        RestartResidentPeak();
        var (model, _) = GgufModel.Open(path);
        int vocabulary = model.Config.VocabSize;
        int contextNeeded = promptLength + newTokens + 1;
        if (contextNeeded > model.Config.ContextLength)
        {
            throw new HeadLensException($"{path}: --prompt + --new-tokens ({contextNeeded}) exceed the model's context of {model.Config.ContextLength}");
        }

        var random = new Random(7);
        int[] prompt = [.. Enumerable.Range(0, promptLength).Select(_ => random.Next(vocabulary))];

        var logits = new float[vocabulary];
        (double PromptSeconds, double DecodeSeconds) HeadLensRun()
        {
            var cache = model.NewCache(contextNeeded);
            long start = Stopwatch.GetTimestamp();
            model.DecodeStep(prompt, cache, logits);
            double promptSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            start = Stopwatch.GetTimestamp();
            for (int i = 0; i < newTokens; i++)
            {
                model.DecodeStep([TensorPrimitives.IndexOfMax(logits)], cache, logits);
            }

            return (promptSeconds, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }

        // HeadLens's warm-ups first (fp32 products, then the opt-in 8-bit activations where the file has matrices
        // that take them), so that the resident memory read next is HeadLens's alone (with --model).
        bool q8 = model.Parameters.Stored.Values.Any(matrix => QuantizedMatVecQ8.Supports(matrix.Type));
        HeadLensRun();
        if (q8)
        {
            model.UseQ8Activations();
            HeadLensRun();
            model.UseQ8Activations(false);
        }

        long oursRss = StatusBytes("VmRSS"), oursPeak = StatusBytes("VmHWM");

        var parameters = new ModelParams(path)
        {
            ContextSize = (uint)contextNeeded + 1,
            BatchSize = (uint)Math.Max(promptLength, 1),
            UBatchSize = (uint)Math.Max(promptLength, 1),
            GpuLayerCount = 0,
            Threads = 2,
            BatchThreads = 2,
            TypeK = GGMLType.GGML_TYPE_F32,
            TypeV = GGMLType.GGML_TYPE_F32,
            FlashAttention = false,
        };
        using var weights = LLamaWeights.LoadFromFile(parameters);
        using var context = weights.CreateContext(parameters);
        (double PromptSeconds, double DecodeSeconds) LlamaCppRun()
        {
            context.NativeHandle.MemoryClear(true);
            var batch = new LLamaBatch();
            for (int i = 0; i < prompt.Length; i++)
            {
                batch.Add(prompt[i], i, LLamaSeqId.Zero, i == prompt.Length - 1);
            }

            long start = Stopwatch.GetTimestamp();
            Check(context.Decode(batch), path);
            var last = context.NativeHandle.GetLogitsIth(batch.TokenCount - 1);
            double promptSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            start = Stopwatch.GetTimestamp();
            for (int i = 0; i < newTokens; i++)
            {
                var next = new LLamaBatch();
                next.Add(TensorPrimitives.IndexOfMax(last), prompt.Length + i, LLamaSeqId.Zero, true);
                Check(context.Decode(next), path);
                last = context.NativeHandle.GetLogitsIth(0);
            }

            return (promptSeconds, Stopwatch.GetElapsedTime(start).TotalSeconds);
        }

        LlamaCppRun();
        // Five rounds, each engine (and variant) once per round, each figure the median of its five: the engines
        // alternate within seconds, so a burst of other work on the machine meets both rather than whichever was
        // being timed (measured on the shared 2-core machine: a competing compile took HeadLens from 37 to 18 tokens/s
        // and llama.cpp, whose threads spin at every barrier, from 36 to 1–12 in the same minute).
        var ourRounds = new Rounds();
        var ourQ8Rounds = new Rounds();
        var theirRounds = new Rounds();
        for (int round = 0; round < 5; round++)
        {
            ourRounds.Add(HeadLensRun());
            if (q8)
            {
                model.UseQ8Activations();
                ourQ8Rounds.Add(HeadLensRun());
                model.UseQ8Activations(false);
            }

            theirRounds.Add(LlamaCppRun());
        }

        var ours = ourRounds.Median();
        var theirs = theirRounds.Median();

        double decode = newTokens / ours.DecodeSeconds, promptRate = promptLength / ours.PromptSeconds;
        double theirDecode = newTokens / theirs.DecodeSeconds, theirPrompt = promptLength / theirs.PromptSeconds;
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Path.GetFileName(path)} ({type}): decode {decode:F1} tokens/s (llama.cpp {theirDecode:F1}: {decode / theirDecode:F2}×), " +
            $"prompt of {promptLength} {promptRate:F1} tokens/s (llama.cpp {theirPrompt:F1}: {promptRate / theirPrompt:F2}×); " +
            $"HeadLens resident {oursRss / 1e6:F0} MB, peak {oursPeak / 1e6:F0} MB since the file was opened"));
        var figures = new Dictionary<string, double>
        {
            ["decode_tokens_per_s"] = decode,
            ["prompt_tokens_per_s"] = promptRate,
            ["llamacpp_decode_tokens_per_s"] = theirDecode,
            ["llamacpp_prompt_tokens_per_s"] = theirPrompt,
            ["headlens_rss_bytes"] = oursRss,
            ["headlens_peak_rss_bytes"] = oursPeak,
        };
        if (q8 && ourQ8Rounds.Median() is var (q8Prompt, q8Decode))
        {
            figures["decode_q8act_tokens_per_s"] = newTokens / q8Decode;
            figures["prompt_q8act_tokens_per_s"] = promptLength / q8Prompt;
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  with --activations q8: decode {newTokens / q8Decode:F1} tokens/s ({newTokens / q8Decode / theirDecode:F2}× llama.cpp), " +
                $"prompt {promptLength / q8Prompt:F1} tokens/s ({promptLength / q8Prompt / theirPrompt:F2}×)"));
        }

        return new BenchResult(new Dictionary<string, object> { ["file"] = Path.GetFileName(path), ["type"] = type }, figures);
    }

    /// <summary>One engine's timed rounds: the median prompt time and the median decode time over them.</summary>
    private sealed class Rounds
    {
        private readonly List<double> promptSeconds = [];
        private readonly List<double> decodeSeconds = [];

        public void Add((double PromptSeconds, double DecodeSeconds) run)
        {
            promptSeconds.Add(run.PromptSeconds);
            decodeSeconds.Add(run.DecodeSeconds);
        }

        public (double PromptSeconds, double DecodeSeconds) Median() => (Timing.Median(promptSeconds), Timing.Median(decodeSeconds));
    }

    // A full compacting collection that also decommits the freed heap (GCCollectionMode.Aggressive), the C library's
    // free memory handed back (malloc_trim: what llama.cpp freed but glibc kept after the previous file and the
    // quantizer; 30–36 MB less of the 1.1B files' "HeadLens resident" in a run over the four generated files), then
    // Linux's reset of the peak resident size to the current one (writing 5 to /proc/self/clear_refs, since Linux
    // 4.0). Where that file is missing or refuses the write, the peak stays the process's.
    internal static void RestartResidentPeak()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        TrimNativeHeap();
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception error) when (error is IOException or UnauthorizedAccessException)
        {
            // Not Linux, or a kernel without the reset: the peak then includes what came before.
        }
    }

    private static void TrimNativeHeap()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            _ = MallocTrim(0);
        }
        catch (Exception error) when (error is DllNotFoundException or EntryPointNotFoundException)
        {
            // Another C library (musl has no malloc_trim): its free memory stays counted.
        }
    }

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    /// <summary>A line of /proc/self/status in bytes (0 where there is none: not Linux).</summary>
    internal static long StatusBytes(string field)
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status))
        {
            return 0;
        }

        foreach (string line in File.ReadLines(status))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
            {
                string[] parts = line[(field.Length + 1)..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.Parse(parts[0], CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }

    private static void Check(DecodeResult result, string path)
    {
        if (result != DecodeResult.Ok)
        {
            throw new HeadLensException($"{path}: llama.cpp's decode failed ({result})");
        }
    }
}
