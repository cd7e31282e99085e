using System.Globalization;
using System.Text.Json;
using HeadLens.Analysis;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Direct logit attribution (<see cref="DirectLogitAttribution"/>): how much each head, MLP and the embeddings wrote,
/// directly, into one logit (or a difference of two) at one position.
/// </summary>
internal sealed class AttributeCommand : ICommand
{
    public string Name => "attribute";

    public CommandSpec Spec { get; } = new(
        "Direct logit attribution: the stream at a position is a sum of what the embeddings, every head and every MLP "
        + "wrote into it, so a logit splits into their shares (through the final norm at that token's scale). A grid "
        + "per layer × head, each MLP, and the components that write the token most; with --wrong, the shares of "
        + "logit(token) − logit(wrong).",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            .. SharedOptions.Input(required: false),
            CliOption.Valued("token", "TOKEN", "the token whose logit is split (its first token; a token id for a model without a tokenizer)", "the model's top prediction at the position")
                with { Group = "token" },
            CliOption.Valued("token-id", "ID", "the token as an id") with { Group = "token" },
            CliOption.Valued("wrong", "TOKEN", "split logit(token) − logit(wrong) instead: which components write one answer over the other", "none")
                with { Group = "wrong" },
            CliOption.Valued("wrong-id", "ID", "the wrong token as an id") with { Group = "wrong" },
            CliOption.Valued("position", "P", "the position whose prediction is split (negative counts from the end)", "-1, the last"),
            CliOption.Valued("top", "N", "how many components the ranking lists", "10"),
            CliOption.Valued("seed", "S", "random seed of the probe sequences that name each head's kind", "0"),
            SharedOptions.Json,
        ],
        "headlens attribute --text \"the word is kqzj; the word is kq\" --wrong v");

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        var config = model.Config;
        bool json = args.Flag("json");
        int[]? textIds = args.Has("text") || args.Has("ids") ? ModelInput.ReadIds(args, model, tokenizer) : null;
        string? tokenText = args.Get("token"), wrongText = args.Get("wrong");
        int? tokenId = args.Has("token-id") ? args.GetInt("token-id", 0, 0) : null;
        int? wrongId = args.Has("wrong-id") ? args.GetInt("wrong-id", 0, 0) : null;
        int position = args.GetInt("position", -1, -config.ContextLength, config.ContextLength - 1);
        int top = args.GetInt("top", 10, 1, 100_000);
        int seed = args.GetInt("seed", 0);
        args.RejectUnknown();

        if (!config.HasOutputHead)
        {
            throw new HeadLensException("logit attribution needs a model with an output head; an encoder has no logits");
        }

        int[] ids = HeadTaxonomy.TextOrSample(model, tokenizer, textIds, seed);
        if (position >= ids.Length || position < -ids.Length)
        {
            throw new UsageException($"attribute: --position {position} is outside the text's {ids.Length} tokens (0..{ids.Length - 1}, or -1..-{ids.Length})");
        }

        if (position < 0)
        {
            position += ids.Length;
        }

        int? token = tokenText is not null ? ModelInput.OneToken(tokenText, tokenizer, "token") : tokenId;
        int? wrong = wrongText is not null ? ModelInput.OneToken(wrongText, tokenizer, "wrong") : wrongId;
        var attribution = DirectLogitAttribution.Compute(model, ids, position, token, wrong);
        var kinds = HeadTaxonomy.Analyse(model, tokenizer, textIds, seed).ToDictionary(s => (s.Layer, s.Head), s => s.Kind);

        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(Document(attribution, ids, tokenizer, kinds)));
            return 0;
        }

        Print(attribution, ids, path, tokenizer, kinds, top);
        return 0;
    }

    private static Dictionary<string, object> Document(LogitAttribution a, int[] ids, Tokenization.ITokenizer? tokenizer, Dictionary<(int, int), string> kinds)
    {
        int layers = a.Heads.GetLength(0), heads = a.Heads.GetLength(1);
        var document = new Dictionary<string, object>
        {
            ["ids"] = ids,
            ["position"] = a.Position,
            ["token"] = a.Token,
            ["logit"] = Math.Round(a.Logit, 6),
            ["heads"] = Enumerable.Range(0, layers).SelectMany(l => Enumerable.Range(0, heads).Select(h => (l, h)))
                .OrderByDescending(pair => a.Heads[pair.l, pair.h])
                .Select(pair => new Dictionary<string, object>
                {
                    ["layer"] = pair.l,
                    ["head"] = pair.h,
                    ["kind"] = kinds[(pair.l, pair.h)],
                    ["share"] = Math.Round(a.Heads[pair.l, pair.h], 6),
                }),
            ["mlps"] = a.Mlps.Select(share => Math.Round(share, 6)),
            ["output_biases"] = a.OutputBiases.Select(share => Math.Round(share, 6)),
            ["embeddings"] = Math.Round(a.Embeddings, 6),
            ["final_bias"] = Math.Round(a.FinalBias, 6),
        };
        if (a.Wrong is { } wrong)
        {
            document["wrong"] = wrong;
        }

        if (tokenizer is not null)
        {
            document["token_text"] = tokenizer.TokenText(a.Token);
            if (a.Wrong is { } w)
            {
                document["wrong_text"] = tokenizer.TokenText(w);
            }

            document["tokens"] = ModelInput.TokenTexts(tokenizer, ids)!;
        }

        return document;
    }

    private static void Print(LogitAttribution a, int[] ids, string path, Tokenization.ITokenizer? tokenizer, Dictionary<(int, int), string> kinds, int top)
    {
        var invariant = CultureInfo.InvariantCulture;
        int layers = a.Heads.GetLength(0), heads = a.Heads.GetLength(1);
        string Token(int id) => ModelInput.Show(tokenizer?.TokenText(id), id);
        string F(double value) => value.ToString("+0.000;-0.000;0.000", invariant);
        string context = tokenizer is null ? Token(ids[a.Position])
            : ModelInput.Show(tokenizer.Decode(ids.AsSpan(Math.Max(0, a.Position - 15)..(a.Position + 1))), ids[a.Position], width: 40);
        string what = a.Wrong is { } wrong ? $"logit({Token(a.Token)}) − logit({Token(wrong)})" : $"logit({Token(a.Token)})";
        Console.WriteLine($"Direct logit attribution on {path}, position {a.Position} ({context}): what each component writes into {what} = {F(a.Logit)},");
        Console.WriteLine("through the final norm at this token's scale. The shares add up to it.");
        Console.WriteLine();
        bool hasMlp = a.Mlps.Any(share => share != 0);
        bool hasBias = a.OutputBiases.Any(share => share != 0);
        string header = string.Concat(Enumerable.Range(0, heads).Select(h => $"{"H" + h.ToString(invariant),8}"));
        Console.WriteLine($"layer{header}{(hasMlp ? $"{"MLP",9}" : "")}{(hasBias ? $"{"bias",8}" : "")}");
        for (int l = 0; l < layers; l++)
        {
            string cells = string.Concat(Enumerable.Range(0, heads).Select(h => $"{F(a.Heads[l, h]),8}"));
            Console.WriteLine($"{l,5}{cells}{(hasMlp ? $"{F(a.Mlps[l]),9}" : "")}{(hasBias ? $"{F(a.OutputBiases[l]),8}" : "")}");
        }

        Console.WriteLine($"embeddings {F(a.Embeddings)}" + (a.FinalBias != 0 ? $", final norm's bias {F(a.FinalBias)}" : "")
            + $"; all heads {F(a.Heads.Cast<double>().Sum())}" + (hasMlp ? $", all MLPs {F(a.Mlps.Sum())}" : ""));
        Console.WriteLine();

        var components = Enumerable.Range(0, layers).SelectMany(l => Enumerable.Range(0, heads)
                .Select(h => (Name: $"layer {l,2} head {h,2}", Kind: kinds[(l, h)], Share: a.Heads[l, h])))
            .Concat(hasMlp ? Enumerable.Range(0, layers).Select(l => (Name: $"layer {l,2} MLP    ", Kind: "", Share: a.Mlps[l])) : [])
            .Append((Name: "embeddings       ", Kind: "", Share: a.Embeddings))
            .OrderByDescending(c => Math.Abs(c.Share)).Take(top).ToList();
        Console.WriteLine($"The {components.Count} largest shares (either sign):");
        foreach (var (name, kind, share) in components)
        {
            Console.WriteLine($"  {name}  {F(share),8}  {kind}".TrimEnd());
        }
    }
}
