using System.Runtime.InteropServices;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Inference;

/// <summary>One generated token, as <see cref="Generator.Stream"/> hands it out.</summary>
/// <param name="Id">The token id.</param>
/// <param name="Text">
/// The characters this token completes, ready to print: empty while a multi-byte character is still open (a byte-level
/// token may end inside one); null when the model has no tokenizer.
/// </param>
/// <param name="Continuation">
/// Everything generated so far as it reads after the prompt (decoded in context, so SentencePiece's space after BOS
/// and a character begun in the prompt come out right; may end in U+FFFD while a character is open); null without a
/// tokenizer.
/// </param>
public sealed record GeneratedToken(int Id, string? Text, string? Continuation);

/// <summary>
/// Autoregressive generation with a KV cache: the prompt runs once (prefill), then each new token costs one decode
/// step over the cached keys and values. <see cref="Stream"/> is the one loop every caller uses (`generate`, `demo`
/// and the viewer): it stops at the token limit, where prompt and output fill the context, or at one of the
/// tokenizer's <see cref="ITokenizer.StopIds"/> (EOS, and BOS where the vocabulary has one), which it never emits.
/// </summary>
public static class Generator
{
    /// <summary>
    /// Continues <paramref name="prompt"/> (ids as the model reads them, e.g. from <see cref="ITokenizer.EncodeForModel"/>)
    /// by up to <paramref name="maxTokens"/> tokens, never more than the context holds after the prompt, unless
    /// <paramref name="slide"/>: then, each time the context is full, the last half of it is kept and read again, and
    /// generation goes on (what slid out is forgotten).
    /// </summary>
    public static IEnumerable<GeneratedToken> Stream(Transformer model, ITokenizer? tokenizer, IReadOnlyList<int> prompt, int maxTokens, Sampler sampler, bool slide = false)
    {
        int room = slide ? maxTokens : Math.Min(maxTokens, model.Config.ContextLength - prompt.Count);
        var ids = slide
            ? Sliding(model, prompt, maxTokens, sampler, tokenizer?.StopIds)
            : Generate(model, prompt, Math.Max(room, 0), sampler, tokenizer?.StopIds);
        return tokenizer is null ? ids.Select(id => new GeneratedToken(id, null, null)) : WithText(tokenizer, [.. prompt], ids);
    }

    /// <summary>
    /// Whether a generation of <paramref name="generated"/> tokens after a prompt of <paramref name="promptLength"/>,
    /// asked for <paramref name="maxTokens"/> without sliding, was cut short by the model's context.
    /// </summary>
    public static bool StoppedAtContext(ModelConfig config, int promptLength, int maxTokens, int generated) =>
        generated < maxTokens && promptLength + generated >= config.ContextLength;

    /// <summary>
    /// The raw loop under <see cref="Stream"/>: ids only, the stop set given by the caller, and up to one token past a
    /// full context (the last one is sampled, never fed back).
    /// </summary>
    public static IEnumerable<int> Generate(Transformer model, IReadOnlyList<int> prompt, int maxTokens, Sampler sampler, IReadOnlySet<int>? stopTokens = null)
    {
        if (prompt.Count == 0)
        {
            throw new HeadLensException("the prompt is empty: give at least one token");
        }

        if (prompt.Count > model.Config.ContextLength)
        {
            throw new HeadLensException($"the prompt has {prompt.Count} tokens, more than the model's context of {model.Config.ContextLength}");
        }

        CheckCacheFits(model, Math.Min(model.Config.ContextLength, (long)prompt.Count + Math.Max(maxTokens, 0)));
        return Run(model, prompt.ToArray(), maxTokens, sampler, stopTokens);
    }

    // Generation past the context: when the cache is full, start a new one from the last half of the tokens so far.
    // Half, not all but one: re-reading the kept tokens is a prefill, and keeping half makes it happen once every
    // context/2 tokens instead of at every token, while each token still sees at least half a context of history.
    private static IEnumerable<int> Sliding(Transformer model, IReadOnlyList<int> prompt, int maxTokens, Sampler sampler, IReadOnlySet<int>? stopTokens)
    {
        int context = model.Config.ContextLength;
        Generate(model, prompt, 0, sampler); // the prompt's checks (not empty, within the context), nothing generated
        var history = prompt.ToList();
        int[] window = [.. prompt];
        int produced = 0;
        while (true)
        {
            int thisRun = 0;
            foreach (int id in Run(model, window, maxTokens - produced, sampler, stopTokens))
            {
                history.Add(id);
                produced++;
                thisRun++;
                yield return id;
            }

            // Run ends at the token limit, at a stop token, or one token past a full context (that token sampled, not
            // read yet); only the last goes on, from a window that ends with that token.
            bool contextFull = thisRun == context - window.Length + 1;
            if (!contextFull || produced >= maxTokens)
            {
                yield break;
            }

            window = [.. history.Skip(history.Count - Math.Max(1, context / 2))];
        }
    }

    /// <summary>Test seam (per thread): the memory a KV cache may take, instead of half of what the process may use.</summary>
    [ThreadStatic]
    internal static long? CacheMemoryLimit;

    // The KV cache is what grows with the number of tokens (2 × layers × kv heads × head size × tokens floats): it is
    // sized for prompt + max tokens, not the whole context (a 128k-context config would otherwise ask for gigabytes
    // to generate ten tokens), and refused up front when it cannot fit in memory.
    private static void CheckCacheFits(Transformer model, long tokens)
    {
        var c = model.Config;
        long bytes = 2L * c.Layers * c.KvHeads * c.HeadDim * tokens * sizeof(float);
        long limit = CacheMemoryLimit ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2;
        if (bytes > limit)
        {
            throw new HeadLensException($"generating up to {tokens:N0} tokens needs a {bytes / (double)(1 << 30):F2} GiB KV cache, " +
                $"more than the {limit / (double)(1 << 30):F2} GiB it may use here: lower --max-tokens (or the prompt)");
        }
    }

    /// <summary>The generated text after the prompt: decoded in context, minus the prompt's own text.</summary>
    public static string Continuation(ITokenizer tokenizer, ReadOnlySpan<int> prompt, ReadOnlySpan<int> generated)
    {
        string promptText = tokenizer.Decode(prompt);
        string all = tokenizer.Decode([.. prompt, .. generated]);
        return all.StartsWith(promptText, StringComparison.Ordinal) ? all[promptText.Length..] : tokenizer.Decode(generated);
    }

    private static IEnumerable<GeneratedToken> WithText(ITokenizer tokenizer, int[] prompt, IEnumerable<int> ids)
    {
        var generated = new List<int>();
        int printed = 0;
        foreach (int id in ids)
        {
            generated.Add(id);
            // Whole characters only: the text up to an unfinished character waits for the token that completes it.
            string continuation = Continuation(tokenizer, prompt, [.. generated]);
            int complete = continuation.EndsWith('\uFFFD') ? continuation.LastIndexOf('\uFFFD') : continuation.Length;
            string text = complete > printed ? continuation[printed..complete] : "";
            printed = Math.Max(printed, complete);
            yield return new GeneratedToken(id, text, continuation);
        }
    }

    private static IEnumerable<int> Run(Transformer model, int[] prompt, int maxTokens, Sampler sampler, IReadOnlySet<int>? stopTokens)
    {
        if (maxTokens <= 0)
        {
            yield break;
        }

        var cache = model.NewCache((int)Math.Min(model.Config.ContextLength, (long)prompt.Length + maxTokens));
        var logits = new float[model.Config.VocabSize];
        var sequence = new List<int>(prompt);
        model.DecodeStep(prompt, cache, logits);
        for (int produced = 0; produced < maxTokens; produced++)
        {
            // A token sampled from NaNs would be a lie: stop, naming the layer where the NaN began.
            model.ThrowIfNotFinite(logits, CollectionsMarshal.AsSpan(sequence), "logits");
            int next = sampler.Next(logits);
            if (stopTokens is not null && stopTokens.Contains(next))
            {
                yield break;
            }

            yield return next;
            if (cache.NextPosition >= model.Config.ContextLength || produced + 1 == maxTokens)
            {
                yield break;
            }

            sequence.Add(next);
            model.DecodeStep([next], cache, logits);
        }
    }
}
