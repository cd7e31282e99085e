using System.Globalization;
using System.Text.Json;
using HeadLens.Inference;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Sentence embeddings of an encoder (default: the built-in minilm): mean-pooled over each text's tokens,
/// L2-normalised, as sentence-transformers defines them, and the cosine similarity of every pair.
/// </summary>
internal sealed class EmbedCommand : ICommand
{
    public string Name => "embed";

    public CommandSpec Spec { get; } = new(
        "Sentence embeddings of an encoder (mean-pooled, unit length) and the cosine similarity of every pair of texts.",
        [
            SharedOptions.Model with { Default = "minilm" },
            SharedOptions.Tokenizer,
            CliOption.Valued("text", "TEXT", "a text to embed") with { Required = true, Repeatable = true },
            SharedOptions.Json,
        ],
        "headlens embed --text \"The bank of the river.\" --text \"I deposited cash at the bank.\"");

    public int Run(CommandArgs args)
    {
        var texts = args.GetAll("text");
        if (texts.Count == 0)
        {
            throw new UsageException("embed: give at least one --text");
        }

        bool json = args.Flag("json");
        if (args.Get("model") is null)
        {
            // The encoder a user most likely wants; the embedded default is a decoder.
            args = args.WithDefault("model", Models.MiniLmResources.Name);
        }

        var (model, tokenizer, path) = ModelInput.LoadModel(args);
        args.RejectUnknown();
        if (model.Config.Attention == Attention.MaskKind.Causal || model.Config.HasOutputHead)
        {
            throw new HeadLensException($"{path}: sentence embeddings need an encoder (a BERT-family model such as minilm)");
        }

        if (tokenizer is null)
        {
            throw new HeadLensException($"{path}: the model has no tokenizer (give --tokenizer vocab.txt)");
        }

        var sequences = texts.Select(text => ModelInput.Checked(tokenizer.EncodeForModel(text), model, $"--text \"{text}\"")).ToList();
        var embeddings = SentenceEmbeddings.Embed(model, sequences);
        var similarity = SentenceEmbeddings.Similarities(embeddings);
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["texts"] = texts,
                ["embeddings"] = embeddings,
                ["similarity"] = similarity,
            }));
            return 0;
        }

        Console.WriteLine($"{embeddings[0].Length}-dimensional sentence embeddings from {path} (mean-pooled, unit length); cosine similarity:");
        int width = Math.Min(40, texts.Max(text => text.Length));
        string Short(string text) => text.Length <= width ? text.PadRight(width) : text[..(width - 1)] + "…";
        for (int i = 0; i < texts.Count; i++)
        {
            string row = string.Join("  ", similarity[i].Select(value => value.ToString("F3", CultureInfo.InvariantCulture)));
            Console.WriteLine($"  [{i + 1}] {Short(texts[i])}  {row}");
        }

        return 0;
    }
}
