using System.Diagnostics;
using System.Text.Json.Nodes;
using HeadLens.Checkpoints;
using HeadLens.Inference;
using HeadLens.Model;
using HeadLens.Tests.Cli;
using HeadLens.Tokenization;
using HeadLens.Training;

namespace HeadLens.Tests.Checkpoints;

/// <summary>
/// Issue 16's bad inputs, each once an "internal error" (exit 70), a hang or a huge allocation: now one line naming the
/// file, field or option. Special files (FIFOs, devices) and oversized files are refused before they are read.
/// </summary>
public sealed class UserErrorTests : IDisposable
{
    private static readonly string TinyGpt2 = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-usererror-" + Guid.NewGuid().ToString("N"));

    public UserErrorTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    // A small GPT-2 with a learned BPE vocabulary (vocab.json + merges.txt) of its own size.
    private string BpeModel(string name)
    {
        var tokenizer = BpeTrainer.Train(string.Concat(Enumerable.Repeat("In the beginning God created the heaven and the earth. ", 30)), 280);
        var model = Transformer.Create(ModelPresets.Get("tiny") with { VocabSize = tokenizer.VocabSize }, 1);
        string path = Path.Combine(directory, name);
        ModelFiles.Save(model, tokenizer, path);
        return path;
    }

    private string CopyOf(string source, string name)
    {
        string copy = Path.Combine(directory, name);
        Directory.CreateDirectory(copy);
        foreach (string file in Directory.GetFiles(source))
        {
            File.Copy(file, Path.Combine(copy, Path.GetFileName(file)));
        }

        return copy;
    }

    private static void EditJson(string path, Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }

    private static string Refused(Action action, params string[] mentions)
    {
        var clock = Stopwatch.StartNew();
        var error = Assert.Throws<HeadLensException>(action);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed} to refuse: {error.Message}");
        Assert.DoesNotContain('\n', error.Message);
        foreach (string mention in mentions)
        {
            Assert.Contains(mention, error.Message);
        }

        return error.Message;
    }

    private static void MakeFifo(string path)
    {
        using var mkfifo = Process.Start("mkfifo", [path]);
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
    }

    [Fact]
    public void ConfigFieldsOfTheWrongTypeOrDuplicatedAreNamed()
    {
        string numberType = CopyOf(TinyGpt2, "number-type");
        EditJson(Path.Combine(numberType, "config.json"), json => json["model_type"] = 2);
        Refused(() => ModelFiles.Load(numberType), "config.json", "'model_type' is 2, not a string");

        string stringLayers = CopyOf(TinyGpt2, "string-layers");
        EditJson(Path.Combine(stringLayers, "config.json"), json => json["n_layer"] = "2");
        Refused(() => ModelFiles.Load(stringLayers), "'n_layer' is \"2\", not an integer");

        // Which of two equal keys wins differs between JSON readers: the file means two things, so it is refused.
        string duplicate = CopyOf(TinyGpt2, "duplicate");
        string path = Path.Combine(duplicate, "config.json");
        File.WriteAllText(path, File.ReadAllText(path).Replace("{", "{\"n_layer\": 1, ", StringComparison.Ordinal));
        Refused(() => ModelFiles.Load(duplicate), "config.json", "Duplicate property 'n_layer'");
    }

    [Fact]
    public void AHugeHiddenSizeIsRefusedWithoutAllocating()
    {
        foreach (int heads in (int[])[3, 1])
        {
            string huge = CopyOf(TinyGpt2, "huge-" + heads);
            EditJson(Path.Combine(huge, "config.json"), json =>
            {
                json["n_embd"] = int.MaxValue;
                json["n_head"] = heads;
            });
            long before = GC.GetAllocatedBytesForCurrentThread();
            Refused(() => ModelFiles.Load(huge), "config.json", "channels");
            Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16 << 20);
        }
    }

    [Fact]
    public void VocabularyIdsFarOutOfRangeAreRefusedWithoutAllocating()
    {
        string model = BpeModel("bpe");
        foreach (int id in (int[])[int.MaxValue, 2_000_000_000, -1])
        {
            string copy = CopyOf(model, "id-" + id);
            EditJson(Path.Combine(copy, "vocab.json"), json => json[json.First().Key] = id);
            long before = GC.GetAllocatedBytesForCurrentThread();
            Refused(() => ModelFiles.Load(copy), "vocab.json", $"has id {id}");
            Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 64 << 20, "a lying id allocated its table");
        }
    }

    [Fact]
    public void ATokenizerLargerThanTheModelsVocabularyIsRefusedAtLoad()
    {
        string copy = CopyOf(BpeModel("bpe"), "wider");
        EditJson(Path.Combine(copy, "vocab.json"), json => json["zz-extra"] = json.Count);
        Refused(() => ModelFiles.Load(copy), "the tokenizer has", "more than the model's vocabulary");
    }

    [Fact]
    public void TokenizerJsonMergesThatAreNotPairsAreNamed()
    {
        string model = BpeModel("bpe");
        var vocabulary = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "vocab.json")))!;
        foreach (string merges in (string[])["[[\"a\"]]", "[\"ab\"]", "[[\"a\", 1]]", "[7]"])
        {
            string copy = Path.Combine(directory, "tokenizer-" + merges.Length);
            Directory.CreateDirectory(copy);
            File.WriteAllText(Path.Combine(copy, "tokenizer.json"),
                $"{{\"model\": {{\"type\": \"BPE\", \"vocab\": {vocabulary.ToJsonString()}, \"merges\": {merges}}}}}");
            Refused(() => TokenizerLoader.FromDirectory(copy), "tokenizer.json", "model.merges[0]", "not a pair");
        }
    }

    [Fact]
    public void DamagedTrainingStatesAreNamed()
    {
        var corpus = new Corpus(new ByteTokenizer().Encode(string.Concat(Enumerable.Repeat("In the beginning God created the heaven and the earth. ", 40))));
        string run = Path.Combine(directory, "run");
        new Trainer(Transformer.Create(ModelPresets.Get("tiny"), 1), new ByteTokenizer(), corpus,
            new TrainingSettings { Steps = 1, Batch = 2, Context = 16, WarmupSteps = 1 }, run).Run(CancellationToken.None);
        string state = Path.Combine(run, Trainer.StateFile);
        string good = File.ReadAllText(state);
        var cases = new (string Text, string Mention)[]
        {
            (good[..(good.Length / 2)], "malformed JSON"),
            (good.Replace("\"step\":1", "\"step\":\"one\"", StringComparison.Ordinal), "'step' is unreadable"),
            (good.Replace("\"settings\"", "\"other\"", StringComparison.Ordinal), "no 'settings'"),
            (good.Replace("\"rng\":\"", "\"rng\":\"-", StringComparison.Ordinal), "'rng' is unreadable"),
            (good.Replace("\"step\":1", "\"step\":-5", StringComparison.Ordinal), "damaged training state (step -5"),
            ("[]", "no 'settings'"),
        };
        foreach (var (text, mention) in cases)
        {
            Assert.NotEqual(good, text);
            File.WriteAllText(state, text);
            Refused(() => Trainer.Resume(run, corpus, null, null), "run/training_state.json", mention);
            Refused(() => TrainingCheckpoint.SavedContext(run), "run/training_state.json");
        }
    }

    [Fact]
    public async Task SpecialFilesAreRefusedAtOnce()
    {
        // /dev/zero as config.json would be read until memory runs out; a FIFO named model.safetensors or given as a
        // tokenizer would block the open forever (the assertions run on a task with a deadline).
        string zeroConfig = CopyOf(TinyGpt2, "zero-config");
        File.Delete(Path.Combine(zeroConfig, "config.json"));
        File.CreateSymbolicLink(Path.Combine(zeroConfig, "config.json"), "/dev/zero");
        string fifoWeights = CopyOf(TinyGpt2, "fifo-weights");
        File.Delete(Path.Combine(fifoWeights, "model.safetensors"));
        MakeFifo(Path.Combine(fifoWeights, "model.safetensors"));
        string fifo = Path.Combine(directory, "tokenizer.bin"), fifoModel = Path.Combine(directory, "model.bin");
        MakeFifo(fifo);
        MakeFifo(fifoModel);
        var checks = Task.Run(() =>
        {
            Refused(() => ModelFiles.Load(zeroConfig), "config.json", "not a regular file (a character device)");
            Refused(() => ModelFiles.Load(fifoWeights), "model.safetensors", "not a regular file (a FIFO)");
            Refused(() => SentencePieceTokenizer.FromLlama2cFile(fifo), "tokenizer.bin", "a FIFO");
            Refused(() => Corpus.ReadText("/dev/zero"), "corpus /dev/zero", "a character device");
            Refused(() => ModelFiles.Load(fifoModel), "model.bin", "a FIFO");
        });
        await checks.WaitAsync(TimeSpan.FromSeconds(30)); // a TimeoutException here: a special file blocked the reader
    }

    [Fact]
    public void OversizedFilesAreRefusedBeforeReading()
    {
        // Sparse files: their length is what is checked, so the test writes nothing of that size.
        string big = CopyOf(TinyGpt2, "big-config");
        using (var stream = new FileStream(Path.Combine(big, "config.json"), FileMode.Create))
        {
            stream.SetLength(InputFile.JsonLimit + 1);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        Refused(() => ModelFiles.Load(big), "config.json", "more than the 16 MiB");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20);
        string corpus = Path.Combine(directory, "corpus.txt");
        using (var stream = new FileStream(corpus, FileMode.Create))
        {
            stream.SetLength(InputFile.CorpusLimit + 1);
        }

        Refused(() => Corpus.ReadText(corpus), "corpus", "more than the 1024 MiB");
    }

    [Fact]
    public void GenerationSizesItsCacheByTheTokensAndRefusesOneThatCannotFit()
    {
        var model = Transformer.Create(ModelPresets.Get("tiny"), 1);
        // tiny: 2 layers × 4 kv heads × head size 8 → 2·2·4·8·4 = 512 bytes a token.
        Generator.CacheMemoryLimit = 512 * 10;
        try
        {
            Assert.Equal(5, Generator.Generate(model, [1, 2, 3, 4, 5], 5, new Sampler(new SamplingSettings { Temperature = 0 })).Count());
            Refused(() => Generator.Generate(model, [1, 2, 3, 4, 5], 6, new Sampler(new SamplingSettings())), "11 tokens", "lower --max-tokens");
        }
        finally
        {
            Generator.CacheMemoryLimit = null;
        }
    }

    [Fact]
    public void CommandLineCasesAreOneLine()
    {
        string model = BpeModel("bpe-cli");
        CliTests.AssertOneLineError(CliTests.Run("heads", "--model", model, "--from", "", "--to", "the"), "--from");
        CliTests.AssertOneLineError(CliTests.Run("heads", "--model", model, "--from", "God", "--to", " "), "--to");
        CliTests.AssertOneLineError(CliTests.Run("describe", "--model", "/nonexistent"), "/nonexistent");
        string existing = Path.Combine(directory, "existing.png");
        File.WriteAllText(existing, "not a directory");
        string report = Path.Combine(directory, "report.html");
        CliTests.AssertOneLineError(CliTests.Run("report", "--model", model, "--text", "the earth", "--out", report, "--png", existing), "--png");
        Assert.False(File.Exists(report));
        CliTests.AssertOneLineError(CliTests.Run("report", "--model", model, "--text", "the earth", "--out", directory), "--out");
        var result = CliTests.Run("generate", "--model", model, "--tokenizer", "/dev/zero", "--ids", "1");
        CliTests.AssertOneLineError(result, "/dev/zero");
        Assert.NotEqual(70, result.Code);
    }
}
