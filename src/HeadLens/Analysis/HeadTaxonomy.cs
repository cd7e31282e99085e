using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Analysis;

/// <summary>
/// One sequence the taxonomy reads. <paramref name="Name"/> says what it is wherever a score from it is shown;
/// <paramref name="Delimiters"/>[i] says whether token i is punctuation or whitespace (empty: not known, and then no
/// delimiter score).
/// </summary>
public sealed record HeadProbe(string Name, int[] Ids, bool[] Delimiters)
{
    public const string TextName = "text";
    public const string SampleName = "sample text";
    public const string RepeatedName = "repeated random block";
    public const string WeightsName = "weights (OV circuit)";
}

/// <summary>
/// Everything the taxonomy reads for one model: a text for the positional, sink and delimiter scores, a repeated
/// random block for the token-matching scores, and the copying score of each head's OV circuit [layer, head] (null
/// when the source has no weights).
/// </summary>
/// <param name="Bidirectional">The model attends both ways (an encoder): distances and entropies over every key, and
/// the next-token and self scores.</param>
public sealed record HeadProbes(HeadProbe Text, HeadProbe Repeated, double[,]? Copying, bool Bidirectional = false);

/// <summary>One layer's post-softmax patterns [H, T, T] on ids.</summary>
public delegate float[] LayerPatterns(int[] ids, int layer);

/// <summary>One head's post-softmax pattern on ids, written to destination [T, T].</summary>
public delegate void HeadPattern(int[] ids, int layer, int head, Span<float> destination);

/// <summary>Called with each head's pattern on the text probe [T, T], as it is scored (the viewer draws thumbnails from it).</summary>
public delegate void HeadPatternSeen(int layer, int head, ReadOnlySpan<float> pattern);

/// <summary>
/// Names every head of a model (scores in <see cref="HeadScores"/>, kinds in <see cref="HeadKinds"/>) from two
/// probes and the weights:
///   - a random block of tokens repeated twice: induction and duplicate-token heads show themselves there (the
///     second copy can be predicted only by looking back), and nothing in a random block favours any other head;
///   - a text (given, or the built-in sample when the model has a tokenizer): positional, sink and delimiter
///     behaviour on real language. Without a text, the repeated block serves for every score;
///   - the weights: the copying score of each head's OV circuit (reported, not a kind).
/// This is the one scoring path: `heads`, `demo`, `report` and the viewer all call <see cref="Score(HeadProbes, int, int, HeadPattern, HeadPatternSeen?)"/> (whole layers or one head at a time) (the CLI
/// through <see cref="Analyse"/>), so a head has the same kind and scores everywhere, and every score says which
/// probe it came from (<see cref="HeadSummary.Sources"/>).
/// </summary>
public static class HeadTaxonomy
{
    public const string SampleText = "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep.";

    /// <summary>The longest repeated block the probe uses (two copies of 64 tokens stay cheap on any model).</summary>
    public const int MaxPeriod = 64;

    /// <summary>Probes, records and scores every head of a model (text ids as the model reads them; null: the sample).</summary>
    public static IReadOnlyList<HeadSummary> Analyse(Transformer model, ITokenizer? tokenizer, int[]? textIds = null, int seed = 0)
    {
        var probes = Probes(model, tokenizer, textIds, seed);
        var recorded = new Dictionary<int[], float[][]>(ReferenceEqualityComparer.Instance);
        float[] Record(int[] ids, int layer)
        {
            if (!recorded.TryGetValue(ids, out var patterns))
            {
                recorded[ids] = patterns = AttentionRecorder.Record(model, ids);
            }

            return patterns[layer];
        }

        return Score(probes, model.Config.Layers, model.Config.Heads, Record);
    }

    /// <summary>
    /// The probes for a model: the text (or the sample text, cut to the context; or, without a tokenizer, the repeated
    /// block), the repeated block of <see cref="RepeatedIds"/>, and the copying scores (computed unless given).
    /// </summary>
    public static HeadProbes Probes(Transformer model, ITokenizer? tokenizer, int[]? textIds = null, int seed = 0, double[,]? copying = null)
    {
        var config = model.Config;
        int[] repeatedIds = RepeatedIds(config.VocabSize, config.ContextLength, tokenizer, seed);
        var repeated = Probe(HeadProbe.RepeatedName, repeatedIds, tokenizer);
        var text = textIds is not null ? Probe(HeadProbe.TextName, textIds, tokenizer)
            : tokenizer is not null ? Probe(HeadProbe.SampleName, SampleIds(model, tokenizer), tokenizer)
            : repeated;
        // Copying reads the unembedding; an encoder without an output head has none.
        return new HeadProbes(text, repeated, copying ?? (config.HasOutputHead ? Circuits.CopyingScores(model) : null),
            config.Attention == Attention.MaskKind.Bidirectional);
    }

    /// <summary>
    /// What the analysis commands read when given no text: <paramref name="textIds"/>, else the sample text, else (a
    /// model without a tokenizer) the repeated random block of <paramref name="seed"/> — the text `heads` reads.
    /// </summary>
    public static int[] TextOrSample(Transformer model, ITokenizer? tokenizer, int[]? textIds, int seed = 0) =>
        textIds ?? (tokenizer is not null ? SampleIds(model, tokenizer)
            : RepeatedIds(model.Config.VocabSize, model.Config.ContextLength, tokenizer, seed));

    /// <summary>The sample text as the model reads it, cut to its context.</summary>
    public static int[] SampleIds(Transformer model, ITokenizer tokenizer) =>
        Truncate(tokenizer.EncodeForModel(SampleText), model.Config.ContextLength);

    /// <summary>A probe of ids, with delimiters read from each token's decoded text (none without a tokenizer).</summary>
    public static HeadProbe Probe(string name, int[] ids, ITokenizer? tokenizer) =>
        new(name, ids, tokenizer is null ? [] : [.. ids.Select(id => IsDelimiter(tokenizer.Decode([id])) || IsSeparatorToken(tokenizer, id))]);

    // BERT's [SEP] decodes to nothing but is the separator Clark et al. (2019) found heads parking on.
    private static bool IsSeparatorToken(ITokenizer tokenizer, int id) => tokenizer is BertWordPieceTokenizer bert && id == bert.SepId;

    /// <summary>
    /// Every head's scores and kind: positional, sink and delimiter scores and the mean distance from the text probe,
    /// duplicate-token and induction from the repeated block, copying from the weights.
    /// </summary>
    public static IReadOnlyList<HeadSummary> Score(HeadProbes probes, int layers, int heads, LayerPatterns patterns)
    {
        // Whole layers, sliced per head; the last layer is kept, so each layer is asked for once per probe.
        (int[]? Ids, int Layer, float[]? Value) last = (null, -1, null);
        void OneHead(int[] ids, int layer, int head, Span<float> destination)
        {
            if (!ReferenceEquals(last.Ids, ids) || last.Layer != layer)
            {
                last = (ids, layer, patterns(ids, layer));
            }

            int size = ids.Length * ids.Length;
            last.Value.AsSpan(head * size, size).CopyTo(destination);
        }

        return Score(probes, layers, heads, OneHead);
    }

    /// <summary>
    /// The same scores from one head's pattern at a time: memory [T, T] (and [R, R] for the repeated block), never a
    /// whole layer. All heads read the repeated block first, then the text, so a source that runs the model once
    /// per distinct input runs it twice. <paramref name="seen"/>, if given, receives each head's text pattern.
    /// </summary>
    public static IReadOnlyList<HeadSummary> Score(HeadProbes probes, int layers, int heads, HeadPattern pattern, HeadPatternSeen? seen = null)
    {
        var (text, repeated) = (probes.Text, probes.Repeated);
        var sources = Sources(probes);
        int t = text.Ids.Length, r = repeated.Ids.Length;
        var duplicate = new double[layers, heads];
        var induction = new double[layers, heads];
        var repeatPattern = new float[r * r];   // [R, R]
        for (int l = 0; l < layers; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                pattern(repeated.Ids, l, h, repeatPattern);
                duplicate[l, h] = HeadScores.DuplicateToken(repeatPattern, r, repeated.Ids);
                induction[l, h] = HeadScores.Induction(repeatPattern, r, repeated.Ids);
            }
        }

        var result = new List<HeadSummary>();
        var textPattern = new float[(long)t * t];  // [T, T]
        for (int l = 0; l < layers; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                pattern(text.Ids, l, h, textPattern);
                seen?.Invoke(l, h, textPattern);
                var scores = HeadScores.ForHead(textPattern, t, [], text.Delimiters, probes.Bidirectional);
                scores[HeadKinds.DuplicateTokenScore] = duplicate[l, h];
                scores[HeadKinds.InductionScore] = induction[l, h];
                if (probes.Copying is not null)
                {
                    scores[HeadKinds.CopyingScore] = probes.Copying[l, h];
                }

                result.Add(new HeadSummary(l, h, HeadKinds.Classify(scores), scores, HeadScores.MeanDistance(textPattern, t, probes.Bidirectional), sources));
            }
        }

        return result;
    }

    // For each score key, the probe it is read from.
    private static Dictionary<string, string> Sources(HeadProbes probes)
    {
        var (text, repeated) = (probes.Text, probes.Repeated);
        var sources = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            [HeadKinds.PreviousTokenScore] = text.Name,
            [HeadKinds.DuplicateTokenScore] = repeated.Name,
            [HeadKinds.InductionScore] = repeated.Name,
            [HeadKinds.SinkScore] = text.Name,
            [HeadKinds.LocalScore] = text.Name,
            [HeadKinds.BroadScore] = text.Name,
        };
        if (text.Delimiters.Length > 0)
        {
            sources[HeadKinds.DelimiterScore] = text.Name;
        }

        if (probes.Copying is not null)
        {
            sources[HeadKinds.CopyingScore] = HeadProbe.WeightsName;
        }

        if (probes.Bidirectional)
        {
            sources[HeadKinds.NextTokenScore] = text.Name;
            sources[HeadKinds.SelfScore] = text.Name;
        }

        return sources;
    }

    /// <summary>
    /// [BOS, if the tokenizer adds one] + a random block of distinct tokens + the same block again (block length
    /// min(64, (context − BOS)/2)). Tokens are distinct within the block so that every repeat in the sequence is the
    /// planted one; BOS and EOS never appear in it.
    /// </summary>
    public static int[] RepeatedIds(int vocabSize, int contextLength, ITokenizer? tokenizer, int seed, int maxPeriod = MaxPeriod)
    {
        int? bos = tokenizer is { AddsBos: true } ? tokenizer.BosId : null;
        int prefix = bos is null ? 0 : 1;
        int period = Math.Max(2, Math.Min(maxPeriod, (contextLength - prefix) / 2));
        var reserved = tokenizer?.StopIds ?? new HashSet<int>();
        var random = new Random(seed);
        var block = new List<int>();
        bool distinct = vocabSize >= period + reserved.Count;
        while (block.Count < period)
        {
            int id = random.Next(vocabSize);
            if (!reserved.Contains(id) && (!distinct || !block.Contains(id)))
            {
                block.Add(id);
            }
        }

        return bos is { } first ? [first, .. block, .. block] : [.. block, .. block];
    }

    /// <summary>
    /// Whether a token is a delimiter, from its decoded text (what the tokenizer's Decode gives for it alone, never a
    /// display label such as "␣" or "Ġ"): non-empty and nothing but punctuation, symbols, separators and whitespace
    /// (newlines included). U+FFFD, a byte that is part of a multi-byte character, is not one.
    /// </summary>
    public static bool IsDelimiter(string decoded) =>
        decoded.Length > 0 && decoded.All(c => c != '\uFFFD' && (char.IsPunctuation(c) || char.IsSeparator(c) || char.IsSymbol(c) || char.IsWhiteSpace(c)));

    private static int[] Truncate(int[] ids, int length) => ids.Length <= length ? ids : ids[..length];
}
