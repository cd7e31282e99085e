using System.Buffers.Binary;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Checkpoints;

public sealed class FuzzTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-fuzz-" + Guid.NewGuid().ToString("N"));

    public FuzzTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    /// <summary>
    /// Thousands of mutated safetensors files — byte flips in the header and data, truncations, lying header lengths,
    /// edits of the JSON text — opened and read in full: each either loads or fails with a HeadLensException, never
    /// another exception, never a hang, never an allocation beyond the file's size.
    /// </summary>
    [Fact]
    public void MutatedFilesNeverCrashHangOrOverAllocate()
    {
        byte[] original = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2", "model.safetensors"));
        int headerLength = (int)BinaryPrimitives.ReadInt64LittleEndian(original);
        var random = new Random(2026);
        string path = Path.Combine(directory, "mutant.safetensors");
        int refused = 0, loaded = 0;
        string[] edits = ["\"F32\"", "\"F16\"", "\"I8\"", "[", "]", ",", "0", "99999999999", "-1", "\"shape\"", "{}", "null"];
        for (int trial = 0; trial < 2000; trial++)
        {
            byte[] mutant = (byte[])original.Clone();
            switch (trial % 5)
            {
                case 0: // flip bytes inside the header
                    for (int i = 0; i < 1 + random.Next(4); i++)
                    {
                        mutant[8 + random.Next(headerLength)] ^= (byte)(1 << random.Next(8));
                    }

                    break;
                case 1: // truncate anywhere
                    mutant = mutant[..random.Next(mutant.Length)];
                    break;
                case 2: // lie about the header length
                    BinaryPrimitives.WriteInt64LittleEndian(mutant, random.Next(4) switch
                    {
                        0 => long.MaxValue,
                        1 => -random.Next(1000),
                        2 => random.Next(mutant.Length * 2),
                        _ => headerLength + random.Next(-20, 20),
                    });
                    break;
                case 3: // replace a JSON fragment
                    {
                        string header = System.Text.Encoding.UTF8.GetString(mutant, 8, headerLength);
                        int at = random.Next(header.Length);
                        int cut = Math.Min(header.Length - at, random.Next(1, 12));
                        string edited = header[..at] + edits[random.Next(edits.Length)] + header[(at + cut)..];
                        byte[] json = System.Text.Encoding.UTF8.GetBytes(edited);
                        mutant = new byte[8 + json.Length + original.Length - 8 - headerLength];
                        BinaryPrimitives.WriteInt64LittleEndian(mutant, json.Length);
                        json.CopyTo(mutant, 8);
                        original.AsSpan(8 + headerLength).CopyTo(mutant.AsSpan(8 + json.Length));
                        break;
                    }

                default: // flip bytes in the data (NaNs and infinities appear)
                    for (int i = 0; i < 8; i++)
                    {
                        mutant[8 + headerLength + random.Next(mutant.Length - 8 - headerLength)] = 0xFF;
                    }

                    break;
            }

            File.WriteAllBytes(path, mutant);
            long before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                using var file = SafeTensorsFile.Open(path);
                foreach (var entry in file.Entries.Values)
                {
                    var values = new float[entry.ElementCount];
                    file.ReadFloat32(entry.Name, values);
                    file.ValidateFinite(entry.Name, values);
                }

                loaded++;
            }
            catch (HeadLensException error)
            {
                Assert.Contains("mutant.safetensors", error.Message);
                refused++;
            }

            long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            Assert.True(allocated < 4L * mutant.Length + (1 << 20), $"trial {trial}: {allocated} bytes allocated for a {mutant.Length}-byte file");
        }

        Assert.True(refused > 1000 && loaded > 0, $"refused {refused}, loaded {loaded}");
    }
}
