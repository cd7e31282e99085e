using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Activation patching (<see cref="ActivationPatching"/>): a clean and a corrupted text, and for each head (or each
/// position of each layer's stream, attention output or MLP output; each head's queries, keys, values or pattern; each
/// head at each position) how much of the clean answer comes back when that one activation is copied from the clean run
/// into the corrupted one. Path patching (<c>--over paths --receiver L.H</c>): how much comes back when only what each
/// earlier head sends straight to the receiving heads' queries, keys or values (or to the output) is clean.
/// </summary>
internal sealed class PatchCommand : ICommand
{
    // A metric gap below this (nats or logits) is one the model hardly makes: its percentages are said to be noisy.
    private const double SmallGap = 0.1;

    // A long text's position rows whose patches all move the metric by less than this fraction are left out of the table.
    private const double QuietRow = 0.005;

    public string Name => "patch";

    public CommandSpec Spec { get; } = new(
        "Activation patching: run a clean and a corrupted text of the same length, then the corrupted one again with one "
        + "head's output (or its queries, keys, values or pattern; or, at one position, one head's output, the stream entering a layer, or a layer's "
        + "attention or MLP output) copied from the clean run, and show how much of the clean answer each patch brings back (0% = the corrupted "
        + "run, 100% = the clean one). --over paths --receiver L.H traces what each earlier head sends straight to that head's queries, keys and values.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            CliOption.Valued("clean", "TEXT", "the text whose answer is to be explained") with { Group = "clean", Required = true },
            CliOption.Valued("clean-ids", "1,2,3", "the clean text as token ids") with { Group = "clean", Required = true },
            CliOption.Valued("corrupted", "TEXT", "the same text with the part the answer depends on changed (as many tokens)") with { Group = "corrupted", Required = true },
            CliOption.Valued("corrupted-ids", "1,2,3", "the corrupted text as token ids") with { Group = "corrupted", Required = true },
            CliOption.Valued("answer", "TOKEN", "the token the clean text should be followed by (its first token; a token id for a model without a tokenizer)", "the clean run's top next token")
                with { Group = "answer" },
            CliOption.Valued("answer-id", "ID", "the answer as a token id") with { Group = "answer" },
            CliOption.Valued("wrong", "TOKEN", "the token the corrupted text calls for: the metric is logit(answer) − logit(wrong); without it, log p(answer)", "the corrupted run's top next token, when no answer is given either")
                with { Group = "wrong" },
            CliOption.Valued("wrong-id", "ID", "the wrong answer as a token id") with { Group = "wrong" },
            CliOption.Valued("over", "SITE", "heads: each head's output (pattern · V) at every position; head-positions: each head's output at one position; "
                + "queries, keys, values, patterns: each head's queries, keys, values (key/value heads under grouped-query attention) or attention pattern; "
                + "stream, attention, mlp: at one position, the stream entering each layer (hook_resid_pre), each layer's attention output (hook_attn_out) "
                + "or its MLP output (hook_mlp_out); paths: path patching into --receiver", "heads")
                with { Choices = [.. SiteNames.Keys] },
            CliOption.Valued("receiver", "L.H,L.H|output", "with --over paths: the heads whose queries, keys and values receive (together), or output: the path "
                + "straight to the logits (every later head held at its corrupted output)"),
            CliOption.Valued("sender", "L.H", "with --over paths instead of --receiver: what this head sends straight to each later head's queries, keys and values"),
            CliOption.Valued("input", "query|key|value", "with --over paths and receiving heads: trace only the paths into this input (a third of the runs)",
                "all three") with { Choices = ["query", "key", "value"] },
            CliOption.Flag("attribution", "estimate every patch at once, to first order, from one backward pass instead of a run per patch "
                + "(attribution patching; decoders; --over heads, head-positions, stream, attention or mlp): ranks the candidates, which plain patching then confirms"),
            CliOption.Valued("layer", "L", "patch only this layer (with --over paths: send only from this layer; with --sender: receive only in it)", "every layer (paths: every layer before the first receiver)"),
            CliOption.Valued("top", "N", "how many patches the ranking lists", "10"),
            CliOption.Valued("seed", "S", "random seed of the probe sequences that name each head's kind", "0"),
            SharedOptions.Json,
        ],
        "headlens patch --clean \"the word is kqzj; the word is kq\" --corrupted \"the word is kqvj; the word is kq\"");

    public int Run(CommandArgs args)
    {
        var clock = Stopwatch.StartNew();
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        var config = model.Config;
        bool json = args.Flag("json");
        int[] clean = ModelInput.ReadIds(args, model, tokenizer, "clean", "clean-ids");
        int[] corrupted = ModelInput.ReadIds(args, model, tokenizer, "corrupted", "corrupted-ids");
        string? answerText = args.Get("answer"), wrongText = args.Get("wrong");
        int? answerId = args.Has("answer-id") ? args.GetInt("answer-id", 0, 0) : null;
        int? wrongId = args.Has("wrong-id") ? args.GetInt("wrong-id", 0, 0) : null;
        var site = SiteNames[(args.Get("over") ?? "heads").ToLowerInvariant()];
        var sender = args.Get("sender") is { } senderText
            ? site == PatchSite.Paths ? ParseHead(senderText, "sender", config) : throw new UsageException("patch: --sender goes with --over paths")
            : ((int Layer, int Head)?)null;
        if (sender is not null && args.Has("receiver"))
        {
            throw new UsageException("patch: give --receiver (the heads paths go into) or --sender (the head they come from), not both");
        }

        var receivers = sender is null ? ReadReceivers(args.Get("receiver"), site, config) : null;
        HeadInput? input = args.Get("input") is { } inputName ? Enum.GetValues<HeadInput>().Single(i => InputName(i) == inputName) : null;
        if (input is not null && (site != PatchSite.Paths || receivers is { Count: 0 }))
        {
            throw new UsageException("patch: --input goes with --over paths and receiving heads (--receiver L.H or --sender L.H)");
        }
        bool attribution = args.Flag("attribution");
        if (attribution && Array.IndexOf(AttributionPatching.Sites, site) < 0)
        {
            throw new UsageException("patch: --attribution estimates --over heads, head-positions, stream, attention or mlp; the other sites need a run per patch");
        }

        int? layer = args.Has("layer") ? args.GetInt("layer", 0, 0, config.Layers - 1) : null;
        int top = args.GetInt("top", 10, 1, 100_000);
        int seed = args.GetInt("seed", 0);
        args.RejectUnknown();

        int? answer = answerText is null ? answerId : ModelInput.OneToken(answerText, tokenizer, "answer");
        int? wrong = wrongText is null ? wrongId : ModelInput.OneToken(wrongText, tokenizer, "wrong");
        PatchingResult result;
        if (attribution)
        {
            // One backward pass through the model's own weights: they stay unpacked.
            var estimating = Stopwatch.StartNew();
            result = AttributionPatching.Run(model, clean, corrupted, site, answer, wrong, layer is { } l ? [l] : null);
            Console.Error.WriteLine($"estimated {result.Effects.Count} {(site == PatchSite.Heads ? "heads" : site == PatchSite.HeadPositions ? "head positions" : "positions")} "
                + $"from one backward pass ({estimating.Elapsed.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture)} s)");
        }
        else if (sender is { } from)
        {
            ModelInput.PackForRepeatedInference(model);
            int receiving = (layer is null ? config.Layers - from.Layer - 1 : 1) * config.Heads;
            var progress = new SweepProgress(receiving * (input is null ? 3 : 1), "patched", "paths");
            result = ActivationPatching.PathsFrom(model, clean, corrupted, from, answer, wrong, layer is { } l ? [l] : null, progress.Report,
                input is { } only ? [only] : null);
        }
        else if (site == PatchSite.Paths)
        {
            ModelInput.PackForRepeatedInference(model);
            int senders = (layer is null ? (receivers!.Count == 0 ? config.Layers : receivers.Min(r => r.Layer)) : 1) * config.Heads;
            var progress = new SweepProgress(senders * (receivers!.Count == 0 || input is not null ? 1 : 3), "patched", "paths");
            result = ActivationPatching.Paths(model, clean, corrupted, receivers, answer, wrong, layer is { } l ? [l] : null, progress.Report,
                input is { } only ? [only] : null);
        }
        else
        {
            ModelInput.PackForRepeatedInference(model);
            int patches = (layer is null ? config.Layers : 1) * ActivationPatching.PatchesPerLayer(config, site, clean.Length);
            var progress = new SweepProgress(patches, "patched", PerHead(site) ? "heads" : site == PatchSite.HeadPositions ? "head positions" : "positions");
            result = ActivationPatching.Run(model, clean, corrupted, site, answer, wrong, layer is { } l ? [l] : null, progress.Report);
        }

        // Kinds name query heads: the key and value heads of a grouped-query model are shared, and have none.
        bool namesHeads = PerHead(site) || site == PatchSite.HeadPositions;
        var kinds = namesHeads && !(site is PatchSite.Keys or PatchSite.Values && config.KvHeads != config.Heads)
            ? HeadTaxonomy.Analyse(model, tokenizer, clean, seed).ToDictionary(s => (s.Layer, s.Head), s => s.Kind)
            : null;

        // Into one receiver, or from one sender: what the weights alone allow each path (composition scores), beside
        // what the text uses; keyed by the head each effect names.
        var compositions = receivers is [var (receiverLayer, receiverHead)]
            ? Circuits.CompositionsInto(model, receiverLayer, receiverHead).ToDictionary(c => (c.SourceLayer, c.SourceHead))
            : sender is { } source
                ? Circuits.CompositionsFrom(model, source.Layer, source.Head).ToDictionary(c => (c.Layer, c.Head))
                : null;
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(Document(result, tokenizer, kinds, compositions, attribution)));
            return 0;
        }

        Print(result, path, tokenizer, kinds, compositions, Circuits.RandomBaseline(config), top, attribution);
        Console.WriteLine();
        Console.WriteLine($"({clock.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }

    /// <summary>--over's values and the JSON's "over".</summary>
    internal static readonly Dictionary<string, PatchSite> SiteNames = new(StringComparer.Ordinal)
    {
        ["heads"] = PatchSite.Heads,
        ["head-positions"] = PatchSite.HeadPositions,
        ["queries"] = PatchSite.Queries,
        ["keys"] = PatchSite.Keys,
        ["values"] = PatchSite.Values,
        ["patterns"] = PatchSite.Patterns,
        ["stream"] = PatchSite.Stream,
        ["attention"] = PatchSite.Attention,
        ["mlp"] = PatchSite.Mlp,
        ["paths"] = PatchSite.Paths,
    };

    /// <summary>The JSON's "input" of a path's receivers.</summary>
    internal static string InputName(HeadInput input) => input switch
    {
        HeadInput.Query => "query",
        HeadInput.Key => "key",
        _ => "value",
    };

    // The sites whose patches (or senders) are whole heads: a layer × head grid.
    private static bool PerHead(PatchSite site) =>
        site is PatchSite.Heads or PatchSite.Queries or PatchSite.Keys or PatchSite.Values or PatchSite.Patterns or PatchSite.Paths;

    // --receiver: "L.H,L.H" or "output"; required by --over paths and refused by the other sites.
    private static List<(int Layer, int Head)>? ReadReceivers(string? text, PatchSite site, Model.ModelConfig config)
    {
        if (site != PatchSite.Paths)
        {
            return text is null ? null : throw new UsageException("patch: --receiver goes with --over paths");
        }

        if (text is null)
        {
            throw new UsageException("patch: --over paths needs --receiver L.H (the head whose queries, keys and values to trace; several as L.H,L.H), "
                + "--receiver output, or --sender L.H (the head whose paths to trace)");
        }

        if (text.Trim().Equals("output", StringComparison.OrdinalIgnoreCase))
        {
            return [];
        }

        return [.. text.Split(',', StringSplitOptions.TrimEntries).Select(item => ParseHead(item, "receiver", config))];
    }

    // "L.H" as --receiver or --sender gives it (to `command`): a head of this model.
    internal static (int Layer, int Head) ParseHead(string item, string option, Model.ModelConfig config, string command = "patch")
    {
        string[] parts = item.Split('.');
        if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int layer)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int head))
        {
            throw new UsageException($"{command}: --{option} '{item}' is not LAYER.HEAD (say 3.0){(option == "receiver" && command == "patch" ? " or output" : "")}");
        }

        if (layer >= config.Layers || head >= config.Heads)
        {
            throw new UsageException($"{command}: --{option} {item}: the model has {config.Layers} layers of {config.Heads} heads");
        }

        return (layer, head);
    }

    /// <summary>The metric's name in the JSON.</summary>
    internal static string MetricName(PatchMetric metric) => metric switch
    {
        PatchMetric.LogitDifference => "logit_difference",
        PatchMetric.LogProbability => "log_probability",
        _ => "embedding_similarity",
    };

    private static Dictionary<string, object> Document(PatchingResult result, Tokenization.ITokenizer? tokenizer, Dictionary<(int, int), string>? kinds,
        Dictionary<(int, int), Composition>? compositions, bool attribution)
    {
        bool heads = PerHead(result.Site) || result.Site == PatchSite.HeadPositions;
        var document = new Dictionary<string, object>
        {
            ["clean_ids"] = result.CleanIds,
            ["corrupted_ids"] = result.CorruptedIds,
            ["over"] = SiteNames.Single(pair => pair.Value == result.Site).Key,
            ["method"] = attribution ? "attribution" : "activation",
        };
        if (result.Receivers is { } receivers)
        {
            document["receivers"] = receivers.Select(r => new Dictionary<string, int> { ["layer"] = r.Layer, ["head"] = r.Head });
        }

        if (result.Sender is { } sender)
        {
            document["sender"] = new Dictionary<string, int> { ["layer"] = sender.Layer, ["head"] = sender.Head };
        }

        document["metric"] = MetricName(result.Metric);
        document["clean"] = Math.Round(result.Clean, 6);
        document["corrupted"] = Math.Round(result.Corrupted, 6);
        document["patches"] = result.Effects.OrderByDescending(e => e.Recovered).Select(e =>
        {
            var entry = new Dictionary<string, object> { ["layer"] = e.Layer, [heads ? "head" : "position"] = e.Index };
            if (e.Position >= 0)
            {
                entry["position"] = e.Position;
            }

            if (e.Input is { } input)
            {
                entry["input"] = InputName(input);
            }

            if (kinds is not null)
            {
                entry["kind"] = kinds[(e.Layer, e.Index)];
            }

            if (compositions is not null && e.Input is { } composed)
            {
                entry["composition"] = Math.Round(compositions[(e.Layer, e.Index)].Of(composed), 6);
            }

            entry["value"] = Math.Round(e.Value, 6);
            entry["recovered"] = Math.Round(e.Recovered, 6);
            return entry;
        });
        foreach (var (key, token) in new[] { ("answer", result.Answer), ("wrong", result.Wrong) })
        {
            if (token is { } id)
            {
                document[key] = id;
                if (tokenizer is not null)
                {
                    document[key + "_token"] = tokenizer.TokenText(id);
                }
            }
        }

        if (ModelInput.TokenTexts(tokenizer, result.CleanIds) is { } cleanTokens)
        {
            document["clean_tokens"] = cleanTokens;
            document["corrupted_tokens"] = ModelInput.TokenTexts(tokenizer, result.CorruptedIds)!;
        }

        return document;
    }

    private static void Print(PatchingResult result, string path, Tokenization.ITokenizer? tokenizer,
        Dictionary<(int, int), string>? kinds, Dictionary<(int, int), Composition>? compositions, double randomComposition, int top, bool attribution)
    {
        var invariant = CultureInfo.InvariantCulture;
        string Token(int id, int width = 12) => ModelInput.Show(tokenizer?.TokenText(id), id, width);
        string Text(int[] ids) => tokenizer is null ? string.Join(',', ids)
            : ModelInput.Show(tokenizer.Decode(ids), ids[^1], width: 72);
        int[] differ = [.. Enumerable.Range(0, result.CleanIds.Length).Where(i => result.CleanIds[i] != result.CorruptedIds[i])];
        var site = result.Site;

        Console.WriteLine($"{(site == PatchSite.Paths ? "Path patching" : attribution ? "Attribution patching" : "Activation patching")} on {path}: {What(result)}.");
        Console.WriteLine($"  clean:     {Text(result.CleanIds)} ({result.CleanIds.Length} tokens)");
        Console.WriteLine($"  corrupted: {Text(result.CorruptedIds)}");
        Console.WriteLine($"  they differ at {(differ.Length == 1 ? "position" : "positions")} "
            + string.Join(", ", differ.Select(i => $"{i} ({Token(result.CleanIds[i])} → {Token(result.CorruptedIds[i])})")));
        string F(double value) => value.ToString("+0.000;-0.000;0.000", invariant);
        Console.WriteLine(result.Metric switch
        {
            PatchMetric.LogitDifference => $"Metric: logit({Token(result.Answer!.Value)}) − logit({Token(result.Wrong!.Value)}) after the text: {F(result.Clean)} clean, {F(result.Corrupted)} corrupted.",
            PatchMetric.LogProbability => $"Metric: log p({Token(result.Answer!.Value)}) after the text: {F(result.Clean)} clean (p {Math.Exp(result.Clean).ToString("F3", invariant)}), "
                + $"{F(result.Corrupted)} corrupted (p {Math.Exp(result.Corrupted).ToString("F3", invariant)}).",
            _ => $"Metric: cosine of the sentence embedding (mean-pooled, as `embed`) to the clean text's: 1 clean, {result.Corrupted.ToString("F4", invariant)} corrupted.",
        });
        Console.WriteLine(attribution
            ? "Each cell: how much of that gap one patch would bring back, estimated to first order from one backward pass of the corrupted run "
                + "((clean − corrupted activation) · gradient; 0% = as corrupted, 100% = as clean). Confirm the leaders without --attribution."
            : "Each cell: how much of that gap one patch brings back (0% = as corrupted, 100% = as clean).");
        double gap = Math.Abs(result.Clean - result.Corrupted);
        if (gap < SmallGap)
        {
            Console.WriteLine($"The gap is small ({gap.ToString("G2", invariant)}): the model barely tells the two texts apart here, so these "
                + "percentages are of a difference it hardly makes; pick texts whose answers differ.");
        }

        if (PerHead(site))
        {
            foreach (var group in result.Effects.GroupBy(e => e.Input))
            {
                Console.WriteLine();
                if (group.Key is { } input)
                {
                    Console.WriteLine($"Into {(result.Sender is null ? "the receivers'" : "each head's")} {InputName(input)} {(input == HeadInput.Query ? "rows" : input == HeadInput.Key ? "rows (where they are found)" : "rows (what they move)")}:");
                }

                HeadGrid([.. group], site is PatchSite.Keys or PatchSite.Values && kinds is null ? "G" : "H");
            }
        }
        else
        {
            Console.WriteLine();
            PositionGrid(result, Token);
        }

        Console.WriteLine();
        var ranked = result.Effects.OrderByDescending(e => e.Recovered).Take(top).ToList();
        if (compositions is not null)
        {
            Console.WriteLine("In brackets: the path's composition score from the weights alone (Elhage et al. 2021: how much the sender can write "
                + $"into that input of the receiver, text or no text; independent random weights score about {randomComposition.ToString("F3", CultureInfo.InvariantCulture)}).");
        }

        string ranking = site switch
        {
            PatchSite.Paths => $"The {ranked.Count} paths that bring back most:",
            PatchSite.Keys or PatchSite.Values when kinds is null => $"The {ranked.Count} key/value heads that bring back most:",
            _ when PerHead(site) => $"The {ranked.Count} heads that bring back most:",
            _ => $"The {ranked.Count} patches that bring back most:",
        };
        Console.WriteLine(attribution ? ranking.Replace("that bring back", "estimated to bring back", StringComparison.Ordinal) : ranking);
        foreach (var e in ranked)
        {
            string kind = kinds is null ? "" : $"  {kinds[(e.Layer, e.Index)],-15}";
            string input = e.Input is { } into ? $" {(result.Sender is null ? "→" : "←")} {InputName(into),-5}" : "";
            string composition = compositions is not null && e.Input is { } composed
                ? $"  ({char.ToUpperInvariant(InputName(composed)[0])}-composition {compositions[(e.Layer, e.Index)].Of(composed).ToString("F3", CultureInfo.InvariantCulture)})"
                : "";
            Console.WriteLine(site switch
            {
                PatchSite.HeadPositions => $"  layer {e.Layer,2} head {e.Index,2} position {e.Position,3} {Token(result.CleanIds[e.Position]),-12} {Percent(e.Recovered),8}{kind} {Describe(result.Metric)} {F(e.Value)}",
                _ when PerHead(site) => $"  layer {e.Layer,2} head {e.Index,2}{input}  {Percent(e.Recovered),8}{kind} {Describe(result.Metric)} {F(e.Value)}{composition}",
                _ => $"  layer {e.Layer,2} position {e.Index,3} {Token(result.CleanIds[e.Index]),-12} {Percent(e.Recovered),8}  {Describe(result.Metric)} {F(e.Value)}",
            });
        }
    }

    // A layer × head grid of one sweep's (or one input's) effects; `label` heads the columns (H: heads, G: key/value heads).
    private static void HeadGrid(IReadOnlyList<PatchEffect> effects, string label)
    {
        int perLayer = effects.Max(e => e.Index) + 1;
        Console.WriteLine($"layer{string.Concat(Enumerable.Range(0, perLayer).Select(h => $"{label + h.ToString(CultureInfo.InvariantCulture),8}"))}");
        foreach (var row in effects.GroupBy(e => e.Layer))
        {
            var cells = Enumerable.Range(0, perLayer).Select(h => row.FirstOrDefault(e => e.Index == h) is { } e ? Percent(e.Recovered) : "");
            Console.WriteLine($"{row.Key,5}{string.Concat(cells.Select(cell => $"{cell,8}"))}");
        }
    }

    // Positions × columns: the layers (stream, attention, MLP) or, for head positions, the heads that move the metric
    // most. A long text's rows where no patch moves the metric are left out (the JSON has them all).
    private static void PositionGrid(PatchingResult result, Func<int, int, string> token)
    {
        const int MostHeads = 8;
        bool headPositions = result.Site == PatchSite.HeadPositions;
        var columns = headPositions
            ? result.Effects.GroupBy(e => (e.Layer, e.Index)).OrderByDescending(g => g.Max(e => Math.Abs(e.Recovered))).Take(MostHeads)
                .Select(g => g.Key).OrderBy(key => key).ToList()
            : result.Effects.Select(e => (e.Layer, Index: -1)).Distinct().ToList();
        int PositionOf(PatchEffect e) => headPositions ? e.Position : e.Index;
        bool Moves(int position) => result.Effects.Any(e => PositionOf(e) == position && Math.Abs(e.Recovered) >= QuietRow);
        int[] rows = [.. Enumerable.Range(0, result.CleanIds.Length).Where(i => result.CleanIds.Length <= 24 || Moves(i))];
        string Heading((int Layer, int Index) column) => headPositions
            ? $"{column.Layer}.{column.Index}"
            : "L" + column.Layer.ToString(CultureInfo.InvariantCulture);
        if (headPositions)
        {
            Console.WriteLine($"The {columns.Count} heads (layer.head) whose patches at one position move the metric most:");
        }

        Console.WriteLine($"{"position",-8}  {"token",-27}{string.Concat(columns.Select(column => $"{Heading(column),8}"))}");
        foreach (int i in rows)
        {
            string shown = result.CleanIds[i] == result.CorruptedIds[i] ? token(result.CleanIds[i], 12)
                : $"{token(result.CleanIds[i], 12)}→{token(result.CorruptedIds[i], 12)}";
            var cells = columns.Select(column => Percent(result.Effects.Single(e =>
                e.Layer == column.Layer && PositionOf(e) == i && (!headPositions || e.Index == column.Index)).Recovered));
            Console.WriteLine($"{i,8}  {shown,-27}{string.Concat(cells.Select(cell => $"{cell,8}"))}");
        }

        if (rows.Length < result.CleanIds.Length)
        {
            Console.WriteLine($"({result.CleanIds.Length - rows.Length} positions where no patch moves the metric by {100 * QuietRow:0.#}% or more are left out.)");
        }
    }

    private static string Describe(PatchMetric metric) => ActivationPatching.Describe(metric);

    private static string What(PatchingResult result) => result.Site switch
    {
        PatchSite.Heads => "each head's output (pattern · V, every position) copied from the clean run into the corrupted one, in turn",
        PatchSite.HeadPositions => "each head's output at one position copied from the clean run into the corrupted one, in turn",
        PatchSite.Queries => "each head's queries (every position) copied from the clean run into the corrupted one, in turn",
        PatchSite.Keys => "each key head's keys (every position) copied from the clean run into the corrupted one, in turn",
        PatchSite.Values => "each value head's values (every position) copied from the clean run into the corrupted one, in turn",
        PatchSite.Patterns => "each head's attention pattern copied from the clean run into the corrupted one, in turn",
        PatchSite.Paths when result.Sender is { } sender => $"what {sender.Layer}.{sender.Head} sends straight to each later head is clean, in turn, "
            + "into its queries, keys or values (the heads between held at their corrupted outputs, MLPs recomputed)",
        PatchSite.Paths when result.Receivers!.Count == 0 => "what each head sends straight to the output is clean, in turn "
            + "(every later head held at its corrupted output, MLPs recomputed)",
        PatchSite.Paths => $"what each earlier head sends straight to {string.Join(", ", result.Receivers!.Select(r => $"{r.Layer}.{r.Head}"))} is clean, in turn, "
            + "into their queries, keys or values (the heads between held at their corrupted outputs, MLPs recomputed)",
        PatchSite.Stream => "the stream entering each layer, at one position, copied from the clean run into the corrupted one, in turn",
        PatchSite.Attention => "each layer's attention output (all its heads), at one position, copied from the clean run into the corrupted one, in turn",
        _ => "each layer's MLP output, at one position, copied from the clean run into the corrupted one, in turn",
    };

    private static string Percent(double fraction) => (100 * fraction).ToString("+0.0'%';-0.0'%';0.0'%'", CultureInfo.InvariantCulture);
}
