using System.Text.Json;
using HeadLens.Inference;

namespace HeadLens.Cli.Commands;

internal sealed class GenerateCommand : ICommand
{
    public string Name => "generate";

    public string Usage => "generate --model MODEL [--tokenizer FILE] (--prompt TEXT | --ids 1,2,3) [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--json]";

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, _) = ModelInput.LoadModel(args);
        int[] prompt = ModelInput.ReadIds(args, model, tokenizer, "prompt");
        int maxTokens = args.GetInt("max-tokens", 100, 0, 1_000_000);
        var settings = new SamplingSettings
        {
            Temperature = (float)args.GetDouble("temperature", 0.8, 0, 100),
            TopK = args.GetInt("top-k", 0, 0, int.MaxValue),
            TopP = (float)args.GetDouble("top-p", 1, 0, 1),
            Seed = args.GetInt("seed", 42),
        };
        bool json = args.Flag("json");
        args.RejectUnknown();

        var stops = new HashSet<int>();
        if (tokenizer?.EosId is { } eos)
        {
            stops.Add(eos);
        }

        if (tokenizer?.BosId is { } bos)
        {
            stops.Add(bos);
        }

        var generated = new List<int>();
        var printed = 0;
        foreach (int id in Generator.Generate(model, prompt, maxTokens, new Sampler(settings), stops))
        {
            generated.Add(id);
            if (!json && tokenizer is not null)
            {
                // Stream whole characters only: a byte-level token may end in the middle of one.
                string text = Continuation(tokenizer, prompt, generated);
                int complete = text.EndsWith('\uFFFD') ? text.LastIndexOf('\uFFFD') : text.Length;
                if (complete > printed)
                {
                    Console.Write(text[printed..complete]);
                    printed = complete;
                }
            }
        }

        if (json)
        {
            var document = new Dictionary<string, object> { ["prompt_ids"] = prompt, ["ids"] = generated };
            if (tokenizer is not null)
            {
                document["text"] = Continuation(tokenizer, prompt, generated);
            }

            Console.WriteLine(JsonSerializer.Serialize(document));
        }
        else if (tokenizer is null)
        {
            Console.WriteLine(string.Join(',', generated));
        }
        else
        {
            string text = Continuation(tokenizer, prompt, generated);
            Console.WriteLine(text[Math.Min(printed, text.Length)..]);
        }

        return 0;
    }

    // The generated text as it reads after the prompt: decoded in context (SentencePiece strips the space after BOS;
    // a multi-byte character may start in the prompt), minus the prompt's own text.
    private static string Continuation(Tokenization.ITokenizer tokenizer, int[] prompt, List<int> generated)
    {
        string promptText = tokenizer.Decode(prompt);
        string all = tokenizer.Decode([.. prompt, .. generated]);
        return all.StartsWith(promptText, StringComparison.Ordinal) ? all[promptText.Length..] : tokenizer.Decode(generated.ToArray());
    }
}
