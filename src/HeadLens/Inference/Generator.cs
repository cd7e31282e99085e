using HeadLens.Model;

namespace HeadLens.Inference;

/// <summary>
/// Autoregressive generation with a KV cache: the prompt runs once (prefill), then each new token costs one decode
/// step over the cached keys and values. Stops at the token limit, the context limit, or a stop token.
/// </summary>
public static class Generator
{
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

        return Run(model, prompt.ToArray(), maxTokens, sampler, stopTokens);
    }

    private static IEnumerable<int> Run(Transformer model, int[] prompt, int maxTokens, Sampler sampler, IReadOnlySet<int>? stopTokens)
    {
        var cache = model.NewCache(model.Config.ContextLength);
        var logits = new float[model.Config.VocabSize];
        model.DecodeStep(prompt, cache, logits);
        for (int produced = 0; produced < maxTokens; produced++)
        {
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

            model.DecodeStep([next], cache, logits);
        }
    }
}
