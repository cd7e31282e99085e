using System.Buffers.Binary;
using HeadLens.Checkpoints.Gguf;
using HeadLens.Embeddings;
using HeadLens.Kernels.Quantized;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Tests.Checkpoints;

public sealed class GgufTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-gguf-" + Guid.NewGuid().ToString("N"));

    public GgufTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    internal static float[] Logits(Transformer model, int[] ids) => model.Infer(ids, 1, ids.Length).Logits.ToArray();

    /// <summary>A llama-layout vocabulary of <paramref name="size"/> tokens: &lt;unk&gt;, BOS, EOS, the 256 byte tokens, then placeholders.</summary>
    internal static GgufTokenizer PlaceholderLlamaVocabulary(int size)
    {
        var tokens = new List<string> { "<unk>", "<s>", "</s>" };
        var types = new List<int> { GgufVocabulary.Unknown, GgufVocabulary.Control, GgufVocabulary.Control };
        for (int b = 0; b < 256; b++)
        {
            tokens.Add($"<0x{b:X2}>");
            types.Add(GgufVocabulary.Byte);
        }

        for (int id = tokens.Count; id < size; id++)
        {
            tokens.Add($"\u2581tok{id}");
            types.Add(GgufVocabulary.Normal);
        }

        var vocabulary = new GgufVocabulary("llama", tokens)
        {
            Scores = tokens.Select((_, id) => -(float)id).ToArray(),
            TokenTypes = types,
            BosId = 1,
            EosId = 2,
            UnknownId = 0,
            AddBos = true,
        };
        return GgufTokenizer.Create(vocabulary);
    }

    internal static ModelConfig SmallLlama(int vocab = 300) =>
        ModelPresets.Llama(vocab, context: 64, layers: 2, heads: 4, kvHeads: 2, channels: 32, hidden: 64);

    public static TheoryData<string> Families => ["llama", "llama3", "qwen2", "gpt2", "gpt2-untied"];

    internal static ModelConfig Family(string name) => name switch
    {
        "llama" => SmallLlama(),
        "llama3" => SmallLlama() with
        {
            Rope = new RopeSettings(500000f) { Scaling = RopeScaling.Llama3, ScalingFactor = 8, LowFrequencyFactor = 1, HighFrequencyFactor = 4, OriginalContext = 32 },
        },
        "qwen2" => ModelPresets.Qwen2(300, 64, 2, 4, 2, 32, 64),
        "gpt2" => ModelPresets.Gpt2(300, 64, 2, 4, 32),
        _ => ModelPresets.Gpt2(300, 64, 2, 4, 32) with { TiedEmbeddings = false },
    };

    [Theory]
    [MemberData(nameof(Families))]
    public void WrittenF32FileLoadsToTheSameLogits(string family)
    {
        var model = Transformer.Create(Family(family), seed: 5);
        string path = Path.Combine(directory, family + ".gguf");
        GgufWriter.Write(path, model, null);
        var (loaded, tokenizer) = GgufModel.Load(path);
        Assert.Null(tokenizer);
        Assert.Equal(model.Config.Layout, loaded.Config.Layout);
        Assert.Equal(model.Config.TiedEmbeddings, loaded.Config.TiedEmbeddings);
        Assert.Equal(model.Config.Biases, loaded.Config.Biases);
        Assert.Equal(model.Config.Rope.Scaling, loaded.Config.Rope.Scaling);
        // Llama's Q/K rows are stored interleaved (llama.cpp's order) and loaded as such: the layout changes, the logits do not.
        Assert.Equal(family.StartsWith("llama", StringComparison.Ordinal) ? RopeLayout.Interleaved : RopeLayout.SplitHalves, loaded.Config.Rope.Layout);
        int[] ids = [1, 17, 42, 299, 5, 5, 123, 7, 250, 3, 60];
        var expected = Logits(model, ids);
        var actual = Logits(loaded, ids);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * (1 + Math.Abs(expected[i])), $"{family} logit {i}: {actual[i]} vs {expected[i]}");
        }

        // And back: the interleaved model writes the same bytes (no double permutation).
        string again = Path.Combine(directory, family + "-again.gguf");
        GgufWriter.Write(again, loaded, null);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    [Theory]
    [InlineData(GgufWriteType.F16, GgmlType.F16, 2e-3)]
    [InlineData(GgufWriteType.Q8_0, GgmlType.Q8_0, 2e-2)]
    public void SixteenBitAndQ8_0FilesStoreMatricesInThatType(GgufWriteType type, GgmlType ggml, double tolerance)
    {
        var model = Transformer.Create(SmallLlama(), seed: 9);
        string path = Path.Combine(directory, $"{type}.gguf");
        GgufWriter.Write(path, model, PlaceholderLlamaVocabulary(300), type);
        using (var file = GgufFile.Open(path))
        {
            Assert.Equal(ggml, file.Tensor("blk.1.attn_q.weight").Type);
            Assert.Equal(ggml, file.Tensor("token_embd.weight").Type);
            Assert.Equal(GgmlType.F32, file.Tensor("blk.1.attn_norm.weight").Type); // vectors stay F32
        }

        var (loaded, _) = GgufModel.Load(path);
        int[] ids = [1, 100, 200, 7];
        var expected = Logits(model, ids);
        var actual = Logits(loaded, ids);
        double scale = expected.Max(Math.Abs);
        Assert.All(Enumerable.Range(0, expected.Length), i => Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * scale, $"logit {i}: {actual[i]} vs {expected[i]}"));
    }

    [Fact]
    public void MetadataOfEveryTypeIsRead()
    {
        string path = Path.Combine(directory, "types.gguf");
        var bytes = new List<byte>();
        void U32(uint v) => bytes.AddRange(BitConverter.GetBytes(v));
        void U64(ulong v) => bytes.AddRange(BitConverter.GetBytes(v));
        void Str(string s)
        {
            U64((ulong)System.Text.Encoding.UTF8.GetByteCount(s));
            bytes.AddRange(System.Text.Encoding.UTF8.GetBytes(s));
        }

        void Key(string key, GgufValueType type)
        {
            Str(key);
            U32((uint)type);
        }

        bytes.AddRange("GGUF"u8.ToArray());
        U32(2); // version 2 has the same layout as 3
        U64(1);
        U64(16);
        Key("u8", GgufValueType.UInt8); bytes.Add(200);
        Key("i8", GgufValueType.Int8); bytes.Add(0xFE);
        Key("u16", GgufValueType.UInt16); bytes.AddRange(BitConverter.GetBytes((ushort)65000));
        Key("i16", GgufValueType.Int16); bytes.AddRange(BitConverter.GetBytes((short)-300));
        Key("u32", GgufValueType.UInt32); U32(4000000000);
        Key("i32", GgufValueType.Int32); bytes.AddRange(BitConverter.GetBytes(-5));
        Key("f32", GgufValueType.Float32); bytes.AddRange(BitConverter.GetBytes(1.5f));
        Key("bool", GgufValueType.Bool); bytes.Add(1);
        Key("str", GgufValueType.String); Str("héllo");
        Key("u64", GgufValueType.UInt64); U64(ulong.MaxValue);
        Key("i64", GgufValueType.Int64); bytes.AddRange(BitConverter.GetBytes(long.MinValue));
        Key("f64", GgufValueType.Float64); bytes.AddRange(BitConverter.GetBytes(-2.25));
        Key("strings", GgufValueType.Array); U32((uint)GgufValueType.String); U64(2); Str("a"); Str("");
        Key("floats", GgufValueType.Array); U32((uint)GgufValueType.Float32); U64(2); bytes.AddRange(BitConverter.GetBytes(0.5f)); bytes.AddRange(BitConverter.GetBytes(-1f));
        Key("shorts", GgufValueType.Array); U32((uint)GgufValueType.Int16); U64(1); bytes.AddRange(BitConverter.GetBytes((short)-7));
        Key("general.alignment", GgufValueType.UInt32); U32(64);
        Str("t");
        U32(2);
        U64(32);
        U64(2);
        U32((uint)GgmlType.Q8_0);
        U64(0);
        while (bytes.Count % 64 != 0)
        {
            bytes.Add(0);
        }

        bytes.AddRange(new byte[2 * 34]);
        File.WriteAllBytes(path, [.. bytes]);
        using var file = GgufFile.Open(path);
        Assert.Equal(2u, file.Version);
        Assert.Equal(64, file.Alignment);
        Assert.Equal(200, file.Int("u8"));
        Assert.Equal(-2, file.Int("i8"));
        Assert.Equal(65000, file.Int("u16"));
        Assert.Equal(-300, file.Int("i16"));
        Assert.Equal(4000000000UL, file.Metadata["u32"].Value);
        Assert.Equal(-5, file.Int("i32"));
        Assert.Equal(1.5f, file.Float("f32"));
        Assert.True(file.Bool("bool"));
        Assert.Equal("héllo", file.String("str"));
        Assert.Equal(ulong.MaxValue, file.Metadata["u64"].Value);
        Assert.Equal(long.MinValue, file.Metadata["i64"].Value);
        Assert.Equal(-2.25, file.Metadata["f64"].Value);
        Assert.Equal(["a", ""], file.Array<string>("strings")!);
        Assert.Equal([0.5f, -1f], file.Array<float>("floats")!);
        Assert.Equal([-7L], file.Array<long>("shorts")!);
        var tensor = file.Tensor("t");
        Assert.Equal([2, 32], tensor.Shape);
        Assert.Equal(68, tensor.ByteCount);
        Assert.Equal(64 * ((bytes.Count - 68) / 64), file.DataOffset);
        var error = Assert.Throws<HeadLensException>(() => file.Int("u32"));
        Assert.Contains("'u32'", error.Message);
    }

    [Fact]
    public void BadFilesAreOneLineNamingWhatIsWrong()
    {
        var model = Transformer.Create(SmallLlama(), seed: 1);
        string good = Path.Combine(directory, "good.gguf");
        GgufWriter.Write(good, model, PlaceholderLlamaVocabulary(300));
        byte[] original = File.ReadAllBytes(good);
        string Refusal(byte[] bytes)
        {
            string path = Path.Combine(directory, "bad.gguf");
            File.WriteAllBytes(path, bytes);
            var error = Assert.Throws<HeadLensException>(() => GgufModel.Load(path));
            Assert.DoesNotContain('\n', error.Message);
            Assert.StartsWith("bad.gguf", error.Message);
            return error.Message;
        }

        int cut = IndexOf(original, "tok280"u8.ToArray()); // inside the vocabulary
        Assert.Contains("metadata 'tokenizer.ggml.tokens'[280]", Refusal(original[..cut]), StringComparison.Ordinal);
        Assert.Contains("past the end", Refusal(original[..(original.Length / 3)]), StringComparison.Ordinal);
        Assert.Contains("past the end", Refusal(original[..^1]), StringComparison.Ordinal);
        Assert.Contains("'GGUF' magic", Refusal([.. "GGUG"u8.ToArray(), .. original[4..]]), StringComparison.Ordinal);

        byte[] Replace(string from, string to)
        {
            var text = System.Text.Encoding.Latin1.GetString(original);
            Assert.Equal(from.Length, to.Length);
            return System.Text.Encoding.Latin1.GetBytes(text.Replace(from, to, StringComparison.Ordinal));
        }

        Assert.Contains("general.architecture 'mamba'", Refusal(Replace("\u0005\0\0\0\0\0\0\0llama", "\u0005\0\0\0\0\0\0\0mamba")), StringComparison.Ordinal);
        // The first tensor's type field: 8 bytes after its dimensions. Unknown ggml type 99.
        byte[] unknownType = (byte[])original.Clone();
        int at = IndexOf(original, "token_embd.weight"u8.ToArray()) + "token_embd.weight".Length + 4 + 16;
        BinaryPrimitives.WriteUInt32LittleEndian(unknownType.AsSpan(at), 99);
        Assert.Contains("tensor 'token_embd.weight': ggml type 99", Refusal(unknownType), StringComparison.Ordinal);
        // A lying tensor count and a lying offset.
        byte[] lyingCount = (byte[])original.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(lyingCount.AsSpan(8), ulong.MaxValue / 2);
        Assert.Contains("tensor_count", Refusal(lyingCount), StringComparison.Ordinal);
        byte[] lyingOffset = (byte[])original.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(lyingOffset.AsSpan(at + 4), 1L << 40);
        Assert.Contains("token_embd.weight", Refusal(lyingOffset), StringComparison.Ordinal);
    }

    internal static int IndexOf(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle);

    [Fact]
    public void TokenizersRoundTripThroughMetadata()
    {
        var llama = PlaceholderLlamaVocabulary(300);
        var model = Transformer.Create(SmallLlama(), seed: 2);
        string path = Path.Combine(directory, "spm.gguf");
        GgufWriter.Write(path, model, llama);
        var (_, read) = GgufModel.Load(path);
        var tokenizer = Assert.IsType<GgufTokenizer>(read);
        Assert.Equal(1, tokenizer.BosId);
        Assert.True(tokenizer.AddsBos);
        Assert.Equal(2, tokenizer.EosId);
        Assert.Equal(llama.Vocabulary.Tokens, tokenizer.Vocabulary.Tokens);
        // Byte fallback: every UTF-8 byte of the text (after the dummy-prefix space) is a byte token.
        int[] ids = tokenizer.Encode("hé!");
        Assert.Equal(new[] { ' ', 'h', 0xC3, 0xA9, '!' }.Select(b => b + 3), ids);
        // The dummy-prefix space is a byte token here (the vocabulary has no '▁' piece), so decoding keeps it.
        Assert.Equal(" hé!", tokenizer.Decode([1, .. ids]));

        string fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures", "gpt2-tokenizer");
        string vocab = Path.Combine(directory, "vocab.json"), merges = Path.Combine(directory, "merges.txt");
        Decompress(Path.Combine(fixtures, "vocab.json.gz"), vocab);
        Decompress(Path.Combine(fixtures, "merges.txt.gz"), merges);
        var gpt2 = Gpt2Tokenizer.FromFiles(vocab, merges);
        var gpt2Model = Transformer.Create(ModelPresets.Gpt2(gpt2.VocabSize, 16, 1, 2, 8), seed: 3);
        string gpt2Path = Path.Combine(directory, "bpe.gguf");
        GgufWriter.Write(gpt2Path, gpt2Model, gpt2);
        var (_, readGpt2) = GgufModel.Load(gpt2Path);
        string text = File.ReadAllText(Path.Combine(fixtures, "sample.txt"));
        Assert.Equal(gpt2.Encode(text), readGpt2!.Encode(text));
        Assert.False(readGpt2.AddsBos);
        Assert.Equal(50256, readGpt2.EosId);
    }

    private static void Decompress(string from, string to)
    {
        using var input = new System.IO.Compression.GZipStream(File.OpenRead(from), System.IO.Compression.CompressionMode.Decompress);
        using var output = File.Create(to);
        input.CopyTo(output);
    }
}
