using System.Text.Json;
using HeadLens.Inference;

namespace HeadLens.Cli.Commands;

internal sealed class GenerateCommand : ICommand
{
    public string Name => "generate";

    public string Usage => "generate --model MODEL [--tokenizer FILE] (--prompt TEXT | --ids 1,2,3) [--max-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--dtype fp32|bf16] [--json]";

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, _) = ModelInput.LoadModel(args);
        ModelInput.ApplyDecodingDtype(args, model);
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

        var generated = new List<int>();
        string? text = null;
        int printed = 0;
        foreach (var token in Generator.Stream(model, tokenizer, prompt, maxTokens, new Sampler(settings)))
        {
            generated.Add(token.Id);
            text = token.Continuation;
            if (!json && token.Text is not null)
            {
                Console.Write(token.Text);
                printed += token.Text.Length;
            }
        }

        if (json)
        {
            var document = new Dictionary<string, object> { ["prompt_ids"] = prompt, ["ids"] = generated };
            if (tokenizer is not null)
            {
                document["text"] = text ?? "";
            }

            Console.WriteLine(JsonSerializer.Serialize(document));
        }
        else if (tokenizer is null)
        {
            Console.WriteLine(string.Join(',', generated));
        }
        else
        {
            // What is still unprinted: a character the last token left open.
            Console.WriteLine(text?[printed..]);
        }

        return 0;
    }
}
