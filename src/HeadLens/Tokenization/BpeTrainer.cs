namespace HeadLens.Tokenization;

/// <summary>
/// Learns a byte-level BPE vocabulary from a corpus, GPT-2 style: the text is split into words by GPT-2's pattern,
/// every word starts as its bytes, and the most frequent adjacent pair (counted over all words, weighted by how
/// often each word occurs; ties broken by the pair's text, so runs are deterministic) is merged, again and again,
/// until the vocabulary reaches its size. Pair counts are updated only for the words a merge touches. The result is
/// a <see cref="Gpt2Tokenizer"/> (256 byte tokens, the merges, and &lt;|endoftext|&gt; last).
/// </summary>
public static class BpeTrainer
{
    public static Gpt2Tokenizer Train(string text, int vocabSize)
    {
        if (vocabSize < 257)
        {
            throw new HeadLensException($"a BPE vocabulary needs at least 257 tokens (256 bytes and <|endoftext|>), got {vocabSize}");
        }

        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string word in Gpt2Tokenizer.Words(text))
        {
            counts[word] = counts.GetValueOrDefault(word) + 1;
        }

        var words = counts.Select(pair => (Symbols: Gpt2Tokenizer.ByteSymbols(pair.Key), Count: pair.Value)).ToList();
        var pairCounts = new Dictionary<(string, string), long>();
        var pairWords = new Dictionary<(string, string), HashSet<int>>();
        void Count(int index, int sign)
        {
            var (symbols, count) = words[index];
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                var pair = (symbols[i], symbols[i + 1]);
                pairCounts[pair] = pairCounts.GetValueOrDefault(pair) + sign * count;
                if (sign > 0)
                {
                    if (!pairWords.TryGetValue(pair, out var set))
                    {
                        pairWords[pair] = set = [];
                    }

                    set.Add(index);
                }
            }
        }

        for (int i = 0; i < words.Count; i++)
        {
            Count(i, +1);
        }

        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string symbol in Gpt2Tokenizer.AllByteSymbols)
        {
            vocabulary[symbol] = vocabulary.Count;
        }

        var merges = new List<(string, string)>();
        while (vocabulary.Count < vocabSize - 1)
        {
            (string, string) best = default;
            long bestCount = 0;
            foreach (var (pair, count) in pairCounts)
            {
                if (count > bestCount || (count == bestCount && count > 0 && string.CompareOrdinal(pair.Item1 + " " + pair.Item2, best.Item1 + " " + best.Item2) < 0))
                {
                    best = pair;
                    bestCount = count;
                }
            }

            if (bestCount < 2)
            {
                break; // nothing left worth merging: the vocabulary stays smaller than asked
            }

            string merged = best.Item1 + best.Item2;
            merges.Add(best);
            vocabulary.TryAdd(merged, vocabulary.Count);
            foreach (int index in pairWords[best].ToList())
            {
                Count(index, -1);
                var symbols = words[index].Symbols;
                var next = new List<string>(symbols.Count);
                for (int i = 0; i < symbols.Count; i++)
                {
                    if (i + 1 < symbols.Count && symbols[i] == best.Item1 && symbols[i + 1] == best.Item2)
                    {
                        next.Add(merged);
                        i++;
                    }
                    else
                    {
                        next.Add(symbols[i]);
                    }
                }

                words[index] = (next, words[index].Count);
                Count(index, +1);
            }

            pairCounts.Remove(best);
            pairWords.Remove(best);
        }

        vocabulary["<|endoftext|>"] = vocabulary.Count;
        return new Gpt2Tokenizer(vocabulary, merges);
    }
}
