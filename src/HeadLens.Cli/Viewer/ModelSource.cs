using HeadLens.Analysis;
using HeadLens.Attention;
using HeadLens.Inference;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Cli.Viewer;

/// <summary>
/// The viewer's window on a real model. One inference pass per distinct input captures every layer's q and k (after
/// RoPE) and residual stream; patterns are recomputed from those q and k only for the heads and queries a view asks
/// for, so a 1024-token input never materialises all L·H·T² probabilities at once. The last few passes are kept
/// (bounded in bytes): a view reads the text and the taxonomy's repeated block in turn, and several pages may ask
/// about different texts at once. The model is not thread-safe: one lock guards it.
/// </summary>
public sealed class ModelSource : IAttentionSource
{
    private readonly Transformer model;
    private readonly ITokenizer? tokenizer;
    private readonly Lock gate = new();
    private readonly LinkedList<(int[] Ids, HookedRun Run, long Bytes)> runs = new(); // most recent first
    private readonly long runBytes;
    private double[,]? copying;
    private List<Composition>? compositions;

    /// <param name="runCacheBytes">Captured activations kept between requests; the most recent pass is always kept.</param>
    public ModelSource(Transformer model, ITokenizer? tokenizer, string name, long runCacheBytes = 256L << 20)
    {
        this.model = model;
        this.tokenizer = tokenizer;
        runBytes = runCacheBytes;
        var c = model.Config;
        Info = new SourceInfo(name, c.Layers, c.Heads, c.Channels, c.ContextLength, model.AttentionOptions.Mask == MaskKind.Causal);
    }

    public SourceInfo Info { get; }

    public TokenizedText Tokenize(string text)
    {
        if (tokenizer is null)
        {
            throw new HeadLensException($"{Info.Name} has no tokenizer: give token ids instead of text");
        }

        int[] ids = tokenizer.EncodeForModel(text);
        return new TokenizedText(ids, ids.Select(TokenText).ToArray());
    }

    public string TokenText(int id)
    {
        if (id < 0 || id >= model.Config.VocabSize)
        {
            throw new HeadLensException($"token id {id} is outside the model's vocabulary of {model.Config.VocabSize}");
        }

        // Without a tokenizer a token is shown by its id.
        return tokenizer is null ? $"[{id}]" : tokenizer.TokenText(id);
    }

    public void Patterns(int[] ids, int layer, ReadOnlySpan<int> heads, int firstQuery, int queries, Span<float> destination)
    {
        int t = ids.Length, qWidth = model.Config.Heads * model.Config.HeadDim;
        lock (gate)
        {
            var run = Run(ids);
            var q = run[QueryPoint(layer)].AsSpan(firstQuery * qWidth, queries * qWidth); // [queries, H·D]
            var k = run[KeyPoint(layer)];                                                  // [T, G·D]
            model.Patterns(queries, t, firstQuery, q, k, heads, destination);
        }
    }

    public HeadProbes Probes(int[] ids)
    {
        lock (gate)
        {
            // The weights never change: their copying scores (a product over the vocabulary per head) are worked out once.
            // An encoder without an unembedding has none.
            if (model.Config.HasOutputHead)
            {
                copying ??= Circuits.CopyingScores(model);
            }

            return HeadTaxonomy.Probes(model, tokenizer, ids, copying: copying);
        }
    }

    public float[][] ContextVectors(int[] ids, int position)
    {
        int c = model.Config.Channels;
        lock (gate)
        {
            var run = Run(ids);
            return Enumerable.Range(0, model.Config.Layers + 1)
                .Select(l => run[ResidualPoint(l)].AsSpan(position * c, c).ToArray())
                .ToArray();
        }
    }

    public HeadAblationResult Ablate(int[] ids, int layer, AblationMethod method)
    {
        lock (gate)
        {
            return HeadAblation.Run(model, ids, method, [.. Enumerable.Range(0, model.Config.Heads).Select(head => (layer, head))]);
        }
    }

    public PatchingResult Patch(int[] clean, int[] corrupted, int layer)
    {
        lock (gate)
        {
            return ActivationPatching.Run(model, clean, corrupted, PatchSite.Heads, layers: [layer]);
        }
    }

    public PatchingResult Paths(int[] clean, int[] corrupted, int layer, int receiverLayer, int receiverHead)
    {
        lock (gate)
        {
            return ActivationPatching.Paths(model, clean, corrupted, [(receiverLayer, receiverHead)], senderLayers: [layer]);
        }
    }

    public IReadOnlyList<Composition> Compositions()
    {
        lock (gate)
        {
            // The weights never change: every pair is scored once (GPT-2 124M: about a second and a half).
            return compositions ??= Circuits.Compositions(model);
        }
    }

    public LogitLensResult Lens(int[] ids)
    {
        lock (gate)
        {
            return LogitLens.Run(model, ids, AttentionViews.LensTop);
        }
    }

    public IReadOnlyList<int> Generate(int[] prompt, int maxTokens, float temperature, int seed)
    {
        var sampler = new Sampler(new SamplingSettings { Temperature = temperature, Seed = seed });
        lock (gate)
        {
            return Generator.Stream(model, tokenizer, prompt, maxTokens, sampler).Select(token => token.Id).ToList();
        }
    }

    /// <summary>Runs the inference pass unless a kept one was on these ids.</summary>
    private HookedRun Run(int[] ids)
    {
        for (var node = runs.First; node is not null; node = node.Next)
        {
            if (node.Value.Ids.AsSpan().SequenceEqual(ids))
            {
                runs.Remove(node);
                runs.AddFirst(node);
                return node.Value.Run;
            }
        }

        int layers = model.Config.Layers;
        var wanted = Enumerable.Range(0, layers).SelectMany(l => new[] { QueryPoint(l), KeyPoint(l) })
            .Concat(Enumerable.Range(0, layers + 1).Select(ResidualPoint))
            .ToHashSet(StringComparer.Ordinal);
        var run = model.Run(ids, wanted.Contains, withLogits: false);
        long bytes = run.Cache.Values.Sum(values => (long)values.Length * sizeof(float));
        runs.AddFirst(((int[])ids.Clone(), run, bytes));
        long total = runs.Sum(entry => entry.Bytes);
        while (total > runBytes && runs.Count > 1)
        {
            total -= runs.Last!.Value.Bytes;
            runs.RemoveLast();
        }

        return run;
    }

    // Queries and keys as attention sees them: after RoPE where the model rotates.
    private string QueryPoint(int layer) => model.Config.Positions == PositionKind.Rotary ? HookNames.RotQ(layer) : HookNames.Q(layer);

    private string KeyPoint(int layer) => model.Config.Positions == PositionKind.Rotary ? HookNames.RotK(layer) : HookNames.K(layer);

    // The stream entering layer l; l = L is the stream leaving the last layer.
    private string ResidualPoint(int layer) => layer < model.Config.Layers ? HookNames.ResidPre(layer) : HookNames.ResidPost(layer - 1);
}
