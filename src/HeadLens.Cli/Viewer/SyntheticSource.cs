using System.Text.RegularExpressions;
using HeadLens.Analysis;

namespace HeadLens.Cli.Viewer;

/// <summary>
/// A deterministic stand-in for a model, for tests and for trying the viewer without weights. Words (with their
/// leading space, as GPT-2 writes them) are tokens. Head h of layer l has a hand-made causal pattern of kind
/// <see cref="KindOf"/>: previous-token, sink (first token), broad (uniform), or local (decaying with distance).
/// Context vectors at layer l mix the embeddings of the last l + 1 tokens, so the same word drifts apart in two
/// texts as depth grows, as real context vectors do.
/// </summary>
public sealed partial class SyntheticSource : IAttentionSource
{
    /// <summary>The kinds in the order heads cycle through them.</summary>
    public static readonly string[] Kinds = [HeadKinds.PreviousToken, HeadKinds.Sink, HeadKinds.Broad, HeadKinds.Local];

    private static readonly string[] GeneratedWords = [" the", " river", " bank", " of", " light", " and", " water", ".", " money", " in"];

    private const int RepeatedVocabulary = 1000;

    private readonly Lock gate = new();
    private readonly List<string> vocabulary = [];
    private readonly Dictionary<string, int> idOf = new(StringComparer.Ordinal);

    public SyntheticSource(int layers = 3, int heads = 4, int maxTokens = 1024, int channels = 16)
    {
        Info = new SourceInfo("synthetic", layers, heads, channels, maxTokens, Causal: true);
    }

    public SourceInfo Info { get; }

    /// <summary>The kind of pattern head h of layer l is built with.</summary>
    public static string KindOf(int layer, int head) => Kinds[(layer + head) % Kinds.Length];

    public TokenizedText Tokenize(string text)
    {
        var words = WordPattern().Matches(text).Select(match => match.Value).ToArray();
        lock (gate)
        {
            var ids = words.Select(Intern).ToArray();
            return new TokenizedText(ids, words);
        }
    }

    public string TokenText(int id)
    {
        lock (gate)
        {
            if (id < 0 || id >= vocabulary.Count)
            {
                throw new HeadLensException($"token id {id} is outside the synthetic vocabulary of {vocabulary.Count}");
            }

            return vocabulary[id];
        }
    }

    public void Patterns(int[] ids, int layer, ReadOnlySpan<int> heads, int firstQuery, int queries, Span<float> destination)
    {
        int t = ids.Length;
        destination[..(heads.Length * queries * t)].Clear();
        for (int h = 0; h < heads.Length; h++)
        {
            string kind = KindOf(layer, heads[h]);
            for (int q = 0; q < queries; q++)
            {
                int i = firstQuery + q;
                FillRow(kind, i, destination.Slice((h * queries + q) * t, t));
            }
        }
    }

    public float[][] ContextVectors(int[] ids, int position)
    {
        int c = Info.Channels;
        var result = new float[Info.Layers + 1][];
        for (int l = 0; l <= Info.Layers; l++)
        {
            result[l] = new float[c];
            for (int j = Math.Max(0, position - l); j <= position; j++)
            {
                var random = new Random(ids[j] * 7919 + 17);
                for (int x = 0; x < c; x++)
                {
                    result[l][x] += (float)(random.NextDouble() - 0.5);
                }
            }
        }

        return result;
    }

    /// <summary>Hand-made patterns are not a model: nothing breaks without a head, so there is nothing to measure.</summary>
    public HeadAblationResult Ablate(int[] ids, int layer, AblationMethod method) =>
        throw new ViewerException(501, "ablation needs a model: this viewer shows synthetic patterns (headlens serve --model MODEL)");

    /// <summary>Hand-made patterns have no activations to copy from one text into another.</summary>
    public PatchingResult Patch(int[] clean, int[] corrupted, int layer) =>
        throw new ViewerException(501, "patching needs a model: this viewer shows synthetic patterns (headlens serve --model MODEL)");

    /// <summary>Nor paths from one head to another.</summary>
    public PatchingResult Paths(int[] clean, int[] corrupted, int layer, int receiverLayer, int receiverHead) =>
        throw new ViewerException(501, "path patching needs a model: this viewer shows synthetic patterns (headlens serve --model MODEL)");

    /// <summary>Nor weights whose circuits compose.</summary>
    public IReadOnlyList<Composition> Compositions() =>
        throw new ViewerException(501, "composition scores need a model's weights: this viewer shows synthetic patterns (headlens serve --model MODEL)");

    /// <summary>Hand-made patterns have no stream to read.</summary>
    public LogitLensResult Lens(int[] ids) =>
        throw new ViewerException(501, "the logit lens needs a model: this viewer shows synthetic patterns (headlens serve --model MODEL)");

    public IReadOnlyList<int> Generate(int[] prompt, int maxTokens, float temperature, int seed)
    {
        int count = Math.Max(0, Math.Min(maxTokens, Info.MaxTokens - prompt.Length));
        var result = new List<int>();
        int last = prompt.Length == 0 ? 0 : prompt[^1];
        lock (gate)
        {
            for (int n = 0; n < count; n++)
            {
                last = Intern(GeneratedWords[Math.Abs((last * 31) + seed + n) % GeneratedWords.Length]);
                result.Add(last);
            }
        }

        return result;
    }

    /// <summary>
    /// The text as its own probe (delimiters from the words themselves, which are their own decoded text), and a
    /// repeated random block over a notional vocabulary: the hand-made patterns do not depend on the ids.
    /// </summary>
    public HeadProbes Probes(int[] ids)
    {
        bool[] delimiters = [.. ids.Select(id => HeadTaxonomy.IsDelimiter(TokenText(id)))];
        int[] repeated = HeadTaxonomy.RepeatedIds(RepeatedVocabulary, Info.MaxTokens, tokenizer: null, seed: 0);
        return new HeadProbes(new HeadProbe(HeadProbe.TextName, ids, delimiters), new HeadProbe(HeadProbe.RepeatedName, repeated, []), Copying: null);
    }

    private static void FillRow(string kind, int i, Span<float> row)
    {
        if (i == 0)
        {
            row[0] = 1;
            return;
        }

        switch (kind)
        {
            case HeadKinds.PreviousToken:
                row[i - 1] = 0.9f;
                row[i] = 0.1f;
                break;
            case HeadKinds.Sink:
                row[0] = 0.8f;
                for (int j = 1; j <= i; j++)
                {
                    row[j] = 0.2f / i;
                }

                break;
            case HeadKinds.Broad:
                row[..(i + 1)].Fill(1f / (i + 1));
                break;
            default:
                // Weights exp(−distance/1.5): a head that reads its neighbourhood.
                float sum = 0;
                for (int j = 0; j <= i; j++)
                {
                    row[j] = MathF.Exp(-(i - j) / 1.5f);
                    sum += row[j];
                }

                for (int j = 0; j <= i; j++)
                {
                    row[j] /= sum;
                }

                break;
        }
    }

    private int Intern(string word)
    {
        if (!idOf.TryGetValue(word, out int id))
        {
            id = vocabulary.Count;
            vocabulary.Add(word);
            idOf.Add(word, id);
        }

        return id;
    }

    // A word with its leading whitespace, or one other character with its leading whitespace.
    [GeneratedRegex(@"\s*[\p{L}\p{N}_]+|\s*[^\s\p{L}\p{N}_]|\s+$")]
    private static partial Regex WordPattern();
}
