using System.Globalization;
using System.Text.Json;
using HeadLens.Checkpoints;
using HeadLens.Model;
using HeadLens.Tokenization;

namespace HeadLens.Training;

/// <summary>Where a run stands: what a checkpoint's state file holds besides the model and the optimiser moments.</summary>
public sealed record TrainingState(
    int Step, ulong SamplerState, string CorpusFingerprint, TrainingSettings Settings,
    List<float> Losses, List<(int Step, float Loss)> ValidationLosses);

/// <summary>
/// A training checkpoint: a Hugging Face model directory (ModelFiles) plus
///   optimizer.safetensors    the AdamW moments, "m.NAME" and "v.NAME" for every parameter NAME;
///   training_state.json      {"step", "rng" (the batch sampler's state, decimal), "corpus_fingerprint", "settings",
///                            "losses", "validation_losses": [[step, loss], ...]}, written last;
///   any files the caller adds (the loss curve).
/// A save writes the new checkpoint beside the old one and swaps it in atomically (<see cref="AtomicDirectory"/>), so a
/// kill at any moment leaves a loadable checkpoint, old or new; a resumed run continues exactly where an uninterrupted one would have been.
/// </summary>
public sealed class TrainingCheckpoint
{
    public const string StateFile = "training_state.json";
    public const string OptimizerFile = "optimizer.safetensors";

    private TrainingCheckpoint(string directory, Transformer model, ITokenizer? tokenizer, TrainingState state)
    {
        Directory = directory;
        Model = model;
        Tokenizer = tokenizer;
        State = state;
    }

    public string Directory { get; }

    public Transformer Model { get; }

    /// <summary>The run's tokenizer, or null when the directory names none.</summary>
    public ITokenizer? Tokenizer { get; }

    public TrainingState State { get; }

    /// <summary>Writes model, moments, state and <paramref name="extraFiles"/> as one checkpoint in <paramref name="outputDirectory"/>.</summary>
    public static void Save(
        string outputDirectory, Transformer model, ITokenizer tokenizer, AdamWOptimizer optimizer, TrainingState state,
        Action<string>? extraFiles = null)
    {
        ModelFiles.Save(model, tokenizer, outputDirectory, directory =>
        {
            var moments = new List<(string, int[], ReadOnlyMemory<float>)>();
            foreach (var (name, parameter, _, _) in model.NamedParameters())
            {
                moments.Add(("m." + name, parameter.Shape, optimizer.FirstMoment.Arena.Get(name).Memory));
                moments.Add(("v." + name, parameter.Shape, optimizer.SecondMoment.Arena.Get(name).Memory));
            }

            SafeTensorsWriter.Write(Path.Combine(directory, OptimizerFile), moments);
            var json = new Dictionary<string, object>
            {
                ["step"] = state.Step,
                ["rng"] = state.SamplerState.ToString(CultureInfo.InvariantCulture),
                ["corpus_fingerprint"] = state.CorpusFingerprint,
                ["settings"] = state.Settings,
                ["losses"] = state.Losses,
                ["validation_losses"] = state.ValidationLosses.Select(v => new object[] { v.Step, v.Loss }).ToList(),
            };
            extraFiles?.Invoke(directory);
            // The state goes last: a directory with a state file is a complete checkpoint (see RecoverInterruptedSave).
            File.WriteAllText(Path.Combine(directory, StateFile), JsonSerializer.Serialize(json));
        });
    }

    /// <summary>
    /// Reads the checkpoint in <paramref name="outputDirectory"/> (after recovering an interrupted save), refusing one
    /// of another shape than <paramref name="expectedShape"/> or trained on another corpus; <paramref name="steps"/>
    /// replaces the saved run length.
    /// </summary>
    public static TrainingCheckpoint Load(string outputDirectory, Corpus corpus, int? steps, ModelConfig? expectedShape)
    {
        RecoverInterruptedSave(outputDirectory);
        string statePath = Path.Combine(outputDirectory, StateFile);
        if (!File.Exists(statePath))
        {
            throw new HeadLensException($"--resume: no checkpoint in {outputDirectory} (no {StateFile})");
        }

        var (model, tokenizer) = ModelFiles.Load(outputDirectory);
        if (expectedShape is not null && expectedShape with { } != model.Config)
        {
            throw new HeadLensException($"--resume: the checkpoint in {outputDirectory} has another shape than the requested preset " +
                $"({model.Config.Layers} layers × {model.Config.Heads} heads × {model.Config.Channels} channels, vocab {model.Config.VocabSize})");
        }

        var saved = ReadState(statePath);
        if (saved.CorpusFingerprint is { Length: > 0 } fingerprint && fingerprint != corpus.Fingerprint)
        {
            throw new HeadLensException($"--resume: the corpus is not the one the run in {outputDirectory} trained on " +
                $"({corpus.Train.Length + corpus.Validation.Length} tokens, fingerprint {corpus.Fingerprint}; the run saved {fingerprint})");
        }

        var state = saved with
        {
            CorpusFingerprint = corpus.Fingerprint,
            Settings = steps is null ? saved.Settings : saved.Settings with { Steps = steps.Value },
        };
        return new TrainingCheckpoint(outputDirectory, model, tokenizer, state);
    }

    /// <summary>The context length the run saved in <paramref name="outputDirectory"/> trained with (to cut the corpus the same way on resuming).</summary>
    public static int SavedContext(string outputDirectory)
    {
        RecoverInterruptedSave(outputDirectory);
        string statePath = Path.Combine(outputDirectory, StateFile);
        if (!File.Exists(statePath))
        {
            throw new HeadLensException($"--resume: no checkpoint in {outputDirectory} (no {StateFile})");
        }

        return ReadState(statePath).Settings.Context;
    }

    // training_state.json, every field checked: a damaged file is one line naming it and what is wrong, not a crash
    // in the middle of resuming. The corpus fingerprint is empty when the file has none.
    private static TrainingState ReadState(string path)
    {
        string file = $"{Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(path)))}/{StateFile}";
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(InputFile.ReadAllText(path, InputFile.StateLimit), new JsonDocumentOptions { AllowDuplicateProperties = false });
        }
        catch (JsonException error)
        {
            throw new HeadLensException($"{file}: damaged training state, malformed JSON ({InputFile.Reason(error)})");
        }

        using (document)
        {
            var root = document.RootElement;
            T Field<T>(string name, Func<JsonElement, T> read)
            {
                if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty(name, out var value))
                {
                    throw new HeadLensException($"{file}: damaged training state, no '{name}'");
                }

                try
                {
                    return read(value);
                }
                catch (Exception error) when (error is JsonException or InvalidOperationException or FormatException or OverflowException
                    or IndexOutOfRangeException or ArgumentException)
                {
                    throw new HeadLensException($"{file}: damaged training state, '{name}' is unreadable ({InputFile.Reason(error)})");
                }
            }

            var settings = Field("settings", value => value.Deserialize<TrainingSettings>() ?? throw new FormatException("null"));
            int step = Field("step", value => value.GetInt32());
            if (step < 0 || settings.Batch < 1 || settings.Context < 2 || settings.Accumulation < 1 || settings.Steps < 0)
            {
                throw new HeadLensException($"{file}: damaged training state (step {step}, batch {settings.Batch}, context {settings.Context}, " +
                    $"accumulation {settings.Accumulation}, steps {settings.Steps})");
            }

            return new TrainingState(
                step,
                Field("rng", value => ulong.Parse(value.GetString() ?? "", NumberStyles.None, CultureInfo.InvariantCulture)),
                root.TryGetProperty("corpus_fingerprint", out _) ? Field("corpus_fingerprint", value => value.GetString() ?? "") : "",
                settings,
                Field("losses", value => value.EnumerateArray().Select(v => v.GetSingle()).ToList()),
                Field("validation_losses", value => value.EnumerateArray().Select(entry => (entry[0].GetInt32(), entry[1].GetSingle())).ToList()));
        }
    }

    /// <summary>Reads the saved AdamW moments into <paramref name="optimizer"/> (built for this checkpoint's model).</summary>
    public void RestoreMoments(AdamWOptimizer optimizer)
    {
        optimizer.StepCount = State.Step;
        using var moments = SafeTensorsFile.Open(Path.Combine(Directory, OptimizerFile));
        foreach (var (name, _, _, _) in Model.NamedParameters())
        {
            moments.ReadFloat32("m." + name, optimizer.FirstMoment.Arena.Get(name).Span);
            moments.ReadFloat32("v." + name, optimizer.SecondMoment.Arena.Get(name).Span);
        }
    }

    /// <summary>
    /// Before a run starts or resumes: puts back the newest complete checkpoint if a save was killed between the two
    /// moves of the fallback swap, and deletes the leftovers ("DIR.saving-*", "DIR.previous-*") of interrupted saves.
    /// </summary>
    public static void RecoverInterruptedSave(string outputDirectory) => AtomicDirectory.Recover(outputDirectory);
}
