using System.Buffers.Binary;
using System.Runtime.InteropServices;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Checkpoints;

public sealed class Llama2cFileTests : IDisposable
{
    private static readonly string Real = Path.Combine(AppContext.BaseDirectory, "Fixtures", "llama2c", "llama2c-260k.bin");
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-l2c-" + Guid.NewGuid().ToString("N"));

    public Llama2cFileTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void RealFileHeaderShapesAndSizeAgree()
    {
        // The facts ../shared/models/README.md states for this file: dim 64, hidden 172, 5 layers, 8 heads, 4 kv heads,
        // vocab 512 (shared classifier), seq_len 512, 1,056,540 bytes.
        using var file = Llama2cFile.Read(Real);
        Assert.Equal(new Llama2cHeader(64, 172, 5, 8, 4, 512, true, 512), file.Header);
        Assert.Equal(new FileInfo(Real).Length, file.Header.FileLength);
        Assert.Equal(1_056_540, file.Header.FileLength);
        Assert.Equal(1 + 9 * 5 + 1, file.Entries.Count); // embedding, 9 per layer, final norm; no lm_head (shared)
        Assert.DoesNotContain("lm_head.weight", file.Entries.Keys);
        Assert.Equal([512, 64], file.Entries["model.embed_tokens.weight"].Shape);
        Assert.Equal([32, 64], file.Entries["model.layers.4.self_attn.k_proj.weight"].Shape);
        Assert.Equal([172, 64], file.Entries["model.layers.0.mlp.gate_proj.weight"].Shape);
        Assert.Equal([64, 172], file.Entries["model.layers.3.mlp.down_proj.weight"].Shape);

        // The tensors tile the file from the header to the RoPE tables without gaps, and the tables fill the rest.
        long end = Llama2cHeader.Bytes;
        foreach (var info in file.Entries.Values.OrderBy(e => e.Offset))
        {
            Assert.Equal(end, info.Offset);
            end = info.Offset + info.Length;
        }

        Assert.Equal(file.Header.FileLength, end + 2 * 4 * file.Header.RopeTableLength);

        // Trained RMSNorm gains sit near 1 (README); a misplaced offset would read attention weights (near 0) here.
        var norm = new float[64];
        file.ReadFloat32("model.norm.weight", norm);
        Assert.InRange(norm.Average(), 0.3, 3);
    }

    [Fact]
    public void NamedTensorsAreTheWeightsTheModelLoads()
    {
        var model = Llama2cFile.Load(Real);
        using var file = Llama2cFile.Read(Real);
        for (int l = 0; l < 5; l++)
        {
            var layer = model.Parameters.Layer(l);
            AssertTensor(file, $"model.layers.{l}.self_attn.q_proj.weight", layer.Query.Span);
            AssertTensor(file, $"model.layers.{l}.self_attn.v_proj.weight", layer.Value.Span);
            AssertTensor(file, $"model.layers.{l}.mlp.up_proj.weight", layer.Up!.Span);
            AssertTensor(file, $"model.layers.{l}.post_attention_layernorm.weight", layer.MlpNorm!.Span);
        }

        AssertTensor(file, "model.embed_tokens.weight", model.Parameters.TokenEmbedding.Span);
        AssertTensor(file, "model.norm.weight", model.Parameters.FinalNorm.Span);
    }

    [Fact]
    public void UnsharedClassifierFollowsTheRopeTables()
    {
        // A synthetic file: dim 8, hidden 12, 2 layers, 4 heads, 2 kv heads, vocab -10 (unshared), seq_len 3; every
        // float is its own index in the file, so each tensor's first value tells where it was read from.
        int[] header = [8, 12, 2, 4, 2, -10, 3];
        var layout = new Llama2cHeader(8, 12, 2, 4, 2, 10, false, 3);
        string path = WriteFile("unshared.bin", header, (int)((layout.FileLength - Llama2cHeader.Bytes) / 4));
        using var file = Llama2cFile.Read(path);
        Assert.Equal(layout, file.Header);
        var head = new float[10 * 8];
        file.ReadFloat32("lm_head.weight", head);
        int floats = (int)((layout.FileLength - Llama2cHeader.Bytes) / 4);
        Assert.Equal(floats - head.Length, head[0]); // the classifier is the last V·dim floats
        var wk = new float[4 * 8];
        file.ReadFloat32("model.layers.1.self_attn.k_proj.weight", wk);
        // embedding 80, rms_att 2·8, wq 2·64, wk layer 0 = 32 floats: layer 1's wk starts at float 80+16+128+32.
        Assert.Equal(80 + 16 + 128 + 32, wk[0]);
        var model = Llama2cFile.Load(path);
        Assert.False(model.Config.TiedEmbeddings);
        Assert.Equal(head, model.Parameters.OutputHead.Span.ToArray());
    }

    public static TheoryData<int[], string> LyingHeaders() => new()
    {
        { [64, 172, 5000, 8, 4, 512, 512], "header describes" },              // layers: far more than the file
        { [64, 172, 5, 8, 4, -512, 512], "header describes" },                 // an unshared classifier the file lacks
        { [64, 172, 5, 8, 3, 512, 512], "n_kv_heads must divide" },
        { [64, 172, 5, 7, 7, 512, 512], "even head size" },
        { [64, 172, 5, 8, 4, int.MinValue, 512], "positive" },
        { [64, 0, 5, 8, 4, 512, 512], "positive" },
        { [1 << 30, int.MaxValue, int.MaxValue, 1, 1, int.MaxValue, int.MaxValue], "header describes" }, // sizes past 2^64 bytes
    };

    [Theory]
    [MemberData(nameof(LyingHeaders))]
    public void LyingHeadersAreRefusedBeforeAnyAllocation(int[] header, string expected)
    {
        byte[] bytes = File.ReadAllBytes(Real);
        MemoryMarshal.AsBytes(header.AsSpan()).CopyTo(bytes);
        string path = Path.Combine(directory, "lying.bin");
        File.WriteAllBytes(path, bytes);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<HeadLensException>(() => Llama2cFile.Read(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "nothing allocated from a lying header");
        Assert.Contains("lying.bin", error.Message);
        Assert.Contains(expected, error.Message);
        Assert.Contains("lying.bin", Assert.Throws<HeadLensException>(() => Llama2cFile.Load(path)).Message);
    }

    [Fact]
    public void RandomHeadersNeverCrashOrOverAllocate()
    {
        // Fuzz the seven fields (small values, edge values, and random ones) over a file of fixed size: every result
        // is a valid layout of exactly that size, or a HeadLensException.
        var random = new Random(5);
        int[] edges = [0, 1, -1, 2, 64, int.MaxValue, int.MinValue, 1 << 16, -(1 << 16)];
        string path = Path.Combine(directory, "fuzz.bin");
        for (int trial = 0; trial < 2000; trial++)
        {
            int[] header = new int[7];
            for (int i = 0; i < 7; i++)
            {
                header[i] = random.Next(3) switch { 0 => edges[random.Next(edges.Length)], 1 => random.Next(-4, 70), _ => random.Next(int.MinValue, int.MaxValue) };
            }

            int floats = trial % 2 == 0 ? 300 : random.Next(0, 4000);
            string file = WriteFile("fuzz.bin", header, floats);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var checkpoint = Llama2cFile.Read(file);
                Assert.Equal(new FileInfo(path).Length, checkpoint.Header.FileLength);
            }
            catch (HeadLensException error)
            {
                Assert.Contains("fuzz.bin", error.Message);
            }

            Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, $"trial {trial}: allocation bounded");
        }

        // A header that fits by chance is rare; a fixed valid one makes sure the accepting branch runs.
        var valid = new Llama2cHeader(4, 4, 1, 2, 1, 3, true, 2);
        using (var checkpoint = Llama2cFile.Read(WriteFile("fuzz.bin", [4, 4, 1, 2, 1, 3, 2], (int)((valid.FileLength - 28) / 4))))
        {
            Assert.Equal(valid, checkpoint.Header);
        }
    }

    private static void AssertTensor(Llama2cCheckpoint file, string name, ReadOnlySpan<float> expected)
    {
        var values = new float[expected.Length];
        file.ReadFloat32(name, values);
        Assert.True(expected.SequenceEqual(values), name);
    }

    private string WriteFile(string name, int[] header, int floats)
    {
        var bytes = new byte[28 + 4 * floats];
        for (int i = 0; i < 7; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4 * i), header[i]);
        }

        for (int i = 0; i < floats; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(28 + 4 * i), i);
        }

        string path = Path.Combine(directory, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
