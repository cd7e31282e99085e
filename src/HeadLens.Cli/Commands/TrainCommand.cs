using HeadLens.Model;
using HeadLens.Tokenization;
using HeadLens.Training;

namespace HeadLens.Cli.Commands;

internal sealed class TrainCommand : ICommand
{
    public string Name => "train";

    public CommandSpec Spec { get; } = new(
        "Train a model on a text corpus, saving checkpoints (Hugging Face layout) in --out; --resume continues a run "
        + "with its saved settings. The learning-rate schedule (warmup, then cosine decay) spans --steps, so a resumed "
        + "run may raise --steps only above the step it is at, and then decays more slowly from there than a run started "
        + "with that many steps (it says so).",
        [
            CliOption.Valued("corpus", "FILE", "a UTF-8 text file", "the embedded KJV excerpt"),
            SharedOptions.Preset with { Default = "kjv" },
            CliOption.Valued("out", "DIR", "where checkpoints go", "headlens-model"),
            CliOption.Valued("steps", "N", "optimizer steps in all (with --resume: the new total)", "1000"),
            CliOption.Flag("resume", "continue the run saved in --out") with { Group = "existing" },
            CliOption.Flag("force", "replace a model already in --out (without it, an existing model is refused)") with { Group = "existing" },
            CliOption.Valued("batch", "B", "sequences per step", "16"),
            CliOption.Valued("context", "T", "tokens per sequence", "128, or the preset's context if shorter"),
            CliOption.Valued("lr", "LR", "peak learning rate", "3e-3"),
            CliOption.Valued("seed", "S", "random seed (weights and batches)", "1337"),
            CliOption.Valued("tokenizer", "KIND", "byte-level tokens, or a byte-level BPE learned on the corpus", "byte, or bpe with --vocab") with { Choices = ["byte", "bpe"] },
            CliOption.Valued("vocab", "N", "the BPE vocabulary size", "1024"),
            CliOption.Valued("accumulation", "N", "micro-batches accumulated per step", "1"),
            CliOption.Valued("repeat-share", "F", "share of training windows that are a corpus passage written twice (rewards copying from the context: induction heads)", "0"),
            CliOption.Flag("repeat-random", "with --repeat-share: the passage written twice is random tokens, which cannot be memorised, so only copying from the context predicts its second copy"),
            CliOption.Valued("warmup", "N", "steps of linear learning-rate warmup", "50"),
            CliOption.Valued("eval-every", "N", "steps between validation losses", "100"),
            CliOption.Valued("checkpoint-every", "N", "steps between checkpoints", "250"),
        ],
        "headlens train --preset kjv --steps 200 --out my-model");

    public int Run(CommandArgs args)
    {
        string corpusPath = args.Get("corpus") ?? AppData.Corpus;
        string? presetName = args.Get("preset");
        string output = args.Get("out") ?? "headlens-model";
        int? steps = args.Has("steps") ? args.GetInt("steps", 0, 1, 10_000_000) : null;
        bool resume = args.Flag("resume");
        bool force = args.Flag("force");
        int? batch = args.Has("batch") ? args.GetInt("batch", 0, 1, 4096) : null;
        int? context = args.Has("context") ? args.GetInt("context", 0, 2, 1 << 20) : null;
        double? learningRate = args.Has("lr") ? args.GetDouble("lr", 0, 1e-8, 1) : null;
        int? seed = args.Has("seed") ? args.GetInt("seed", 0) : null;
        string tokenizerKind = args.Get("tokenizer") ?? (args.Has("vocab") ? "bpe" : "byte");
        if (tokenizerKind is not ("byte" or "bpe"))
        {
            throw new HeadLensException($"--tokenizer {tokenizerKind}: expected byte or bpe");
        }

        int? vocab = tokenizerKind == "bpe" ? args.GetInt("vocab", 1024, 257, 1 << 20) : null;
        if (vocab is null && args.Has("vocab"))
        {
            throw new HeadLensException("--vocab needs --tokenizer bpe (a byte-level vocabulary has 256 tokens)");
        }

        int? accumulation = args.Has("accumulation") ? args.GetInt("accumulation", 1, 1, 1024) : null;
        double? repeatShare = args.Has("repeat-share") ? args.GetDouble("repeat-share", 0, 0, 1) : null;
        bool repeatRandom = args.Flag("repeat-random");
        if (repeatRandom && !resume && (repeatShare ?? 0) == 0)
        {
            throw new HeadLensException("--repeat-random needs --repeat-share F with F > 0 (the share of windows with a repeated passage)");
        }

        int? warmup = args.Has("warmup") ? args.GetInt("warmup", 0, 0, 10_000_000) : null;
        int? evalEvery = args.Has("eval-every") ? args.GetInt("eval-every", 0, 1, 10_000_000) : null;
        int? checkpointEvery = args.Has("checkpoint-every") ? args.GetInt("checkpoint-every", 0, 1, 10_000_000) : null;
        args.RejectUnknown();
        TrainingOutput.Check(output, resume, force);

        ITokenizer tokenizer = new ByteTokenizer();
        Trainer trainer;
        if (resume)
        {
            // A resumed run continues with its saved settings, so that it reproduces the uninterrupted run; only the
            // number of steps (and how often to evaluate and save) may change.
            foreach (string fixedOption in (string[])["batch", "context", "lr", "seed", "tokenizer", "vocab", "accumulation", "warmup", "repeat-share", "repeat-random"])
            {
                if (args.Has(fixedOption))
                {
                    throw new HeadLensException($"--resume continues with the saved settings: --{fixedOption} cannot change (start a new run in another --out)");
                }
            }

            // Recovers an interrupted save and checks the saved state before anything reads it.
            TrainingCheckpoint.SavedContext(output);
            var probe = ModelFilesProbe(output);
            CheckResumedSteps(output, probe, steps);
            tokenizer = TokenizerLoader.FromDirectory(output) ?? tokenizer;
            // The vocabulary comes from the run's own tokenizer (a BPE run resized the preset's).
            var expected = presetName is null ? null : ModelPresets.Get(presetName) with { VocabSize = tokenizer.VocabSize };
            var corpus = Corpus.Load(corpusPath, tokenizer, probe.Context);
            trainer = Trainer.Resume(output, corpus, steps, expected);
            trainer.Settings = trainer.Settings with
            {
                EvalInterval = evalEvery ?? trainer.Settings.EvalInterval,
                CheckpointInterval = checkpointEvery ?? trainer.Settings.CheckpointInterval,
            };
            Console.Error.WriteLine($"resuming {output} at step {trainer.Step} of {trainer.Settings.Steps}");
        }
        else
        {
            var config = ModelPresets.Get(presetName ?? "kjv");
            if (vocab is not null)
            {
                // A vocabulary of the corpus's own: byte-level BPE learned here, and the model's vocabulary resized to it.
                var clock = System.Diagnostics.Stopwatch.StartNew();
                tokenizer = BpeTrainer.Train(Corpus.ReadText(corpusPath), vocab.Value);
                Console.Error.WriteLine($"learned a BPE vocabulary of {tokenizer.VocabSize} tokens in {clock.Elapsed.TotalSeconds:F1} s");
            }

            config = config with { VocabSize = tokenizer.VocabSize };

            var settings = new TrainingSettings
            {
                Steps = steps ?? 1000,
                Batch = batch ?? 16,
                Context = context ?? Math.Min(128, config.ContextLength),
                LearningRate = (float)(learningRate ?? 3e-3),
                MinLearningRate = (float)(learningRate ?? 3e-3) / 10,
                Seed = seed ?? 1337,
                Accumulation = accumulation ?? 1,
                RepeatedShare = repeatShare ?? 0,
                RepeatRandomTokens = repeatRandom,
                WarmupSteps = warmup ?? 50,
                EvalInterval = evalEvery ?? 100,
                CheckpointInterval = checkpointEvery ?? 250,
            };
            var corpus = Corpus.Load(corpusPath, tokenizer, settings.Context);
            var model = Transformer.Create(config, settings.Seed);
            trainer = new Trainer(model, tokenizer, corpus, settings, output);
            Console.Error.WriteLine($"training a {Numbers.Count(config.ParameterCount)}-parameter model ({config.DescribeFeatures()}; {config.Layers} layers × {config.Heads} heads, " +
                $"{config.Channels} channels) on {corpus.Train.Length:N0} tokens of {Path.GetFileName(corpusPath)}; checkpoints in {output}");
        }

        using var cancellation = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true; // let the trainer save a checkpoint first
            cancellation.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        // SIGTERM (kill, systemd, a container stopping) saves like Ctrl-C instead of losing the steps since the last save.
        using var onTerminate = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            cancellation.Cancel();
        });
        try
        {
            bool terminal = !Console.IsErrorRedirected;
            trainer.Run(cancellation.Token, progress =>
            {
                string line = $"step {progress.Step,6}/{progress.Steps}  loss {progress.Loss:F4}" +
                    (progress.ValidationLoss is { } v ? $"  val {v:F4}" : "") +
                    $"  lr {Numbers.Value(progress.LearningRate)}  {progress.TokensPerSecond:N0} tok/s  ETA {progress.Remaining:hh\\:mm\\:ss}";
                if (terminal)
                {
                    Console.Error.Write("\r" + line.PadRight(100));
                    if (progress.ValidationLoss is not null)
                    {
                        Console.Error.WriteLine();
                    }
                }
                else if (progress.ValidationLoss is not null || progress.Step % 10 == 0)
                {
                    Console.Error.WriteLine(line);
                }
            });
        }
        catch (OperationCanceledException error)
        {
            Console.Error.WriteLine();
            Console.Error.WriteLine("headlens train: " + error.Message);
            return 130;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }

        Console.Error.WriteLine();
        Console.WriteLine($"trained {trainer.Step} steps; final loss {trainer.Losses[^1]:F4}" +
            (trainer.ValidationLosses.Count > 0 ? $", validation {trainer.ValidationLosses[^1].Loss:F4}" : "") +
            $"; model saved in {output} (loss curve: {Path.Combine(output, "loss.svg")})");
        return 0;
    }

    // What a saved run trained with: its context (to cut the corpus the same way when resuming), the step it reached
    // and the run length its learning-rate schedule spans.
    private static (int Context, int Step, int Steps) ModelFilesProbe(string output)
    {
        string state = Path.Combine(output, Trainer.StateFile);
        if (!File.Exists(state))
        {
            throw new HeadLensException($"--resume: no checkpoint in {output} (no {Trainer.StateFile})");
        }

        using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(state));
        var settings = document.RootElement.GetProperty("settings");
        return (settings.GetProperty("Context").GetInt32(), document.RootElement.GetProperty("step").GetInt32(), settings.GetProperty("Steps").GetInt32());
    }

    // The schedule (warmup, then cosine decay to the minimum at the last step) is saved with the run and spans its
    // --steps. A new --steps at or below the step reached leaves nothing to train: refused. Another one re-spans the
    // decay from here on, so the run no longer matches an uninterrupted run of either length: allowed, and said.
    private static void CheckResumedSteps(string output, (int Context, int Step, int Steps) saved, int? steps)
    {
        if (steps is null)
        {
            return;
        }

        if (steps <= saved.Step)
        {
            throw new HeadLensException($"--steps {steps}: the run in {output} is already at step {saved.Step} of {saved.Steps}; " +
                $"give --steps above {saved.Step} to train further");
        }

        if (steps == saved.Steps)
        {
            return;
        }

        Console.Error.WriteLine($"note: the run in {output} was scheduled for {saved.Steps} steps; with --steps {steps} its learning rate decays over " +
            $"{steps} from step {saved.Step} on, so it will not match an uninterrupted run of either length");
    }
}
