using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Checkpoints;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-st-" + Guid.NewGuid().ToString("N"));

    public SafeTensorsTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void WriterProducesSortedAlignedSpacePaddedFilesThatReadBack()
    {
        var random = new Random(1);
        float[] a = Enumerable.Range(0, 35).Select(_ => (float)random.NextDouble()).ToArray();
        float[] b = Enumerable.Range(0, 3).Select(_ => (float)random.NextDouble()).ToArray();
        string path = Path.Combine(directory, "model.safetensors");
        SafeTensorsWriter.Write(path, [("z.weight", [5, 7], a), ("a.bias", [3], b), ("empty", [0, 4], Array.Empty<float>())],
            new Dictionary<string, string> { ["format"] = "pt" });

        byte[] bytes = File.ReadAllBytes(path);
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(bytes);
        Assert.Equal(0, headerLength % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)headerLength);
        Assert.Equal(header.TrimEnd(), header.TrimEnd(' ')); // padding is spaces only
        using (var document = JsonDocument.Parse(header))
        {
            var names = document.RootElement.EnumerateObject().Select(p => p.Name).ToArray();
            Assert.Equal(["__metadata__", "a.bias", "empty", "z.weight"], names);
            Assert.Equal("pt", document.RootElement.GetProperty("__metadata__").GetProperty("format").GetString());
        }

        Assert.Equal(8 + headerLength + 4 * (a.Length + b.Length), bytes.Length);
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal([5, 7], file.Entries["z.weight"].Shape);
        var values = new float[35];
        file.ReadFloat32("z.weight", values);
        Assert.Equal(a, values);
        file.ReadFloat32("empty", []);
        Assert.Equal([path], Directory.GetFiles(directory)); // no temporary file left behind
    }

    [Fact]
    public void HalfPrecisionRoundTripsAndBf16RoundsToNearestEven()
    {
        // 1 + 2^-8 lies exactly halfway between the bf16 neighbours 1 and 1 + 2^-7: ties go to the even mantissa (1);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: the even one is 1 + 2^-6.
        float[] values = [1.5f, -0.25f, 3f, 0f, 1 + MathF.Pow(2, -8), 1 + 3 * MathF.Pow(2, -8), float.NaN, float.PositiveInfinity];
        string path = Path.Combine(directory, "half.safetensors");
        SafeTensorsWriter.Write(path, [("x", [values.Length], values)], null, SafeTensorsDType.BF16);
        using (var file = SafeTensorsFile.Open(path))
        {
            Assert.Equal("BF16", file.Entries["x"].DType);
            var read = new float[values.Length];
            file.ReadFloat32("x", read);
            Assert.Equal([1.5f, -0.25f, 3f, 0f, 1f, 1 + MathF.Pow(2, -6)], read[..6]);
            Assert.True(float.IsNaN(read[6]) && float.IsPositiveInfinity(read[7]));
        }

        SafeTensorsWriter.Write(path, [("x", [values.Length], values)], null, SafeTensorsDType.F16);
        using (var file = SafeTensorsFile.Open(path))
        {
            var read = new float[values.Length];
            file.ReadFloat32("x", read);
            Assert.Equal(values.Select(v => (float)(Half)v).ToArray(), read);
        }
    }

    [Fact]
    public void LongHalfPrecisionTensorsConvertAcrossChunksAndOddLengths()
    {
        // Lengths around the reader's 2^20-value conversion chunk and the SIMD widths; every value is exact in bf16
        // (8 significant bits) and in f16 (11): k/64 with |k| ≤ 256, so the comparison is exact.
        foreach (int length in new[] { 1, 31, 33, 65_537, 1_048_575, 1_048_576, 1_048_579 })
        {
            float[] values = Enumerable.Range(0, length).Select(i => (i % 512 - 256) / 64f).ToArray();
            foreach (var dtype in new[] { SafeTensorsDType.BF16, SafeTensorsDType.F16 })
            {
                string path = Path.Combine(directory, $"long-{dtype}.safetensors");
                SafeTensorsWriter.Write(path, [("x", [length], values)], null, dtype);
                using var file = SafeTensorsFile.Open(path);
                var read = new float[length];
                file.ReadFloat32("x", read);
                Assert.Equal(values, read);
            }
        }
    }

    [Fact]
    public void WriterRefusesMismatchedShapesAndKeepsThePreviousFile()
    {
        string path = Path.Combine(directory, "model.safetensors");
        SafeTensorsWriter.Write(path, [("w", [2], new float[] { 1, 2 })]);
        byte[] before = File.ReadAllBytes(path);
        var error = Assert.Throws<HeadLensException>(() => SafeTensorsWriter.Write(path, [("w", [3], new float[] { 1, 2 })]));
        Assert.Contains("'w'", error.Message);
        Assert.Throws<HeadLensException>(() => SafeTensorsWriter.Write(path, [("w", [1], new float[] { 1 }), ("w", [1], new float[] { 2 })]));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(directory)); // no temporary file left behind
    }

    public static TheoryData<string, string[]> BadFiles() => new()
    {
        { "truncated", ["truncated.safetensors", "truncated"] },
        { "header-past-end", ["header-past-end.safetensors", "past the end"] },
        { "not-json", ["not-json.safetensors", "malformed JSON"] },
        { "not-object", ["not-object.safetensors", "not a JSON object"] },
        { "unknown-dtype", ["unknown-dtype.safetensors", "'w'", "I64"] },
        { "overlap", ["overlap.safetensors", "'a'", "'b'", "overlaps"] },
        { "out-of-range", ["out-of-range.safetensors", "'a'", "outside the data section"] },
        { "negative-offset", ["negative-offset.safetensors", "'a'", "outside the data section"] },
        { "shape-mismatch", ["shape-mismatch.safetensors", "'a'", "[3]", "8 bytes"] },
        { "missing-field", ["missing-field.safetensors", "'a'", "malformed entry"] },
        { "nan", ["nan.safetensors", "'weights'", "NaN", "element 5"] },
        { "missing-tensor", ["missing-tensor.safetensors", "'nope'"] },
    };

    /// <summary>Each kind of broken file gets one line naming the file and, where there is one, the tensor.</summary>
    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadFilesGetOneLineNamingFileAndTensor(string kind, string[] expected)
    {
        string path = Path.Combine(directory, kind + ".safetensors");
        const string Two = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":";
        byte[] bytes = kind switch
        {
            "truncated" => [1, 2, 3],
            "header-past-end" => Lengthed(1000, 16),
            "not-json" => Build("{\"a\": [", 0),
            "not-object" => Build("[1, 2]", 0),
            "unknown-dtype" => Build("{\"w\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8),
            "overlap" => Build("{\"a\":" + Two + "[0,8]},\"b\":" + Two + "[4,12]}}", 12),
            "out-of-range" => Build("{\"a\":" + Two + "[0,8]}}", 4),
            "negative-offset" => Build("{\"a\":" + Two + "[-8,0]}}", 8),
            "shape-mismatch" => Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8),
            "missing-field" => Build("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8),
            _ => [],
        };
        string message;
        if (kind is "nan" or "missing-tensor")
        {
            float[] weights = Enumerable.Range(0, 100_000).Select(i => i * 1e-3f).ToArray();
            weights[5] = float.NaN;
            SafeTensorsWriter.Write(path, [("weights", [weights.Length], weights)]);
            using var file = SafeTensorsFile.Open(path);
            message = Assert.Throws<HeadLensException>(() =>
            {
                if (kind == "nan")
                {
                    file.ValidateFinite("weights");
                }
                else
                {
                    file.ReadFloat32("nope", new float[1]);
                }
            }).Message;
        }
        else
        {
            File.WriteAllBytes(path, bytes);
            message = Assert.Throws<HeadLensException>(() => SafeTensorsFile.Open(path).Dispose()).Message;
        }

        Assert.DoesNotContain('\n', message);
        foreach (string part in expected)
        {
            Assert.Contains(part, message);
        }
    }

    [Fact]
    public void NanDeepInsideALargeTensorIsFoundAcrossValidationChunks()
    {
        float[] weights = new float[200_003];
        weights[^1] = float.NegativeInfinity;
        string path = Path.Combine(directory, "deep.safetensors");
        SafeTensorsWriter.Write(path, [("w", [weights.Length], weights), ("ok", [3], new float[] { 1, 2, 3 })], null, SafeTensorsDType.BF16);
        using var file = SafeTensorsFile.Open(path);
        file.ValidateFinite("ok");
        Assert.Contains("element 200002", Assert.Throws<HeadLensException>(() => file.ValidateFinite("w")).Message);
    }

    [Fact]
    public void AHugeHeaderLengthIsRefusedWithoutAllocatingIt()
    {
        // A sparse 200 MB file (no disk used) whose header claims 150 MB: within the file, past the 100 MB bound.
        string path = Path.Combine(directory, "huge.safetensors");
        using (var stream = File.Create(path))
        {
            stream.SetLength(200L << 20);
            stream.Write(Lengthed(150L << 20, 8));
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<HeadLensException>(() => SafeTensorsFile.Open(path));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "the header must not be allocated before its length is checked");
        Assert.Contains("huge.safetensors", error.Message);
    }

    private static byte[] Lengthed(long headerLength, int size)
    {
        var bytes = new byte[size];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, headerLength);
        return bytes;
    }

    private static byte[] Build(string header, int dataBytes)
    {
        byte[] json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BinaryPrimitives.WriteInt64LittleEndian(bytes, json.Length);
        json.CopyTo(bytes, 8);
        return bytes;
    }
}
