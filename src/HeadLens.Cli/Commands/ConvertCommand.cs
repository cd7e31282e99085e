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
            CliOption.Flag("force", "replace a file or directory already at --out (without it, an existing output is refused)"),
        ],
        "headlens convert --out kjv.gguf --type q8_0");

    public int Run(CommandArgs args)
    {
        var (model, tokenizer, path) = ModelInput.LoadModel(args, float32: true);
        string output = args.Require("out");
        string? typeName = args.Get("type");
        bool force = args.Flag("force");
        args.RejectUnknown();
        CheckOutput(output, path, force);
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
        if (model.Config.AttentionForm == Model.AttentionForm.Linear)
        {
            Console.Error.WriteLine("note: linear attention is HeadLens's own: config.json says so in headlens_attention_form, which PyTorch transformers ignores (it would compute softmax attention); HeadLens reads it back as written");
        }
        return 0;
    }

    /// <summary>
    /// Refuses to replace what is already at the output (a model converted earlier, or the input itself) unless
    /// --force says so; an empty directory is not a model and may be written into.
    /// </summary>
    private static void CheckOutput(string output, string input, bool force)
    {
        string full = Path.GetFullPath(output), source = Path.GetFullPath(input);
        if (string.Equals(Path.TrimEndingDirectorySeparator(full), Path.TrimEndingDirectorySeparator(source), StringComparison.Ordinal))
        {
            throw new UsageException($"convert: --out {output} is the model being converted; write to another path");
        }

        bool occupied = File.Exists(full) || (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any());
        if (occupied && !force)
        {
            throw new UsageException($"convert: {output} already exists; add --force to replace it");
        }
    }
}
