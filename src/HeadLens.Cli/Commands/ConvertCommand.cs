using HeadLens.Checkpoints;
using HeadLens.Checkpoints.Gguf;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Writes any model HeadLens reads in another format: a Hugging Face directory (so ONNX, GGUF and llama2.c models can
/// be opened by PyTorch transformers) or a GGUF file (F32, F16 or Q8_0 matrices; so llama.cpp, Ollama and LM Studio
/// run HeadLens's models). Both are written beside the target and moved into place, never half-written.
/// </summary>
internal sealed class ConvertCommand : ICommand
{
    public string Name => "convert";

    public CommandSpec Spec { get; } = new(
        "Write a model in another format: a Hugging Face directory (for PyTorch transformers) or a GGUF file (for llama.cpp).",
        [
            SharedOptions.Model,
            SharedOptions.Tokenizer,
            CliOption.Valued("out", "DIR|FILE.gguf", "the output: a directory, or a file ending in .gguf") with { Required = true },
            CliOption.Valued("type", "TYPE", "the GGUF matrix type", "f32") with { Choices = ["f32", "f16", "q8_0"] },
        ],
        "headlens convert --out kjv.gguf --type q8_0");

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args, float32: true);
        string output = args.Require("out");
        string? typeName = args.Get("type");
        args.RejectUnknown();
        if (output.EndsWith(".gguf", StringComparison.OrdinalIgnoreCase))
        {
            var type = (typeName ?? "f32").ToLowerInvariant() switch
            {
                "f32" => GgufWriteType.F32,
                "f16" => GgufWriteType.F16,
                "q8_0" => GgufWriteType.Q8_0,
                var other => throw new UsageException($"convert: --type {other} is not one of f32, f16, q8_0"),
            };
            GgufWriter.Write(output, model, tokenizer, type);
            Console.WriteLine($"{path} → {output} (GGUF, {type})");
            return 0;
        }

        if (typeName is not null)
        {
            throw new UsageException("convert: --type applies to GGUF output (FILE.gguf); a Hugging Face directory is written in F32");
        }

        ModelFiles.Save(model, tokenizer, output);
        Console.WriteLine($"{path} → {output} (Hugging Face layout, {model.Config.Layout}, F32)");
        return 0;
    }
}
