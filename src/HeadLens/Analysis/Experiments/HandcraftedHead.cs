using System.Globalization;
using System.Text;
using HeadLens.Attention;
using HeadLens.Kernels;

namespace HeadLens.Analysis.Experiments;

/// <summary>One query word's row of a hand-written head: where it looks, and how much goes to each article.</summary>
public sealed record HandcraftedRow(int Position, string Word, int Target, double TargetWeight, IReadOnlyList<(int Position, double Weight)> Articles);

/// <summary>One sentence through one variant of the head.</summary>
public sealed record HandcraftedResult(string Variant, string Sentence, string[] Words, float[] Pattern, List<HandcraftedRow> Nouns);

/// <summary>
/// The article→noun head of the "attention heads are dumb" explanation, with W_Q and W_K written by hand. Each word
/// is a residual vector of hand-picked features:
///   x = [article, noun, adjective, verb, preposition, position]        (C = 6, one-hot class + the index j)
/// and the head has D = 2:
///   q = W_Q x = [β·noun, γ·noun]      k = W_K x = [article, position]
///   score(i, j) = q_i · k_j = β·noun_i·article_j + γ·noun_i·j
/// so a noun's query finds articles (β), and with γ &gt; 0 prefers later — nearer — keys. Everything that is not a
/// noun has q = 0 and attends uniformly: the head has nothing to say there. The attention itself runs through
/// HeadLens's own MatMul and ScaledDotProductAttention.Patterns (scale 1: the weights are already in logit units).
/// </summary>
public static class HandcraftedHead
{
    public const string Sentence = "the fat cat sat on the mat";

    /// <summary>A harder sentence: "cats" has no article of its own, and the nearest one belongs to "dog".</summary>
    public const string HardSentence = "the dog saw cats on the mat";

    private static readonly Dictionary<string, int> Classes = new(StringComparer.Ordinal)
    {
        ["the"] = 0,
        ["a"] = 0,
        ["cat"] = 1,
        ["cats"] = 1,
        ["mat"] = 1,
        ["dog"] = 1,
        ["house"] = 1,
        ["fat"] = 2,
        ["big"] = 2,
        ["sat"] = 3,
        ["saw"] = 3,
        ["on"] = 4,
        ["of"] = 4,
    };

    private const int Channels = 6, HeadDim = 2;

    /// <summary>The two variants shown: articles only (β = 8, γ = 0), and articles with a recency term (γ = 1).</summary>
    public static IReadOnlyList<(string Name, float Beta, float Gamma)> Variants { get; } =
    [
        ("articles only (β=8, γ=0)", 8f, 0f),
        ("articles + recency (β=8, γ=1)", 8f, 1f),
    ];

    public static HandcraftedResult Run(string sentence, string variant, float beta, float gamma)
    {
        string[] words = sentence.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        int t = words.Length;
        var x = new float[t * Channels];               // [T, C]
        for (int j = 0; j < t; j++)
        {
            if (!Classes.TryGetValue(words[j], out int wordClass))
            {
                throw new HeadLensException($"handcrafted head: no features for the word '{words[j]}' (known: {string.Join(", ", Classes.Keys)})");
            }

            x[j * Channels + wordClass] = 1;
            x[j * Channels + 5] = j;
        }

        // W_Q, W_K [D, C]: rows are the head's two query/key directions.
        var query = new float[HeadDim * Channels];
        var key = new float[HeadDim * Channels];
        query[0 * Channels + 1] = beta;                // q₀ = β·noun
        query[1 * Channels + 1] = gamma;               // q₁ = γ·noun
        key[0 * Channels + 0] = 1;                     // k₀ = article
        key[1 * Channels + 5] = 1;                     // k₁ = position
        var q = new float[t * HeadDim];                // [T, 1, D]
        var k = new float[t * HeadDim];
        MatMul.Forward(x, query, [], t, HeadDim, Channels, q);
        MatMul.Forward(x, key, [], t, HeadDim, Channels, k);
        var pattern = new float[t * t];                // [1, T, T]
        var options = new AttentionOptions(1, 1, HeadDim, HeadDim) { Scale = 1f };
        ScaledDotProductAttention.Patterns(options, t, t, 0, q, k, [0], pattern);

        var nouns = new List<HandcraftedRow>();
        for (int i = 0; i < t; i++)
        {
            if (Classes[words[i]] != 1)
            {
                continue;
            }

            var row = pattern.AsSpan(i * t, t);
            int target = 0;
            for (int j = 1; j <= i; j++)
            {
                target = row[j] > row[target] ? j : target;
            }

            var articles = Enumerable.Range(0, i).Where(j => Classes[words[j]] == 0).Select(j => (j, (double)pattern[i * t + j])).ToList();
            nouns.Add(new HandcraftedRow(i, words[i], target, row[target], articles));
        }

        return new HandcraftedResult(variant, sentence, words, pattern, nouns);
    }

    /// <summary>What each noun attends to, and the verdict (right article? how much leaks to a farther one?).</summary>
    public static string Describe(HandcraftedResult result)
    {
        var text = new StringBuilder();
        var culture = CultureInfo.InvariantCulture;
        text.AppendLine(culture, $"\"{result.Sentence}\" — {result.Variant}");
        foreach (var noun in result.Nouns)
        {
            // Its own article: the nearest one before it with no other noun in between.
            int own = noun.Articles.Count == 0 ? -1 : noun.Articles.Max(article => article.Position);
            if (own >= 0 && Enumerable.Range(own + 1, noun.Position - own - 1).Any(j => Classes[result.Words[j]] == 1))
            {
                own = -1;
            }

            string articles = string.Join(", ", noun.Articles.Select(article => $"{result.Words[article.Position]}@{article.Position} {article.Weight:F3}"));
            string verdict = own < 0
                ? (Classes[result.Words[noun.Target]] == 0 ? "WRONG: it has no article of its own, this one belongs to another noun" : "it has no article")
                : noun.Target == own ? "its own article" : "NOT its own article";
            text.AppendLine(culture, $"  {noun.Word}@{noun.Position}: looks at {result.Words[noun.Target]}@{noun.Target} ({noun.TargetWeight:F3}: {verdict}); articles: {articles}");
        }

        return text.ToString();
    }

    /// <summary>The pattern as a markdown table (rows: queries, columns: keys).</summary>
    public static string PatternTable(HandcraftedResult result)
    {
        int t = result.Words.Length;
        var text = new StringBuilder();
        text.Append("| query \\ key |");
        for (int j = 0; j < t; j++)
        {
            text.Append(CultureInfo.InvariantCulture, $" {result.Words[j]}@{j} |");
        }

        text.AppendLine().Append("|---|").AppendLine(string.Concat(Enumerable.Repeat("---|", t)));
        for (int i = 0; i < t; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $"| {result.Words[i]}@{i} |");
            for (int j = 0; j < t; j++)
            {
                text.Append(j > i ? " |" : string.Create(CultureInfo.InvariantCulture, $" {result.Pattern[i * t + j]:F2} |"));
            }

            text.AppendLine();
        }

        return text.ToString();
    }
}
