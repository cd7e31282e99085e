namespace HeadLens.Checkpoints;

/// <summary>
/// Named tensors in a checkpoint that can be read as float32: one safetensors file, a (sharded) Hugging Face
/// checkpoint directory, or a llama2.c model file under Hugging Face Llama names.
/// </summary>
public interface ITensorSource
{
    /// <summary>Every tensor by name: dtype, shape and where its bytes lie.</summary>
    IReadOnlyDictionary<string, SafeTensorInfo> Entries { get; }

    /// <summary>Reads a whole tensor, converted to float32; <paramref name="destination"/> holds exactly its elements.</summary>
    void ReadFloat32(string tensorName, Span<float> destination);
}
