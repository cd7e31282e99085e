using HeadLens.Analysis;

namespace HeadLens.Cli.Viewer;

/// <summary>What the viewer shows about a model: its size and the names of its parts.</summary>
/// <param name="Name">A label for the page title (never a path the page can ask for).</param>
/// <param name="MaxTokens">The longest input the source accepts (the model's context).</param>
/// <param name="Causal">True when a query sees only itself and earlier keys.</param>
public sealed record SourceInfo(string Name, int Layers, int Heads, int Channels, int MaxTokens, bool Causal);

/// <summary>A text as the model sees it: ids and, for each, the token's printable text.</summary>
public sealed record TokenizedText(int[] Ids, string[] Tokens);

/// <summary>
/// Everything the viewer asks of a model, kept small so that a synthetic source (hand-made patterns, for tests) and
/// the model-backed source serve the same pages. Implementations need not be thread-safe beyond their own locks:
/// the server calls them from several requests at once.
/// </summary>
public interface IAttentionSource
{
    SourceInfo Info { get; }

    /// <summary>Encodes text exactly as the model's tokenizer does (with its BOS, if it adds one).</summary>
    TokenizedText Tokenize(string text);

    /// <summary>The printable text of one token id; throws HeadLensException for an id outside the vocabulary.</summary>
    string TokenText(int id);

    /// <summary>
    /// Post-softmax patterns of one layer for the queries firstQuery..firstQuery+queries−1 over all T keys:
    /// destination [heads.Length, queries, T], rows sum to 1, 0 where masked.
    /// </summary>
    void Patterns(int[] ids, int layer, ReadOnlySpan<int> heads, int firstQuery, int queries, Span<float> destination);

    /// <summary>
    /// What the head taxonomy reads for a text (<see cref="HeadTaxonomy.Score(HeadProbes, int, int, HeadPattern, HeadPatternSeen?)"/>): the text itself, the repeated random
    /// block, and the weights' copying scores, exactly as `headlens heads` builds them for the same model.
    /// </summary>
    HeadProbes Probes(int[] ids);

    /// <summary>The context vector of one position at every depth: [Layers + 1][Channels] (0 = embeddings, l = after block l).</summary>
    float[][] ContextVectors(int[] ids, int position);

    /// <summary>
    /// Every head of one layer removed in turn (<see cref="HeadAblation.Run"/>), as `headlens ablate --layer` does;
    /// a source without a model to break throws <see cref="ViewerException"/> (501).
    /// </summary>
    HeadAblationResult Ablate(int[] ids, int layer, AblationMethod method);

    /// <summary>
    /// The logit lens of a text (<see cref="LogitLens.Run"/>, the top 5 tokens per position), as `headlens lens --json`
    /// gives it; a model without an output head throws <see cref="HeadLensException"/>, a source without a model
    /// <see cref="ViewerException"/> (501).
    /// </summary>
    LogitLensResult Lens(int[] ids);

    /// <summary>
    /// Every head of one layer patched from <paramref name="clean"/> into <paramref name="corrupted"/> in turn
    /// (<see cref="ActivationPatching.Run"/>, the metric chosen as `headlens patch` chooses it without --answer);
    /// a source without a model throws <see cref="ViewerException"/> (501).
    /// </summary>
    PatchingResult Patch(int[] clean, int[] corrupted, int layer);

    /// <summary>
    /// Path patching from every head of <paramref name="layer"/> into the queries, keys and values of head
    /// <paramref name="receiverHead"/> of <paramref name="receiverLayer"/> (<see cref="ActivationPatching.Paths"/>, the
    /// metric chosen as for <see cref="Patch"/>); a source without a model throws <see cref="ViewerException"/> (501).
    /// </summary>
    PatchingResult Paths(int[] clean, int[] corrupted, int layer, int receiverLayer, int receiverHead);

    /// <summary>
    /// Every head pair's composition scores, from the weights alone (<see cref="Circuits.Compositions"/>, worked out
    /// once); a source without weights throws <see cref="ViewerException"/> (501).
    /// </summary>
    IReadOnlyList<Composition> Compositions();

    /// <summary>
    /// Continues a prompt by up to maxTokens new ids; a model-backed source runs <see cref="HeadLens.Inference.Generator.Stream"/>,
    /// which stops early at the context limit or a stop token (EOS, and BOS where the tokenizer has one), as `generate` does.
    /// </summary>
    IReadOnlyList<int> Generate(int[] prompt, int maxTokens, float temperature, int seed);
}
