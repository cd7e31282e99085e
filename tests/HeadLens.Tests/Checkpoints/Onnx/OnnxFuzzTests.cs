using HeadLens.Checkpoints;
using HeadLens.Checkpoints.Onnx;

namespace HeadLens.Tests.Checkpoints.Onnx;

/// <summary>
/// A small BERT graph exported by torch.onnx (tests/reference/bert_onnx.py, the tiny-bert fixture's weights): it maps
/// to the same encoder as the Hugging Face directory, and thousands of mutants of it are refused with one line or
/// load — never another exception, never a hang, never an allocation out of proportion to the file.
/// </summary>
public class OnnxFuzzTests
{
    private static readonly string Models = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models");

    [Fact]
    public void TheExportedGraphIsTheHuggingFaceEncoder()
    {
        var (fromOnnx, _) = ModelFiles.Load(Path.Combine(Models, "tiny-bert-onnx", "model.onnx"));
        var (fromDirectory, _) = ModelFiles.Load(Path.Combine(Models, "tiny-bert"));
        Assert.Equal(fromDirectory.Config, fromOnnx.Config);
        Assert.Equal(fromDirectory.Parameters.Arena.All.ToArray(), fromOnnx.Parameters.Arena.All.ToArray());
    }

    [Fact]
    public void MutantsAreRefusedInOneLineOrLoad()
    {
        byte[] original = File.ReadAllBytes(Path.Combine(Models, "tiny-bert-onnx", "model.onnx"));
        var random = new Random(61);
        int refused = 0, loaded = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (int trial = 0; trial < 3000; trial++)
        {
            byte[] mutant = Mutate(original, random);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                _ = OnnxModels.ToTransformer(BertGraphMapper.Map(OnnxReader.Parse(mutant, "mutant.onnx")), "mutant.onnx");
                loaded++;
            }
            catch (HeadLensException error)
            {
                Assert.DoesNotContain('\n', error.Message);
                refused++;
            }

            // The weights are read once as floats and copied into the model's arena: a few times the file, never more.
            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated < (8L * mutant.Length) + (4 << 20), $"trial {trial}: {allocated:N0} bytes allocated for a {mutant.Length:N0}-byte file");
        }

        Assert.True(clock.Elapsed.TotalSeconds < 120, $"3000 mutants took {clock.Elapsed.TotalSeconds:F0} s");
        Assert.True(refused > 1000, $"only {refused} of 3000 mutants refused ({loaded} loaded)");
    }

    // Flipped bytes, a truncation, a span zeroed or set to 0xFF (varint lengths and tags run wild), or a copied span.
    private static byte[] Mutate(byte[] original, Random random)
    {
        byte[] bytes = (byte[])original.Clone();
        switch (random.Next(5))
        {
            case 0:
                for (int i = random.Next(1, 5); i > 0; i--)
                {
                    bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                }

                return bytes;
            case 1:
                return bytes[..random.Next(bytes.Length)];
            case 2:
            case 3:
                int start = random.Next(bytes.Length), length = Math.Min(random.Next(1, 9), bytes.Length - start);
                bytes.AsSpan(start, length).Fill(random.Next(2) == 0 ? (byte)0 : (byte)0xFF);
                return bytes;
            default:
                int from = random.Next(bytes.Length), to = random.Next(bytes.Length), count = Math.Min(random.Next(1, 33), Math.Min(bytes.Length - from, bytes.Length - to));
                bytes.AsSpan(from, count).CopyTo(bytes.AsSpan(to, count));
                return bytes;
        }
    }
}
