using System.Text.Json;
using HeadLens.Inference;

namespace HeadLens.Cli.Commands;

internal sealed class GenerateCommand : ICommand
{
    public string Name => "generate";

    public CommandSpec Spec { get; } = new(
        "Continue a prompt token by token with the KV cache, printing the text as it comes. Generation stops at --max-tokens, "
        + "at an end token the model defines, or where prompt and output fill the model's context (said on stderr, and as "
        + "\"stop_reason\" in JSON) unless --slide keeps going with a sliding window.",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            .. SharedOptions.Input("prompt"),
            CliOption.Valued("max-tokens", "N", "tokens to generate at most", "100"),
            CliOption.Flag("slide", "at the context limit, keep the last half of the context and go on (the model forgets what slid out)"),
            CliOption.Valued("temperature", "T", "sampling temperature; 0 is greedy", "0.8"),
            CliOption.Valued("top-k", "K", "sample among the K likeliest tokens; 0 keeps all", "0"),
            CliOption.Valued("top-p", "P", "sample among the likeliest tokens whose probabilities add up to P", "1"),
            CliOption.Valued("seed", "S", "random seed of the sampler", "42"),
            SharedOptions.Dtype,
            SharedOptions.Activations,
            SharedOptions.Json,
        ],
        "headlens generate --prompt \"And God said, \" --max-tokens 60 --temperature 0.8");

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, _) = ModelInput.LoadModel(args);
        ModelInput.ApplyDecodingDtype(args, model);
        ModelInput.ApplyActivations(args, model);
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
        bool slide = args.Flag("slide");
        args.RejectUnknown();

        var generated = new List<int>();
        string? text = null;
        int printed = 0;
        foreach (var token in Generator.Stream(model, tokenizer, prompt, maxTokens, new Sampler(settings), slide))
        {
            generated.Add(token.Id);
            text = token.Continuation;
            if (!json && token.Text is not null)
            {
                Console.Write(token.Text);
                printed += token.Text.Length;
            }
        }

        bool atContext = !slide && Generator.StoppedAtContext(model.Config, prompt.Length, maxTokens, generated.Count);
        string stopReason = atContext ? "context" : generated.Count == maxTokens ? "max-tokens" : "end-token";
        if (json)
        {
            var document = new Dictionary<string, object> { ["prompt_ids"] = prompt, ["ids"] = generated, ["stop_reason"] = stopReason };
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

        if (atContext)
        {
            // Not an error (the output is what the model can write), but not what was asked: say why it is shorter.
            Console.Error.WriteLine($"headlens generate: stopped after {generated.Count} of {maxTokens} tokens: the prompt ({prompt.Length} tokens) "
                + $"and the output fill the model's context of {model.Config.ContextLength}; --slide goes on with a sliding window");
        }

        return 0;
    }
}
