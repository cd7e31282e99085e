using System.Globalization;
using System.Reflection;
using System.Text;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Analysis.Experiments;

/// <summary>
/// What the attention articles claim about real heads, measured on a real pretrained encoder (all-MiniLM-L6-v2 by
/// default): coreference (`it` → `animal`), positional heads, [CLS]/[SEP] and delimiter heads, syntactic heads
/// against a fixed-offset baseline (after Clark et al. 2019, "What does BERT look at?"), local-to-broad layers, and
/// contextual meaning ("bank"). Every claim is stated with its number, whatever it turns out to be.
/// Words are fed as BERT's basic tokenizer splits them; attention between words follows Clark et al.: the attention
/// from a word is the mean over its pieces, the attention to a word the sum over its pieces.
/// </summary>
public static class RealHeadsExperiment
{
    public const string ArticleSentence = "The animal didn't cross the street because it was too tired.";

    private static readonly string[] RiverSense = ["The bank of the river.", "We sat on the bank of the stream.", "The river bank was muddy after the rain."];
    private static readonly string[] MoneySense = ["Money in the bank.", "I deposited cash at the bank.", "The bank approved the loan"];

    /// <summary>Runs every measurement; returns the Markdown report and writes its figures next to <paramref name="figureDirectory"/>.</summary>
    public static string Run(Transformer model, BertWordPieceTokenizer tokenizer, string modelName, string? figureDirectory, Action<string> progress)
    {
        var report = new StringBuilder();
        var config = model.Config;
        report.AppendLine(CultureInfo.InvariantCulture, $"# What real heads do: {modelName}").AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"Model: {config.Layers} layers × {config.Heads} heads, {config.Channels} channels ({config.DescribeFeatures()}). ");
        report.AppendLine("Produced by `headlens experiment real-heads`; every number below is measured by that command, none is typed in.").AppendLine();

        Coreference(model, tokenizer, report, progress);
        var syntax = LoadSyntax(tokenizer);
        Positional(model, tokenizer, syntax, report, progress);
        Syntactic(model, tokenizer, syntax, report, progress);
        var layers = Layers(model, tokenizer, syntax, report, progress);
        var bank = ContextualMeaning(model, tokenizer, report, progress);
        Ablation(model, tokenizer, syntax, report, progress);
        Composition(model, tokenizer, report, progress);
        if (figureDirectory is not null)
        {
            Directory.CreateDirectory(figureDirectory);
            var labels = Enumerable.Range(0, layers.Distance.Length).Select(l => l.ToString(CultureInfo.InvariantCulture)).ToArray();
            WriteFigure(Path.Combine(figureDirectory, "real-heads-layers.svg"), Rendering.LineChartSvg.Render(
                "Mean attention distance (tokens) and entropy (×10) per layer", "layer", labels,
                [("distance", layers.Distance), ("entropy ×10", [.. layers.Entropy.Select(e => e * 10)])]));
            var bankLabels = Enumerable.Range(0, bank.Same.Length).Select(l => l == 0 ? "emb" : l.ToString(CultureInfo.InvariantCulture)).ToArray();
            WriteFigure(Path.Combine(figureDirectory, "real-heads-bank.svg"), Rendering.LineChartSvg.Render(
                "Cosine of 'bank' vectors: same sense vs different sense", "layer (emb = embeddings)", bankLabels,
                [("same sense", bank.Same), ("different sense", bank.Different)]));
            report.AppendLine("![distance and entropy per layer](real-heads-layers.svg)").AppendLine();
            report.AppendLine("![bank: same vs different sense](real-heads-bank.svg)").AppendLine();
        }

        return report.ToString();
    }

    /// <summary>A sentence as the model reads it, with the token span [Start, End) of every word.</summary>
    public sealed record WordSequence(string[] Words, int[] Ids, (int Start, int End)[] Spans);

    /// <summary>[CLS] + each word's pieces + [SEP], remembering where each word's pieces lie.</summary>
    public static WordSequence Frame(BertWordPieceTokenizer tokenizer, string[] words)
    {
        var ids = new List<int> { tokenizer.ClsId };
        var spans = new (int, int)[words.Length];
        for (int w = 0; w < words.Length; w++)
        {
            int start = ids.Count;
            ids.AddRange(tokenizer.Encode(words[w]));
            spans[w] = (start, ids.Count);
        }

        ids.Add(tokenizer.SepId);
        return new WordSequence(words, [.. ids], spans);
    }

    /// <summary>Word-to-word attention of one head [words, words] from its token pattern [T, T].</summary>
    public static double[,] WordAttention(WordSequence sequence, ReadOnlySpan<float> pattern)
    {
        int t = sequence.Ids.Length, n = sequence.Words.Length;
        var result = new double[n, n];
        for (int a = 0; a < n; a++)
        {
            var (fromStart, fromEnd) = sequence.Spans[a];
            for (int b = 0; b < n; b++)
            {
                var (toStart, toEnd) = sequence.Spans[b];
                double sum = 0;
                for (int i = fromStart; i < fromEnd; i++)
                {
                    for (int j = toStart; j < toEnd; j++)
                    {
                        sum += pattern[(i * t) + j];
                    }
                }

                result[a, b] = sum / (fromEnd - fromStart);
            }
        }

        return result;
    }

    private static void Coreference(Transformer model, BertWordPieceTokenizer tokenizer, StringBuilder report, Action<string> progress)
    {
        progress("coreference: it → animal, and 20 more pronoun sentences");
        var items = LoadResource("coreference.txt").Select(fields => (Words: fields[0].Split(' '), Pronoun: int.Parse(fields[1], CultureInfo.InvariantCulture),
            Antecedent: int.Parse(fields[2], CultureInfo.InvariantCulture), Distractor: int.Parse(fields[3], CultureInfo.InvariantCulture))).ToList();
        int layers = model.Config.Layers, heads = model.Config.Heads;
        var toAntecedent = new double[items.Count, layers, heads];
        var toDistractor = new double[items.Count, layers, heads];
        for (int s = 0; s < items.Count; s++)
        {
            var item = items[s];
            var sequence = Frame(tokenizer, item.Words);
            var patterns = AttentionRecorder.Record(model, sequence.Ids);
            int t = sequence.Ids.Length;
            for (int l = 0; l < layers; l++)
            {
                for (int h = 0; h < heads; h++)
                {
                    var words = WordAttention(sequence, patterns[l].AsSpan(h * t * t, t * t));
                    toAntecedent[s, l, h] = words[item.Pronoun, item.Antecedent];
                    toDistractor[s, l, h] = words[item.Pronoun, item.Distractor];
                }
            }
        }

        var main = items[0];
        var ranked = Heads(layers, heads).OrderByDescending(head => toAntecedent[0, head.Layer, head.Head]).ToList();
        report.AppendLine("## Coreference: does `it` attend to `animal`?").AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"\"{ArticleSentence}\" — the heads ranked by attention from `{main.Words[main.Pronoun]}` to `{main.Words[main.Antecedent]}`, beside its attention to `{main.Words[main.Distractor]}`:").AppendLine();
        report.AppendLine("| layer | head | it → animal | it → street |").AppendLine("|---|---|---|---|");
        foreach (var (l, h) in ranked.Take(5))
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"| {l} | {h} | {toAntecedent[0, l, h]:F3} | {toDistractor[0, l, h]:F3} |");
        }

        var best = ranked[0];
        int others = items.Count - 1;
        int PrefersAntecedent(int l, int h) => Enumerable.Range(1, others).Count(s => toAntecedent[s, l, h] > toDistractor[s, l, h]);
        double MeanToAntecedent(int l, int h) => Enumerable.Range(1, others).Average(s => toAntecedent[s, l, h]);
        var bestOnOthers = Heads(layers, heads).MaxBy(head => PrefersAntecedent(head.Layer, head.Head) + (MeanToAntecedent(head.Layer, head.Head) / 10));
        int recency = Enumerable.Range(1, others).Count(s => Math.Abs(items[s].Pronoun - items[s].Antecedent) < Math.Abs(items[s].Pronoun - items[s].Distractor));
        report.AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"- The best head on the article's sentence, layer {best.Layer} head {best.Head}, gives `animal` {toAntecedent[0, best.Layer, best.Head]:F2} of `it`'s attention and `street` {toDistractor[0, best.Layer, best.Head]:F2}.");
        report.AppendLine(CultureInfo.InvariantCulture, $"- On the {others} other pronoun sentences (`src/HeadLens/Analysis/Experiments/Data/coreference.txt`, half of them built so that meaning, not position, decides), that head attends more to the antecedent than to the distractor in {PrefersAntecedent(best.Layer, best.Head)} of {others}; its mean attention to the antecedent is {MeanToAntecedent(best.Layer, best.Head):F2}.");
        report.AppendLine(CultureInfo.InvariantCulture, $"- The head that does best on those {others} sentences (chosen on them, so an upper bound), layer {bestOnOthers.Layer} head {bestOnOthers.Head}, prefers the antecedent in {PrefersAntecedent(bestOnOthers.Layer, bestOnOthers.Head)} of {others}.");
        report.AppendLine(CultureInfo.InvariantCulture, $"- Baseline: \"the nearer noun\" is the antecedent in {recency} of {others}.");
        // items[1] is the article's Winograd twin ("... because it was too wide"), where `it` is the street.
        report.AppendLine(CultureInfo.InvariantCulture, $"- The twin sentence \"... because it was too wide.\", where `it` is the street: the same head gives `animal` {toDistractor[1, best.Layer, best.Head]:F2} and `street` {toAntecedent[1, best.Layer, best.Head]:F2} — {(toAntecedent[1, best.Layer, best.Head] > toDistractor[1, best.Layer, best.Head] ? "it follows the meaning" : "it does not follow the meaning: it finds the animal whatever the sentence says")}.");
        report.AppendLine();
    }

    private static void Positional(Transformer model, BertWordPieceTokenizer tokenizer, List<(WordSequence Sequence, List<(string Label, int Query, int Target)> Relations)> syntax,
        StringBuilder report, Action<string> progress)
    {
        progress("positional, [CLS], [SEP] and delimiter heads");
        var summaries = HeadTaxonomy.Analyse(model, tokenizer, tokenizer.EncodeForModel(ArticleSentence));
        int layers = model.Config.Layers, heads = model.Config.Heads;
        report.AppendLine("## Positional, [CLS], [SEP] and delimiter heads").AppendLine();
        string List(string kind, string score) => string.Join(", ", summaries.Where(s => s.Kind == kind)
            .Select(s => string.Create(CultureInfo.InvariantCulture, $"L{s.Layer}H{s.Head} ({s.Scores[score]:F2})")));
        report.AppendLine(CultureInfo.InvariantCulture, $"On the article's sentence (`headlens heads` scores, see docs/head-scores.md): previous-token heads {OrNone(List(HeadKinds.PreviousToken, HeadKinds.PreviousTokenScore))}; next-token heads {OrNone(List(HeadKinds.NextToken, HeadKinds.NextTokenScore))}; self heads {OrNone(List(HeadKinds.Self, HeadKinds.SelfScore))}; heads parked on [CLS] (sink) {summaries.Count(s => s.Kind == HeadKinds.Sink)} of {summaries.Count}; delimiter heads {summaries.Count(s => s.Kind == HeadKinds.Delimiter)}.").AppendLine();

        // Clark et al.'s Figure 2: per layer, the mean attention to [CLS], [SEP], periods and commas over a corpus.
        var toCls = new double[layers];
        var toSep = new double[layers];
        var toPunctuation = new double[layers];
        foreach (var (sequence, _) in syntax)
        {
            var patterns = AttentionRecorder.Record(model, sequence.Ids);
            int t = sequence.Ids.Length;
            var punctuation = sequence.Spans.Where((_, w) => sequence.Words[w] is "." or ",").SelectMany(span => Enumerable.Range(span.Start, span.End - span.Start)).ToHashSet();
            for (int l = 0; l < layers; l++)
            {
                for (int h = 0; h < heads; h++)
                {
                    for (int i = 0; i < t; i++)
                    {
                        var row = patterns[l].AsSpan(((h * t) + i) * t, t);
                        toCls[l] += row[0];
                        toSep[l] += row[t - 1];
                        foreach (int j in punctuation)
                        {
                            toPunctuation[l] += row[j];
                        }
                    }
                }
            }
        }

        double rows = syntax.Sum(item => (double)item.Sequence.Ids.Length) * heads;
        report.AppendLine(CultureInfo.InvariantCulture, $"Mean attention per layer over the {syntax.Count} sentences of the syntactic set (all heads, all tokens; Clark et al. 2019 found BERT's middle layers parking most of it on [SEP]):").AppendLine();
        report.AppendLine("| layer | to [CLS] | to [SEP] | to `.` and `,` |").AppendLine("|---|---|---|---|");
        for (int l = 0; l < layers; l++)
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"| {l} | {toCls[l] / rows:F3} | {toSep[l] / rows:F3} | {toPunctuation[l] / rows:F3} |");
        }

        report.AppendLine();
    }

    private static void Syntactic(Transformer model, BertWordPieceTokenizer tokenizer, List<(WordSequence Sequence, List<(string Label, int Query, int Target)> Relations)> syntax,
        StringBuilder report, Action<string> progress)
    {
        progress("syntactic heads against a fixed-offset baseline");
        int layers = model.Config.Layers, heads = model.Config.Heads;
        var labels = syntax.SelectMany(item => item.Relations.Select(r => r.Label)).Distinct().Order(StringComparer.Ordinal).ToList();
        var correct = labels.ToDictionary(label => label, _ => new int[layers, heads]);
        var total = labels.ToDictionary(label => label, _ => 0);
        var offsets = labels.ToDictionary(label => label, _ => new Dictionary<int, int>());
        foreach (var (sequence, relations) in syntax)
        {
            var patterns = AttentionRecorder.Record(model, sequence.Ids);
            int t = sequence.Ids.Length, n = sequence.Words.Length;
            var words = new double[layers, heads][,];
            for (int l = 0; l < layers; l++)
            {
                for (int h = 0; h < heads; h++)
                {
                    words[l, h] = WordAttention(sequence, patterns[l].AsSpan(h * t * t, t * t));
                }
            }

            foreach (var (label, query, target) in relations)
            {
                total[label]++;
                offsets[label][target - query] = offsets[label].GetValueOrDefault(target - query) + 1;
                for (int l = 0; l < layers; l++)
                {
                    for (int h = 0; h < heads; h++)
                    {
                        // The head's prediction: the word (other than the query itself) it sends most attention to.
                        int predicted = Enumerable.Range(0, n).Where(w => w != query).MaxBy(w => words[l, h][query, w]);
                        if (predicted == target)
                        {
                            correct[label][l, h]++;
                        }
                    }
                }
            }
        }

        report.AppendLine("## Syntactic heads").AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"{syntax.Count} hand-labelled sentences (`src/HeadLens/Analysis/Experiments/Data/syntax-relations.txt`, with its labelling rules). For each relation, a head predicts the word its query word attends to most; the baseline always predicts the word at the relation's most common offset (Clark et al. 2019, Table 1).").AppendLine();
        report.AppendLine("| relation | pairs | best head | its accuracy | best fixed offset | baseline accuracy |").AppendLine("|---|---|---|---|---|---|");
        var names = new Dictionary<string, string>
        {
            ["amod"] = "adjective → noun",
            ["det"] = "determiner → noun",
            ["nsubj"] = "verb → subject",
            ["dobj"] = "verb → object",
            ["pobj"] = "preposition → object",
        };
        foreach (string label in labels)
        {
            var best = Heads(layers, heads).MaxBy(head => correct[label][head.Layer, head.Head]);
            var (offset, hits) = offsets[label].MaxBy(pair => pair.Value);
            report.AppendLine(CultureInfo.InvariantCulture,
                $"| {names.GetValueOrDefault(label, label)} | {total[label]} | L{best.Layer}H{best.Head} | {correct[label][best.Layer, best.Head] / (double)total[label]:P0} | {offset:+0;-0} | {hits / (double)total[label]:P0} |");
        }

        report.AppendLine().AppendLine("The best head is chosen on the same sentences it is scored on, as in Clark et al.; with 12 × 6 heads to choose from, a few points above the baseline can be chance.").AppendLine();
    }

    private static (double[] Distance, double[] Entropy) Layers(Transformer model, BertWordPieceTokenizer tokenizer,
        List<(WordSequence Sequence, List<(string Label, int Query, int Target)> Relations)> syntax, StringBuilder report, Action<string> progress)
    {
        progress("layers: mean attention distance and entropy");
        int layers = model.Config.Layers, heads = model.Config.Heads;
        var distance = new double[layers];
        var entropy = new double[layers];
        foreach (var (sequence, _) in syntax)
        {
            var patterns = AttentionRecorder.Record(model, sequence.Ids);
            int t = sequence.Ids.Length;
            for (int l = 0; l < layers; l++)
            {
                for (int h = 0; h < heads; h++)
                {
                    var pattern = patterns[l].AsSpan(h * t * t, t * t);
                    distance[l] += HeadScores.MeanDistance(pattern, t, bidirectional: true);
                    entropy[l] += HeadScores.Broad(pattern, t, bidirectional: true);
                }
            }
        }

        for (int l = 0; l < layers; l++)
        {
            distance[l] /= syntax.Count * heads;
            entropy[l] /= syntax.Count * heads;
        }

        double meanLength = syntax.Average(item => item.Sequence.Ids.Length);
        report.AppendLine("## Layers: local early, broad late?").AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"Mean over all heads and the {syntax.Count} sentences (mean length {meanLength:F1} tokens; a uniform row over such a sentence has a mean distance of about {meanLength / 3:F1} tokens and normalised entropy 1):").AppendLine();
        report.AppendLine("| layer | mean attention distance (tokens) | normalised entropy |").AppendLine("|---|---|---|");
        for (int l = 0; l < layers; l++)
        {
            report.AppendLine(CultureInfo.InvariantCulture, $"| {l} | {distance[l]:F2} | {entropy[l]:F3} |");
        }

        int broadest = Array.IndexOf(entropy, entropy.Max()), narrowest = Array.IndexOf(entropy, entropy.Min());
        report.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"The broadest layer is {broadest} and the most focused {narrowest}; the articles' \"early local, late broad\" holds here only as far as these numbers rise from layer 0 to layer {layers - 1} ({distance[0]:F2} → {distance[layers - 1]:F2} tokens, entropy {entropy[0]:F3} → {entropy[layers - 1]:F3}).").AppendLine();
        return (distance, entropy);
    }

    private static (double[] Same, double[] Different) ContextualMeaning(Transformer model, BertWordPieceTokenizer tokenizer, StringBuilder report, Action<string> progress)
    {
        progress("contextual meaning: 'bank' at every layer");
        int layers = model.Config.Layers;
        int bankId = tokenizer.Encode("bank").Single();
        float[][] Vectors(string text)
        {
            int[] ids = tokenizer.EncodeForModel(text);
            int position = Array.IndexOf(ids, bankId);
            if (position < 0)
            {
                throw new HeadLensException($"experiment real-heads: '{text}' has no token 'bank'");
            }

            int c = model.Config.Channels;
            var names = Enumerable.Range(0, layers).Select(HookNames.ResidPre).Append(HookNames.ResidPost(layers - 1)).ToArray();
            var run = model.Run(ids, names.Contains, withLogits: false);
            return [.. names.Select(name => run[name].AsSpan(position * c, c).ToArray())];
        }

        var river = RiverSense.Select(Vectors).ToList();
        var money = MoneySense.Select(Vectors).ToList();
        var same = new double[layers + 1];
        var different = new double[layers + 1];
        var article = new double[layers + 1];
        for (int l = 0; l <= layers; l++)
        {
            var sameSense = new List<double>();
            foreach (var group in new[] { river, money })
            {
                for (int a = 0; a < group.Count; a++)
                {
                    for (int b = a + 1; b < group.Count; b++)
                    {
                        sameSense.Add(Cosine(group[a][l], group[b][l]));
                    }
                }
            }

            same[l] = sameSense.Average();
            different[l] = river.SelectMany(r => money.Select(m => Cosine(r[l], m[l]))).Average();
            article[l] = Cosine(river[0][l], money[0][l]);
        }

        report.AppendLine("## Contextual meaning: \"bank\"").AppendLine();
        report.AppendLine(CultureInfo.InvariantCulture, $"The vector of the token `bank` entering each layer (emb = after the embeddings) in {RiverSense.Length} river sentences and {MoneySense.Length} money sentences; mean cosine of pairs with the same sense and with different senses, and the article's own pair (\"{RiverSense[0]}\" vs \"{MoneySense[0]}\"):").AppendLine();
        report.AppendLine("| layer | same sense | different sense | gap | article's pair |").AppendLine("|---|---|---|---|---|");
        for (int l = 0; l <= layers; l++)
        {
            string name = l == 0 ? "emb" : l.ToString(CultureInfo.InvariantCulture);
            report.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {same[l]:F3} | {different[l]:F3} | {same[l] - different[l]:+0.000;-0.000} | {article[l]:F3} |");
        }

        report.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"After the embeddings the vectors differ only by position (cosine {article[0]:F3} for the article's pair); by the last layer the senses separate by {same[layers] - different[layers]:F3} in cosine. Sentences: river — {string.Join(" / ", RiverSense)} Money — {string.Join(" / ", MoneySense)}.").AppendLine();
        return (same, different);
    }

    /// <summary>
    /// Every head zero-ablated on every sentence of the syntactic set (<see cref="HeadAblation"/>): how far the sentence
    /// embedding turns without it (1 − cosine), per head, per layer, and for the heads parked on [CLS] against the rest
    /// (Clark et al. 2019 read attention to the special tokens as a no-op; Michel et al. 2019 found most heads removable).
    /// </summary>
    private static void Ablation(Transformer model, BertWordPieceTokenizer tokenizer, List<(WordSequence Sequence, List<(string Label, int Query, int Target)> Relations)> syntax,
        StringBuilder report, Action<string> progress)
    {
        progress("what breaks without each head");
        int layers = model.Config.Layers, heads = model.Config.Heads;
        var drift = new double[layers, heads];       // sum over sentences
        var largest = new double[layers, heads];
        foreach (var (sequence, _) in syntax)
        {
            foreach (var effect in HeadAblation.Run(model, sequence.Ids, AblationMethod.Zero).Heads)
            {
                drift[effect.Layer, effect.Head] += effect.Change / syntax.Count;
                largest[effect.Layer, effect.Head] = Math.Max(largest[effect.Layer, effect.Head], effect.Change);
            }
        }

        var kinds = HeadTaxonomy.Analyse(model, tokenizer, tokenizer.EncodeForModel(ArticleSentence)).ToDictionary(s => (s.Layer, s.Head), s => s.Kind);
        var ranked = Heads(layers, heads).OrderByDescending(pair => drift[pair.Layer, pair.Head]).ToList();
        var culture = CultureInfo.InvariantCulture;
        report.AppendLine("## What breaks without a head").AppendLine();
        report.AppendLine(culture, $"Each head's output (pattern · V) set to zero in turn on each of the {syntax.Count} sentences of the syntactic set, and the sentence embedding (mean-pooled, as `embed`) compared with the intact one: 1 − cosine, averaged over the sentences (`headlens ablate --model minilm` does one text). Kinds are `heads`' on the article's sentence.").AppendLine();
        report.AppendLine("| rank | head | kind | mean 1 − cos | largest on one sentence |").AppendLine("|---|---|---|---|---|");
        foreach (var (pair, rank) in ranked.Take(8).Select((pair, rank) => (pair, rank + 1)))
        {
            report.AppendLine(culture, $"| {rank} | L{pair.Layer}H{pair.Head} | {kinds[pair]} | {drift[pair.Layer, pair.Head]:F4} | {largest[pair.Layer, pair.Head]:F4} |");
        }

        report.AppendLine().AppendLine("The last layer's heads write the output directly, with no later layer to make up for them, so they lead the ranking:").AppendLine();
        report.AppendLine("| layer | mean 1 − cos of its heads | its most needed head |").AppendLine("|---|---|---|");
        for (int l = 0; l < layers; l++)
        {
            int best = Enumerable.Range(0, heads).MaxBy(h => drift[l, h]);
            report.AppendLine(culture, $"| {l} | {Enumerable.Range(0, heads).Average(h => drift[l, h]):F4} | L{l}H{best} ({drift[l, best]:F4}) |");
        }

        // The heads parked on [CLS] against the others of the same layers (the last layer writes the output directly,
        // so it is compared on its own).
        var middle = Heads(layers, heads).Where(pair => pair.Layer < layers - 1).ToList();
        var parked = middle.Where(pair => kinds[pair] == HeadKinds.Sink).ToList();
        var others = middle.Where(pair => kinds[pair] != HeadKinds.Sink).ToList();
        double median = ranked.Select(pair => drift[pair.Layer, pair.Head]).Order().ElementAt(ranked.Count / 2);
        report.AppendLine();
        report.AppendLine(culture, $"- The most needed head, L{ranked[0].Layer}H{ranked[0].Head}, turns the embedding by {drift[ranked[0].Layer, ranked[0].Head]:F4} on average; the median head by {median:F4}; {ranked.Count(pair => drift[pair.Layer, pair.Head] < 0.001)} of {ranked.Count} heads by less than 0.001.");
        if (parked.Count > 0 && others.Count > 0)
        {
            double parkedMean = parked.Average(pair => drift[pair.Layer, pair.Head]), othersMean = others.Average(pair => drift[pair.Layer, pair.Head]);
            double ratio = parkedMean / othersMean;
            string reading = ratio < 0.5 ? "far less: attention parked on [CLS] does little, as Clark et al. read it"
                : ratio <= 1.5 ? "about as much: by this measure parking on [CLS] is not a no-op"
                : "more: the parked heads matter more than the rest";
            report.AppendLine(culture, $"- Layers 0–{layers - 2}: the {parked.Count} heads parked on [CLS] (sink) turn it by {parkedMean:F4} on average, the other {others.Count} by {othersMean:F4} ({ratio:F2}×; {reading}).");
        }

        report.AppendLine();
    }

    // Which heads can read which earlier heads' output, from the weights alone (Circuits.Compositions): the strongest
    // pairs per input, and how far the model's pairs stand above independent random matrices.
    private static void Composition(Transformer model, BertWordPieceTokenizer tokenizer, StringBuilder report, Action<string> progress)
    {
        progress("composition: every head pair's Q-, K- and V-composition from the weights");
        var culture = CultureInfo.InvariantCulture;
        var scores = Circuits.Compositions(model);
        double random = Circuits.RandomBaseline(model.Config);
        var kinds = HeadTaxonomy.Analyse(model, tokenizer, tokenizer.EncodeForModel(ArticleSentence)).ToDictionary(s => (s.Layer, s.Head), s => s.Kind);
        string Head(int layer, int head) => $"L{layer}H{head} ({kinds[(layer, head)]})";
        report.AppendLine("## Which heads compose: the weights alone").AppendLine();
        report.AppendLine(culture, $"For every head and every head of a later layer, how much of what the earlier one writes the later one can read with its queries (Q), its keys (K) or its values (V): the composition scores of Elhage et al. 2021, ‖W_QK·W_OV‖_F / (‖W_QK‖_F ‖W_OV‖_F) and the like, with the scale of the norm before each block folded in (`headlens circuits --model minilm`). No text is involved; independent random matrices score about {random:F3} (1/√{model.Config.Channels}). Kinds are `heads`' on the article's sentence.").AppendLine();
        report.AppendLine("| input | rank | sender | receiver | score | × random |").AppendLine("|---|---|---|---|---|---|");
        foreach (var (name, score) in new (string, Func<Composition, double>)[] { ("K", c => c.Key), ("Q", c => c.Query), ("V", c => c.Value) })
        {
            foreach (var (pair, rank) in scores.OrderByDescending(score).Take(3).Select((pair, rank) => (pair, rank + 1)))
            {
                report.AppendLine(culture, $"| {name} | {rank} | {Head(pair.SourceLayer, pair.SourceHead)} | {Head(pair.Layer, pair.Head)} | {score(pair):F3} | {score(pair) / random:F1}× |");
            }
        }

        double Largest(Composition pair) => Math.Max(pair.Key, Math.Max(pair.Query, pair.Value));
        int above = scores.Count(pair => Largest(pair) > 2 * random);
        var strongest = scores.MaxBy(Largest)!;
        report.AppendLine();
        report.AppendLine(culture, $"- Of the {scores.Count} pairs, {above} score more than twice the random level in at least one input; the mean score is {scores.Average(pair => (pair.Query + pair.Key + pair.Value) / 3) / random:F2}× random.");
        report.AppendLine(culture, $"- The strongest pair, {Head(strongest.SourceLayer, strongest.SourceHead)} into {Head(strongest.Layer, strongest.Head)}, reaches {strongest.Key / random:F1}× random through the keys, {strongest.Query / random:F1}× through the queries and {strongest.Value / random:F1}× through the values.");
        report.AppendLine();
    }

    private static List<(WordSequence Sequence, List<(string Label, int Query, int Target)> Relations)> LoadSyntax(BertWordPieceTokenizer tokenizer) =>
        [.. LoadResource("syntax-relations.txt").Select(fields =>
        {
            var words = fields[0].Split(' ');
            var relations = fields[1].Split(';', StringSplitOptions.TrimEntries).Select(relation =>
            {
                var parts = relation.Split(' ', '>');
                return (parts[0], int.Parse(parts[1], CultureInfo.InvariantCulture), int.Parse(parts[2], CultureInfo.InvariantCulture));
            }).ToList();
            return (Frame(tokenizer, words), relations);
        })];

    // Lines of an embedded data file, '#' comments skipped, split on '|' and trimmed.
    private static List<string[]> LoadResource(string name)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream($"HeadLens.Analysis.Experiments.Data.{name}")
            ?? throw new InvalidOperationException($"missing embedded resource {name}");
        using var reader = new StreamReader(stream);
        var lines = new List<string[]>();
        while (reader.ReadLine() is { } line)
        {
            if (line.Length > 0 && !line.StartsWith('#'))
            {
                lines.Add([.. line.Split('|', StringSplitOptions.TrimEntries)]);
            }
        }

        return lines;
    }

    private static IEnumerable<(int Layer, int Head)> Heads(int layers, int heads) =>
        Enumerable.Range(0, layers).SelectMany(l => Enumerable.Range(0, heads).Select(h => (l, h)));

    private static string OrNone(string list) => list.Length == 0 ? "none" : list;

    private static double Cosine(float[] a, float[] b) =>
        System.Numerics.Tensors.TensorPrimitives.CosineSimilarity(a, b);

    private static void WriteFigure(string path, string svg)
    {
        string temporary = path + ".tmp-" + Environment.ProcessId;
        File.WriteAllText(temporary, svg);
        File.Move(temporary, path, overwrite: true);
    }
}
