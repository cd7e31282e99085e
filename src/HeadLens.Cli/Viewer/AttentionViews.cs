using HeadLens.Analysis;

namespace HeadLens.Cli.Viewer;

/// <summary>One head in the model view: its kind, scores and a small thumbnail of its pattern.</summary>
/// <param name="Thumbnail">Size×Size bytes, base64: each cell is a block of queries (mean) over a block of keys (sum), scaled so the head's largest cell is 255.</param>
public sealed record HeadEntry(int Layer, int Head, string Kind, IReadOnlyDictionary<string, double> Scores, double MeanDistance, string Thumbnail);

/// <param name="Sources">For each score key, the probe it is read from (the same for every head): "text", "repeated random block", "weights (OV circuit)".</param>
public sealed record HeadsView(int[] Ids, string[] Tokens, int Layers, int Heads, int ThumbnailSize, IReadOnlyDictionary<string, string> Sources, IReadOnlyList<HeadEntry> Entries);

/// <summary>patterns[h][i][j]: how much query i of head heads[h] attends to key j.</summary>
public sealed record PatternView(int[] Ids, string[] Tokens, int Layer, int[] Heads, float[][][] Patterns);

/// <summary>Where one query looks in one head: its strongest keys.</summary>
public sealed record HeadFocus(int Head, int[] Top, float[] Weights);

/// <summary>
/// One token at one layer: LooksAt[j] = mean over heads of P[index, j] (where it reads from); LookedAtBy[i] = mean
/// over heads of P[i, index] (who reads it).
/// </summary>
public sealed record TokenLayer(int Layer, float[] LooksAt, float[] LookedAtBy, IReadOnlyList<HeadFocus> Heads);

public sealed record TokenView(int[] Ids, string[] Tokens, int Index, string Token, IReadOnlyList<TokenLayer> Layers);

public sealed record CompareSide(string[] Tokens, int Index);

/// <summary>Cosine similarity of the word's context vectors in the two texts, at every depth (0 = embeddings).</summary>
public sealed record CompareView(string Word, CompareSide A, CompareSide B, double[] Cosine, string[] Depths);

/// <summary>
/// One head removed: the change of the measure (decoders: next-token loss in nats/token; encoders: 1 − cosine of
/// the sentence embedding) and where it changed most — for decoders the prediction of token Position + 1 (its
/// probability intact and without the head), for encoders token Position (PositionChange: 1 − cosine there).
/// </summary>
public sealed record HeadEffectView(int Head, double Change, int Position, double PositionChange, double? CleanProbability, double? AblatedProbability);

/// <param name="Measure">"next_token_loss" or "embedding_drift", as `headlens ablate --json` names them.</param>
public sealed record AblationView(int Layer, string Method, string Measure, double Clean, IReadOnlyList<HeadEffectView> Heads);

/// <summary>One head patched from the clean text into the corrupted one: the metric then, and the share of the clean-minus-corrupted gap it brings back.</summary>
public sealed record PatchEffectView(int Head, double Value, double Recovered);

/// <param name="Metric">"logit_difference", "log_probability" or "embedding_similarity", as `headlens patch --json` names them.</param>
public sealed record PatchView(int Layer, string Metric, string? Answer, string? Wrong, double Clean, double Corrupted, IReadOnlyList<PatchEffectView> Heads);

/// <summary>What one sending head brings back through the receiver's queries, keys and values (shares of the gap).</summary>
public sealed record PathEffectView(int Head, double Query, double Key, double Value);

/// <summary>Path patching from the heads of one layer into one receiving head.</summary>
public sealed record PathsView(int Layer, int[] Receiver, string Metric, string? Answer, string? Wrong, double Clean, double Corrupted, IReadOnlyList<PathEffectView> Heads);

/// <summary>What head Receiver [layer, head] can read with its queries, keys and values of what head Sender writes (composition scores).</summary>
public sealed record CompositionPairView(int[] Sender, int[] Receiver, double Query, double Key, double Value);

/// <summary>Every head pair's composition scores, and what independent random matrices score (1/√C).</summary>
public sealed record CompositionsView(double Random, IReadOnlyList<CompositionPairView> Pairs);

/// <summary>One stage of the stream at one position: its most likely next tokens, and the probability of the token that follows in the text (null at the last position).</summary>
public sealed record LensCell(int[] Ids, string[] Top, double[] Probabilities, double? Next);

/// <summary>The logit lens of a text: Cells[stage][position], stages "embed", "L0", ... (the last is the model's output); Loss per stage (null for a one-token text).</summary>
public sealed record LensView(int[] Ids, string[] Tokens, string[] Stages, double?[] Loss, LensCell[][] Cells);

/// <summary>
/// Computes what each view shows from an <see cref="IAttentionSource"/>: only the layer, heads and rows a view needs,
/// one head at a time, so a request's working memory is one head's [T, T] pattern (plus the answer itself), never a
/// layer's [H, T, T] or the model's [L, H, T, T]. Nothing is kept between requests here: the source keeps its own
/// forward passes, from which one head's pattern is a cheap product of q and k.
/// </summary>
public sealed class AttentionViews(IAttentionSource source)
{
    public const int ThumbnailMax = 32;

    public IAttentionSource Source => source;

    private int[] AllHeads => Enumerable.Range(0, source.Info.Heads).ToArray();

    /// <summary>One head's pattern [T, T] on ids, into destination.</summary>
    public void HeadPattern(int[] ids, int layer, int head, Span<float> destination)
    {
        int t = ids.Length;
        source.Patterns(ids, layer, [head], 0, t, destination[..(t * t)]);
    }

    /// <summary>
    /// Every head's kind and scores from <see cref="HeadTaxonomy.Score(HeadProbes, int, int, HeadPattern, HeadPatternSeen?)"/>
    /// on the source's probes (the same path as `headlens heads`), with a thumbnail of its pattern on the text.
    /// </summary>
    public HeadsView Heads(TokenizedText input)
    {
        int t = input.Ids.Length;
        int size = Math.Min(t, ThumbnailMax);
        var thumbnails = new string[source.Info.Layers * source.Info.Heads];
        var summaries = HeadTaxonomy.Score(source.Probes(input.Ids), source.Info.Layers, source.Info.Heads, HeadPattern,
            (layer, head, pattern) => thumbnails[layer * source.Info.Heads + head] = Convert.ToBase64String(Thumbnail(pattern, t, size)));
        var entries = summaries.Select(s => new HeadEntry(s.Layer, s.Head, s.Kind,
            s.Scores.ToDictionary(pair => pair.Key, pair => Math.Round(pair.Value, 4), StringComparer.Ordinal),
            Math.Round(s.MeanDistance, 3),
            thumbnails[s.Layer * source.Info.Heads + s.Head])).ToList();
        var sources = summaries.Count > 0 ? summaries[0].Sources : new Dictionary<string, string>();
        return new HeadsView(input.Ids, input.Tokens, source.Info.Layers, source.Info.Heads, size, sources, entries);
    }

    /// <summary>What breaks without each head of one layer (the page asks layer by layer and fills its grid as answers come).</summary>
    public AblationView Ablate(TokenizedText input, int layer, AblationMethod method)
    {
        var result = source.Ablate(input.Ids, layer, method);
        return new AblationView(layer, method == AblationMethod.Mean ? "mean" : "zero",
            Commands.AblateCommand.MeasureName(result.Measure), Math.Round(result.Clean, 6),
            [.. result.Heads.Select(e => new HeadEffectView(e.Head, Math.Round(e.Change, 6), e.Position, Math.Round(e.PositionChange, 6),
                e.CleanProbability is { } before ? Math.Round(before, 6) : null, e.AblatedProbability is { } after ? Math.Round(after, 6) : null))]);
    }

    /// <summary>Which heads of one layer carry what tells the clean text from the corrupted one (the page asks layer by layer).</summary>
    public PatchView Patch(TokenizedText clean, TokenizedText corrupted, int layer)
    {
        var result = source.Patch(clean.Ids, corrupted.Ids, layer);
        return new PatchView(layer, Commands.PatchCommand.MetricName(result.Metric),
            result.Answer is { } answer ? source.TokenText(answer) : null, result.Wrong is { } wrong ? source.TokenText(wrong) : null,
            Math.Round(result.Clean, 6), Math.Round(result.Corrupted, 6),
            [.. result.Effects.Select(e => new PatchEffectView(e.Index, Math.Round(e.Value, 6), Math.Round(e.Recovered, 6)))]);
    }

    /// <summary>What the heads of one layer send into one later head's queries, keys and values (the page asks layer by layer).</summary>
    public PathsView Paths(TokenizedText clean, TokenizedText corrupted, int layer, int receiverLayer, int receiverHead)
    {
        var result = source.Paths(clean.Ids, corrupted.Ids, layer, receiverLayer, receiverHead);
        double Share(int head, HeadInput input) => Math.Round(result.Effects.Single(e => e.Index == head && e.Input == input).Recovered, 6);
        return new PathsView(layer, [receiverLayer, receiverHead], Commands.PatchCommand.MetricName(result.Metric),
            result.Answer is { } answer ? source.TokenText(answer) : null, result.Wrong is { } wrong ? source.TokenText(wrong) : null,
            Math.Round(result.Clean, 6), Math.Round(result.Corrupted, 6),
            [.. result.Effects.Select(e => e.Index).Distinct().Select(head =>
                new PathEffectView(head, Share(head, HeadInput.Query), Share(head, HeadInput.Key), Share(head, HeadInput.Value)))]);
    }

    /// <summary>How many tokens the lens view keeps per position.</summary>
    public const int LensTop = 5;

    /// <summary>The logit lens (<see cref="LogitLens"/>) of the text, every stage and position, as `headlens lens --json` computes it.</summary>
    /// <summary>Every pair's scores to 4 decimals (GPT-2 124M's 9,504 pairs: about 450 KB of JSON).</summary>
    public CompositionsView Compositions() => new(Math.Round(Circuits.RandomBaseline(source.Info.Channels), 4),
        [.. source.Compositions().Select(pair => new CompositionPairView([pair.SourceLayer, pair.SourceHead], [pair.Layer, pair.Head],
            Math.Round(pair.Query, 4), Math.Round(pair.Key, 4), Math.Round(pair.Value, 4)))]);

    public LensView Lens(TokenizedText input)
    {
        var result = source.Lens(input.Ids);
        var texts = new Dictionary<int, string>();
        string Text(int id) => texts.TryGetValue(id, out var text) ? text : texts[id] = source.TokenText(id);
        var cells = result.Stages.Select(stage => Enumerable.Range(0, input.Ids.Length).Select(i => new LensCell(
            [.. stage.Top[i].Select(token => token.Token)],
            [.. stage.Top[i].Select(token => Text(token.Token))],
            [.. stage.Top[i].Select(token => Math.Round(token.Probability, 4))],
            i < input.Ids.Length - 1 ? Math.Round(stage.NextProbabilities[i], 4) : null)).ToArray()).ToArray();
        return new LensView(input.Ids, input.Tokens, [.. result.Stages.Select(stage => Commands.LensCommand.StageName(stage.Layer))],
            [.. result.Stages.Select(stage => double.IsNaN(stage.Loss) ? (double?)null : Math.Round(stage.Loss, 4))], cells);
    }

    public PatternView Pattern(TokenizedText input, int layer, int[] heads)
    {
        int t = input.Ids.Length;
        var pattern = new float[t * t]; // [T, T], one head at a time
        var result = new float[heads.Length][][];
        for (int index = 0; index < heads.Length; index++)
        {
            HeadPattern(input.Ids, layer, heads[index], pattern);
            result[index] = new float[t][];
            for (int i = 0; i < t; i++)
            {
                result[index][i] = Round(pattern.AsSpan(i * t, t));
            }
        }

        return new PatternView(input.Ids, input.Tokens, layer, heads, result);
    }

    public TokenView Token(TokenizedText input, int index)
    {
        int t = input.Ids.Length, heads = source.Info.Heads;
        var layers = new List<TokenLayer>();
        var pattern = new float[t * t]; // [T, T] of one head: its row `index` and its column `index`
        for (int l = 0; l < source.Info.Layers; l++)
        {
            var looksAt = new float[t];
            var lookedAtBy = new float[t];
            var focus = new List<HeadFocus>();
            for (int h = 0; h < heads; h++)
            {
                HeadPattern(input.Ids, l, h, pattern);
                var row = pattern.AsSpan(index * t, t);
                for (int j = 0; j < t; j++)
                {
                    looksAt[j] += row[j] / heads;
                    lookedAtBy[j] += pattern[(j * t) + index] / heads;
                }

                focus.Add(Top(h, row, 3));
            }

            layers.Add(new TokenLayer(l, Round(looksAt), Round(lookedAtBy), focus));
        }

        return new TokenView(input.Ids, input.Tokens, index, input.Tokens[index], layers);
    }

    /// <summary>Where the last token of ids looks at every layer: [L][T] (mean over heads) and each head's strongest key.</summary>
    public (float[][] Rows, int[][] Strongest) LastRow(int[] ids)
    {
        int t = ids.Length, heads = source.Info.Heads;
        var rows = new float[source.Info.Layers][];
        var strongest = new int[source.Info.Layers][];
        var buffer = new float[heads * t]; // [H, 1, T]
        for (int l = 0; l < source.Info.Layers; l++)
        {
            source.Patterns(ids, l, AllHeads, t - 1, 1, buffer);
            rows[l] = new float[t];
            strongest[l] = new int[heads];
            for (int h = 0; h < heads; h++)
            {
                var row = buffer.AsSpan(h * t, t);
                strongest[l][h] = ArgMax(row);
                for (int j = 0; j < t; j++)
                {
                    rows[l][j] += row[j] / heads;
                }
            }

            rows[l] = Round(rows[l]);
        }

        return (rows, strongest);
    }

    /// <summary>The cosine similarity, layer by layer, of the context vectors at (a, indexA) and (b, indexB).</summary>
    public double[] Cosine(int[] a, int indexA, int[] b, int indexB)
    {
        var left = source.ContextVectors(a, indexA);
        var right = source.ContextVectors(b, indexB);
        var result = new double[left.Length];
        for (int l = 0; l < left.Length; l++)
        {
            double dot = 0, leftNorm = 0, rightNorm = 0;
            for (int x = 0; x < left[l].Length; x++)
            {
                dot += (double)left[l][x] * right[l][x];
                leftNorm += (double)left[l][x] * left[l][x];
                rightNorm += (double)right[l][x] * right[l][x];
            }

            result[l] = leftNorm == 0 || rightNorm == 0 ? 0 : Math.Round(dot / Math.Sqrt(leftNorm * rightNorm), 4);
        }

        return result;
    }

    /// <summary>Block-averages a [T, T] pattern down to [size, size] bytes (see <see cref="HeadEntry"/>).</summary>
    public static byte[] Thumbnail(ReadOnlySpan<float> pattern, int t, int size)
    {
        var cells = new double[size * size];
        for (int r = 0; r < size; r++)
        {
            int rowStart = r * t / size, rowEnd = (r + 1) * t / size;
            for (int i = rowStart; i < rowEnd; i++)
            {
                var row = pattern.Slice(i * t, t);
                for (int c = 0; c < size; c++)
                {
                    int columnStart = c * t / size, columnEnd = (c + 1) * t / size;
                    double sum = 0;
                    for (int j = columnStart; j < columnEnd; j++)
                    {
                        sum += row[j];
                    }

                    cells[r * size + c] += sum / (rowEnd - rowStart);
                }
            }
        }

        double max = cells.Max();
        return cells.Select(v => max <= 0 ? (byte)0 : (byte)Math.Round(255 * v / max)).ToArray();
    }

    private static HeadFocus Top(int head, ReadOnlySpan<float> row, int count)
    {
        var order = Enumerable.Range(0, row.Length).ToArray();
        var weights = row.ToArray();
        Array.Sort(weights.Select(w => -w).ToArray(), order);
        var top = order.Take(Math.Min(count, row.Length)).ToArray();
        return new HeadFocus(head, top, top.Select(j => MathF.Round(weights[j], 4)).ToArray());
    }

    private static int ArgMax(ReadOnlySpan<float> row)
    {
        int best = 0;
        for (int j = 1; j < row.Length; j++)
        {
            if (row[j] > row[best])
            {
                best = j;
            }
        }

        return best;
    }

    // Four decimals are finer than any colour the page draws, and keep a 1024×1024 pattern near 5 MB of JSON.
    private static float[] Round(ReadOnlySpan<float> values)
    {
        var result = new float[values.Length];
        for (int j = 0; j < values.Length; j++)
        {
            result[j] = MathF.Round(values[j], 4);
        }

        return result;
    }
}
