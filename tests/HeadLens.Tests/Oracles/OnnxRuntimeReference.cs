using System.Text;
using HeadLens.Checkpoints.Onnx;
using Microsoft.ML.OnnxRuntime;

namespace HeadLens.Tests.Oracles;

/// <summary>
/// ONNX Runtime running a BERT-family ONNX graph: the independent reference for the ONNX mapping and for HeadLens's
/// encoder. Besides <c>last_hidden_state</c> it returns every layer's attention probabilities: the Softmax outputs
/// (named by <see cref="BertOnnxCheckpoint.AttentionProbabilityOutputs"/>) are made graph outputs by appending to the
/// ModelProto's bytes a second <c>graph</c> field that holds only those <c>output</c> entries — protobuf merges a
/// repeated singular message field, so the parser sees the original graph with the outputs added; nothing is
/// re-serialised. Batches are right-padded with [PAD] = 0 and an attention mask of 0s.
/// </summary>
internal sealed class OnnxRuntimeReference : IDisposable
{
    private readonly InferenceSession session;
    private readonly BertOnnxCheckpoint model;

    public OnnxRuntimeReference(byte[] onnx, BertOnnxCheckpoint model)
    {
        this.model = model;
        using var options = new SessionOptions { IntraOpNumThreads = 2, GraphOptimizationLevel = GraphOptimizationLevel.ORT_DISABLE_ALL };
        session = new InferenceSession(WithOutputs(onnx, model.AttentionProbabilityOutputs), options);
    }

    /// <param name="Hidden">last_hidden_state [B, T, C] (T = the longest sequence).</param>
    /// <param name="Probabilities">per layer [B, H, T, T].</param>
    public sealed record Result(int Batch, int Tokens, float[] Hidden, float[][] Probabilities);

    /// <summary>Runs a batch of id sequences (token types all 0 unless given), right-padded to the longest.</summary>
    public Result Run(int[][] ids, int[][]? tokenTypes = null)
    {
        int batch = ids.Length, tokens = ids.Max(s => s.Length);
        var inputIds = new long[batch * tokens];
        var mask = new long[batch * tokens];
        var types = new long[batch * tokens];
        for (int b = 0; b < batch; b++)
        {
            for (int i = 0; i < ids[b].Length; i++)
            {
                inputIds[b * tokens + i] = ids[b][i];
                mask[b * tokens + i] = 1;
                types[b * tokens + i] = tokenTypes?[b][i] ?? 0;
            }
        }

        long[] shape = [batch, tokens];
        var names = new List<string> { model.InputIdsName };
        var values = new List<OrtValue> { OrtValue.CreateTensorValueFromMemory(inputIds, shape) };
        if (model.AttentionMaskName is { } maskName)
        {
            names.Add(maskName);
            values.Add(OrtValue.CreateTensorValueFromMemory(mask, shape));
        }

        if (model.TokenTypeIdsName is { } typeName)
        {
            names.Add(typeName);
            values.Add(OrtValue.CreateTensorValueFromMemory(types, shape));
        }

        try
        {
            string[] outputs = [model.LastHiddenStateName, .. model.AttentionProbabilityOutputs];
            using var runOptions = new RunOptions();
            using var results = session.Run(runOptions, names, values, outputs);
            return new Result(batch, tokens, results[0].GetTensorDataAsSpan<float>().ToArray(),
                results.Skip(1).Select(r => r.GetTensorDataAsSpan<float>().ToArray()).ToArray());
        }
        finally
        {
            foreach (var value in values)
            {
                value.Dispose();
            }
        }
    }

    public void Dispose() => session.Dispose();

    /// <summary>The model's bytes followed by ModelProto.graph (7) { output (12) { name (1), type (2) { tensor_type (1) { elem_type (1) = FLOAT } } } }.</summary>
    public static byte[] WithOutputs(byte[] onnx, IEnumerable<string> outputs)
    {
        var graph = new List<byte>();
        foreach (string name in outputs)
        {
            byte[] type = Field(1, [0x08, 0x01]); // TypeProto { tensor_type { elem_type = 1 } }
            byte[] valueInfo = [.. Field(1, Encoding.UTF8.GetBytes(name)), .. Field(2, type)];
            graph.AddRange(Field(12, valueInfo));
        }

        return [.. onnx, .. Field(7, [.. graph])];
    }

    /// <summary>One length-delimited protobuf field: key, varint length, bytes.</summary>
    public static byte[] Field(int number, byte[] payload) => [.. Varint((ulong)(number << 3 | 2)), .. Varint((ulong)payload.Length), .. payload];

    public static byte[] Varint(ulong value)
    {
        var bytes = new List<byte>();
        while (value >= 0x80)
        {
            bytes.Add((byte)(value | 0x80));
            value >>= 7;
        }

        bytes.Add((byte)value);
        return [.. bytes];
    }
}
