using System.Diagnostics;
using System.Globalization;
using System.Text;
using HeadLens.Kernels;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Analysis.Experiments;

/// <summary>
/// Attention sinks (Xiao et al. 2023, StreamingLLM): perplexity of a trained model on a text read token by token
/// with four ways of remembering the past, all with the same number of cached tokens where a cache is bounded:
///   - full attention (every earlier token; the reference);
///   - window-only KV cache: the most recent W + 4 tokens, older ones evicted;
///   - window + 4 sinks: the first 4 tokens kept forever, plus the most recent W;
///   - sliding window with recomputation: each token predicted from the last W + 4 tokens run afresh from position 0.
/// If the model parks attention on the first tokens (a sink), evicting them changes every softmax's denominator and
/// window-only perplexity blows up; keeping 4 sinks repairs it. The per-head sink score says whether it does.
/// </summary>
public static class SinksExperiment
{
    public const string Text = "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness "
        + "was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God said, Let there be light: "
        + "and there was light. And God saw the light, that it was good: and God divided the light from the darkness.";

    public const int SinkTokens = 4;

    public static string Run(Transformer model, ITokenizer? tokenizer, string modelPath, Action<string> log)
    {
        if (tokenizer is null)
        {
            throw new HeadLensException("experiment sinks needs a model with a tokenizer (it reads a text)");
        }

        var config = model.Config;
        int[] ids = tokenizer.EncodeForModel(Text);
        ids = ids[..Math.Min(ids.Length, config.ContextLength)];
        int t = ids.Length, window = Math.Max(4, (t / 4) - SinkTokens);
        int scoredFrom = window + SinkTokens;   // before this position every method sees every token
        if (t <= scoredFrom + 1)
        {
            throw new HeadLensException($"experiment sinks: the text is only {t} tokens; the model's context is too short");
        }

        var clock = Stopwatch.StartNew();
        double full = Perplexity(FullLosses(model, ids), scoredFrom);
        double windowOnly = Perplexity(CachedLosses(model, ids, sinks: 0, window + SinkTokens), scoredFrom);
        double withSinks = Perplexity(CachedLosses(model, ids, SinkTokens, window), scoredFrom);
        double recomputed = Perplexity(RecomputedLosses(model, ids, window + SinkTokens), scoredFrom);

        var taxonomy = HeadTaxonomy.Analyse(model, tokenizer, ids);
        var sinkScores = taxonomy.Select(head => head.Scores[HeadKinds.SinkScore]).ToList();
        var culture = CultureInfo.InvariantCulture;
        var lines = new List<string>
        {
            string.Create(culture, $"Model {modelPath}: {t} tokens of text, cache of {window + SinkTokens} tokens, perplexity over tokens {scoredFrom}..{t - 1}:"),
            Row("full attention", full, null),
            Row("window-only cache", windowOnly, full),
            Row($"window + {SinkTokens} sinks", withSinks, full),
            Row("sliding recomputation", recomputed, full),
            string.Create(culture, $"Sink scores (mean attention to token 0): max {sinkScores.Max():F3}, mean {sinkScores.Average():F3} over {sinkScores.Count} heads; "
                + $"{taxonomy.Count(head => head.Kind == "sink")} heads named sink."),
        };
        bool blowsUp = windowOnly > 1.5 * full;
        string verdict = blowsUp
            ? FormattableString.Invariant($"Window-only perplexity blows up ({windowOnly / full:F1}× full); the sinks bring it to {withSinks / full:F2}× full.")
            : $"Window-only perplexity differs from full attention by {Change(windowOnly, full)} (with {SinkTokens} sinks: {Change(withSinks, full)}): this model forms no strong sink "
                + "(its heads do not park attention on the first token), so evicting the first tokens costs no more than evicting any others.";
        lines.Add(verdict);
        lines.Add(string.Create(culture, $"(perplexities in {clock.Elapsed.TotalSeconds:F1} s)"));
        foreach (string line in lines)
        {
            log(line);
        }

        var report = new StringBuilder();
        report.AppendLine("# Attention sinks and windowed KV caches").AppendLine();
        report.AppendLine("```");
        foreach (string line in lines)
        {
            report.AppendLine(line);
        }

        report.AppendLine("```");
        return report.ToString();
    }

    // One table row: the label in a fixed column, so every row lines up whatever its label.
    private static string Row(string label, double perplexity, double? full) =>
        $"  {label,-26} {perplexity.ToString("F2", CultureInfo.InvariantCulture),8}" + (full is { } f ? $"  ({Change(perplexity, f)} vs full)" : "");

    // A relative change with one decimal and its sign, as the table prints it (+0.2%, not "within 0%").
    private static string Change(double value, double reference)
    {
        double percent = 100 * ((value / reference) - 1);
        return percent.ToString("+0.0;-0.0;0.0", CultureInfo.InvariantCulture) + "%";
    }

    /// <summary>exp(mean loss) over positions from <paramref name="from"/> on (loss[i] = −log p(ids[i+1])).</summary>
    public static double Perplexity(double[] losses, int from) => Math.Exp(losses.Skip(from).Average());

    private static double[] FullLosses(Transformer model, int[] ids)
    {
        int t = ids.Length - 1;
        var logits = new HookedForward(model).Run(ids.AsSpan(0, t)).Logits;
        return Losses(logits, ids.AsSpan(1, t).ToArray(), model.Config.VocabSize);
    }

    private static double[] CachedLosses(Transformer model, int[] ids, int sinks, int window)
    {
        int t = ids.Length - 1, vocab = model.Config.VocabSize;
        var cache = model.NewCache(ids.Length, sinks, window);
        var logits = new float[t * vocab];
        for (int i = 0; i < t; i++)
        {
            model.DecodeStep(ids.AsSpan(i, 1), cache, logits.AsSpan(i * vocab, vocab));
        }

        return Losses(logits, ids.AsSpan(1, t).ToArray(), vocab);
    }

    private static double[] RecomputedLosses(Transformer model, int[] ids, int window)
    {
        int t = ids.Length - 1, vocab = model.Config.VocabSize;
        var logits = new float[t * vocab];
        var forward = new HookedForward(model);
        for (int i = 0; i < t; i++)
        {
            int start = Math.Max(0, i + 1 - window);
            var run = forward.Run(ids.AsSpan(start, i + 1 - start));
            run.Logits.AsSpan((i - start) * vocab, vocab).CopyTo(logits.AsSpan(i * vocab, vocab));
        }

        return Losses(logits, ids.AsSpan(1, t).ToArray(), vocab);
    }

    private static double[] Losses(float[] logits, int[] targets, int vocab)
    {
        var losses = new float[targets.Length];
        CrossEntropy.Forward(logits, targets, targets.Length, vocab, losses);
        return [.. losses.Select(loss => (double)loss)];
    }
}
