using System.Buffers.Binary;
using HeadLens.Checkpoints.Gguf;
using HeadLens.Model;

namespace HeadLens.Tests.Checkpoints;

public sealed class GgufFuzzTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-gguf-fuzz-" + Guid.NewGuid().ToString("N"));

    public GgufFuzzTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    /// <summary>
    /// Thousands of mutants of a small valid GGUF (Q8_0 matrices, a tokenizer): byte flips in the header, truncations,
    /// lying counts, lengths, types and offsets, flips in the data. Each is opened, every tensor decoded, and the model
    /// loaded: it loads or fails with a HeadLensException naming the file — never another exception, never a hang,
    /// never an allocation beyond a few times the file's size.
    /// </summary>
    [Fact]
    public void MutatedFilesNeverCrashHangOrOverAllocate()
    {
        var config = ModelPresets.Llama(vocab: 260, context: 16, layers: 1, heads: 2, kvHeads: 1, channels: 32, hidden: 32);
        string source = Path.Combine(directory, "source.gguf");
        GgufWriter.Write(source, Transformer.Create(config, seed: 4), GgufTests.PlaceholderLlamaVocabulary(260), GgufWriteType.Q8_0);
        byte[] original = File.ReadAllBytes(source);
        int headerEnd;
        using (var file = GgufFile.Open(source))
        {
            headerEnd = (int)file.DataOffset;
        }

        var random = new Random(2027);
        string path = Path.Combine(directory, "mutant.gguf");
        int refused = 0, loaded = 0;
        ulong[] lies = [0, 1, 2, 3, 9, 13, 31, 255, 0xFFFF_FFFF, ulong.MaxValue, ulong.MaxValue / 2, 1UL << 40, (ulong)original.Length];
        for (int trial = 0; trial < 3000; trial++)
        {
            byte[] mutant = (byte[])original.Clone();
            switch (trial % 5)
            {
                case 0: // flip bits in the header
                    for (int i = 0; i < 1 + random.Next(4); i++)
                    {
                        mutant[random.Next(headerEnd)] ^= (byte)(1 << random.Next(8));
                    }

                    break;
                case 1: // truncate anywhere
                    mutant = mutant[..random.Next(mutant.Length)];
                    break;
                case 2: // a lying 64-bit field (count, length, dimension, offset) anywhere in the header
                    BinaryPrimitives.WriteUInt64LittleEndian(mutant.AsSpan(random.Next(headerEnd - 8)), lies[random.Next(lies.Length)]);
                    break;
                case 3: // a lying 32-bit field (version, value type, n_dims, ggml type)
                    BinaryPrimitives.WriteUInt32LittleEndian(mutant.AsSpan(random.Next(headerEnd - 4)), (uint)random.Next(-2, 40));
                    break;
                default: // flip bytes in the data (NaN and infinite scales appear)
                    for (int i = 0; i < 8; i++)
                    {
                        mutant[headerEnd + random.Next(mutant.Length - headerEnd)] = 0xFF;
                    }

                    break;
            }

            File.WriteAllBytes(path, mutant);
            long before = GC.GetAllocatedBytesForCurrentThread();
            var started = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                using (var file = GgufFile.Open(path))
                {
                    foreach (var tensor in file.Tensors)
                    {
                        if (tensor.ElementCount <= 4 * mutant.Length)
                        {
                            file.ReadFloat32(tensor, new float[tensor.ElementCount]);
                        }
                    }
                }

                GgufModel.Load(path);
                loaded++;
            }
            catch (HeadLensException error)
            {
                Assert.Contains("mutant.gguf", error.Message);
                Assert.DoesNotContain('\n', error.Message);
                refused++;
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            // The model itself (fp32 weights: 4 bytes per Q8_0 value ≈ 3.8× the file) plus its buffers and the vocabulary.
            Assert.True(allocated < (8L * mutant.Length) + (4 << 20), $"trial {trial}: {allocated} bytes allocated for a {mutant.Length}-byte file");
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(10), $"trial {trial}: {started.Elapsed}");
        }

        Assert.True(refused > 1500 && loaded > 0, $"refused {refused}, loaded {loaded}");
    }
}
