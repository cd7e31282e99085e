using System.Text;
using HeadLens.Checkpoints.Onnx;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Checkpoints.Onnx;

/// <summary>Broken copies of the real MiniLM graph: each is refused with one line naming what is wrong.</summary>
public sealed class OnnxBadInputTests
{
    private static string Refusal(byte[] bytes)
    {
        var error = Assert.Throws<HeadLensException>(() => BertGraphMapper.Map(OnnxReader.Parse(bytes, "bad.onnx")));
        Assert.DoesNotContain('\n', error.Message);
        Assert.StartsWith("bad.onnx", error.Message, StringComparison.Ordinal);
        return error.Message;
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    [InlineData(1_000_000)]
    [InlineData(90_000_000)]
    public void TruncatedFile(int length)
    {
        string message = Refusal(MiniLm.Bytes[..Math.Min(length, MiniLm.Bytes.Length - 1)]);
        Assert.True(message.Contains("no graph", StringComparison.Ordinal) || message.Contains("remain", StringComparison.Ordinal)
            || message.Contains("truncated", StringComparison.Ordinal), message);
    }

    [Fact]
    public void MissingInitializer()
    {
        // Rename the initializer (its last occurrence: initializers follow the nodes that use them).
        byte[] bytes = Edit("encoder.layer.0.attention.self.query.bias", "encoder.layer.0.attention.self.query.biax", last: true);
        Assert.Contains("bias", Refusal(bytes), StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownOpInTheAttentionPath()
    {
        // Every Softmax becomes a Hardmax (same length, so nothing else moves).
        string message = Refusal(Edit("\"\u0007Softmax", "\"\u0007Hardmax", last: false));
        Assert.Contains("Hardmax", message, StringComparison.Ordinal);
        Assert.Contains("unexpected op", message, StringComparison.Ordinal);
    }

    [Fact]
    public void WrongShape()
    {
        // The position table's dims [512, 384] (varints 0x80 0x04, 0x80 0x03) become [512, 383]: its data no longer fits.
        byte[] name = Encoding.UTF8.GetBytes("embeddings.position_embeddings.weight");
        byte[] bytes = (byte[])MiniLm.Bytes.Clone();
        int at = bytes.AsSpan().LastIndexOf(name);
        int dims = bytes.AsSpan(0, at).LastIndexOf((ReadOnlySpan<byte>)[0x08, 0x80, 0x04, 0x08, 0x80, 0x03]);
        Assert.True(dims > 0 && at - dims < 64);
        bytes[dims + 4] = 0xFF;
        bytes[dims + 5] = 0x02;
        Assert.Contains("shape [512, 383]", Refusal(bytes), StringComparison.Ordinal);
    }

    private static byte[] Edit(string from, string to, bool last)
    {
        byte[] bytes = (byte[])MiniLm.Bytes.Clone();
        byte[] a = Encoding.UTF8.GetBytes(from), b = Encoding.UTF8.GetBytes(to);
        int found = 0;
        for (int at = last ? bytes.AsSpan().LastIndexOf(a) : bytes.AsSpan().IndexOf(a); at >= 0;
            at = last ? -1 : bytes.AsSpan(at + 1).IndexOf(a) is int next and >= 0 ? at + 1 + next : -1)
        {
            b.CopyTo(bytes, at);
            found++;
        }

        Assert.True(found > 0, $"'{from}' not found");
        return bytes;
    }
}
