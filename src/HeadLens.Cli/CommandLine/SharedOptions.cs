using HeadLens.Kernels;
using HeadLens.Model;

namespace HeadLens.Cli;

/// <summary>The options several commands share, declared once so that they read the same everywhere.</summary>
internal static class SharedOptions
{
    public static readonly CliOption Model = CliOption.Valued("model", "MODEL",
        "a Hugging Face model directory, a llama2.c .bin, an ONNX encoder, a GGUF file, or the built-in minilm",
        "the embedded KJV model");

    public static readonly CliOption Tokenizer = CliOption.Valued("tokenizer", "FILE",
        "the tokenizer, when the model has none of its own: a model directory, a WordPiece vocab.txt or a llama2.c tokenizer.bin",
        "the model's own");

    public static readonly CliOption Json = CliOption.Flag("json", "print one JSON object on stdout (the shape in DESIGN.md's CLI contract) instead of text");

    public static readonly CliOption Preset = CliOption.Valued("preset", "NAME", "a built-in model shape") with { Choices = [.. ModelPresets.Names] };

    /// <summary>Every command takes --threads (read by Program before the command runs).</summary>
    public static readonly CliOption Threads = CliOption.Valued("threads", "N",
        "threads that compute", $"{ComputeThreads.EnvironmentVariable}, else all cores");

    public static readonly CliOption Help = CliOption.Flag("help", "show this help");

    /// <summary>The weights decoding reads: fp32, or bfloat16 copies (half the bytes per token).</summary>
    public static readonly CliOption Dtype = CliOption.Valued("dtype", "fp32|bf16",
        "the weights decoding reads: bf16 copies halve the bytes per token (prompts and analysis stay fp32)", "fp32") with
    { Choices = ["fp32", "bf16"] };

    /// <summary>How products with quantized GGUF matrices take their input: fp32, or quantized to 8 bits (llama.cpp's way).</summary>
    public static readonly CliOption Activations = CliOption.Valued("activations", "fp32|q8",
        "how products with Q8_0/Q4_K/Q5_K/Q6_K matrices (GGUF files) take their input: q8 quantizes it to 8 bits per block and "
        + "multiplies in integers, as llama.cpp does (faster; the results move by the rounding); other weights ignore it", "fp32") with
    { Choices = ["fp32", "q8"] };

    /// <summary>The input of the commands that run a model on one text: exactly one of --text and --ids.</summary>
    public static CliOption[] Input(string textName = "text", bool required = true) =>
    [
        CliOption.Valued(textName, "TEXT", "the input text, encoded by the model's own tokenizer") with { Group = "input", Required = required },
        CliOption.Valued("ids", "1,2,3", "the input as token ids instead of text") with { Group = "input", Required = required },
    ];
}
