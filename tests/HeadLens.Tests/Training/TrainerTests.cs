using HeadLens.Checkpoints;
using HeadLens.Model;
using HeadLens.Tokenization;
using HeadLens.Training;

namespace HeadLens.Tests.Training;

public sealed class TrainerTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-train-" + Guid.NewGuid().ToString("N"));

    public TrainerTests() => Directory.CreateDirectory(directory);

    public void Dispose() => Directory.Delete(directory, recursive: true);

    private static readonly TrainingSettings Settings = new()
    {
        Steps = 6,
        Batch = 2,
        Context = 16,
        WarmupSteps = 2,
        EvalInterval = 3,
        CheckpointInterval = 3,
        LearningRate = 1e-2f,
        MinLearningRate = 1e-3f,
    };

    private static Corpus TestCorpus() =>
        new(new ByteTokenizer().Encode(string.Concat(Enumerable.Repeat("In the beginning God created the heaven and the earth. ", 40))));

    private Trainer NewTrainer(string name, int steps) =>
        new(Transformer.Create(ModelPresets.Get("tiny"), Settings.Seed), new ByteTokenizer(), TestCorpus(), Settings with { Steps = steps }, Path.Combine(directory, name));

    [Fact]
    public void SameSeedGivesIdenticalLosses()
    {
        var first = NewTrainer("a", 6);
        first.Run(CancellationToken.None);
        var second = NewTrainer("b", 6);
        second.Run(CancellationToken.None);
        Assert.Equal(first.Losses, second.Losses);
        Assert.True(first.Losses[^1] < first.Losses[0], "the loss should fall on a repetitive corpus");
    }

    [Fact]
    public void ResumingReproducesAnUninterruptedRunExactly()
    {
        var whole = NewTrainer("whole", 6);
        whole.Run(CancellationToken.None);
        // The same 6-step run, interrupted (as Ctrl-C does) after step 3, then resumed.
        var half = NewTrainer("half", 6);
        using var cancellation = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() => half.Run(cancellation.Token, progress =>
        {
            if (progress.Step == 3)
            {
                cancellation.Cancel();
            }
        }));
        var resumed = Trainer.Resume(Path.Combine(directory, "half"), TestCorpus(), steps: null, ModelPresets.Get("tiny"));
        Assert.Equal(3, resumed.Step);
        resumed.Run(CancellationToken.None);
        Assert.Equal(whole.Losses, resumed.Losses);
    }

    [Fact]
    public void AnInterruptedSaveLeavesThePreviousCheckpointLoadable()
    {
        var trainer = NewTrainer("kill", 3);
        trainer.Run(CancellationToken.None);
        string output = Path.Combine(directory, "kill");
        // What a kill -9 in the middle of the next save leaves: a half-written sibling directory.
        string partial = output + ".saving-999999";
        Directory.CreateDirectory(partial);
        File.WriteAllBytes(Path.Combine(partial, "model.safetensors"), [1, 2, 3]);
        var (model, _) = ModelFiles.Load(output);
        Assert.Equal(trainer.Model.Parameters.Arena.All.ToArray(), model.Parameters.Arena.All.ToArray());
        Assert.Equal(3, Trainer.Resume(output, TestCorpus(), null, null).Step);
    }

    [Fact]
    public void ResumeWithoutACheckpointOrWithAnotherShapeIsRefused()
    {
        var missing = Assert.Throws<HeadLensException>(() => Trainer.Resume(Path.Combine(directory, "none"), TestCorpus(), null, null));
        Assert.Contains("no checkpoint", missing.Message);
        NewTrainer("shape", 3).Run(CancellationToken.None);
        var other = Assert.Throws<HeadLensException>(() => Trainer.Resume(Path.Combine(directory, "shape"), TestCorpus(), null, ModelPresets.Get("kjv")));
        Assert.Contains("another shape", other.Message);
    }

    [Fact]
    public void ANanLossStopsTrainingNamingTheStepAndKeepsTheLastCheckpoint()
    {
        var trainer = NewTrainer("nan", 6);
        trainer.Run(CancellationToken.None); // steps 1..6, checkpoints at 3 and 6
        trainer.Model.Parameters.TokenEmbedding.Span[0] = float.NaN;
        var extended = trainer.Settings with { Steps = 9 };
        var poisoned = new Trainer(trainer.Model, new ByteTokenizer(), TestCorpus(), extended, Path.Combine(directory, "nan-2"));
        var error = Assert.Throws<HeadLensException>(() => poisoned.Run(CancellationToken.None));
        Assert.Contains("at step 1", error.Message);
        Assert.False(Directory.Exists(Path.Combine(directory, "nan-2")));
        ModelFiles.Load(Path.Combine(directory, "nan")); // the earlier checkpoint is intact
    }

    [Fact]
    public void CancellingSavesACheckpoint()
    {
        var trainer = NewTrainer("cancel", 6);
        using var cancellation = new CancellationTokenSource();
        Assert.Throws<OperationCanceledException>(() => trainer.Run(cancellation.Token, progress =>
        {
            if (progress.Step == 2)
            {
                cancellation.Cancel();
            }
        }));
        Assert.Equal(2, Trainer.Resume(Path.Combine(directory, "cancel"), TestCorpus(), null, null).Step);
    }

    [Fact]
    public void BadCorporaAreRefusedWithOneLine()
    {
        string empty = Path.Combine(directory, "empty.txt"), binary = Path.Combine(directory, "binary.bin");
        File.WriteAllText(empty, "");
        File.WriteAllBytes(binary, [0x41, 0x00, 0x42]);
        Assert.Contains("not found", Assert.Throws<HeadLensException>(() => Corpus.ReadText(Path.Combine(directory, "missing.txt"))).Message);
        Assert.Contains("empty", Assert.Throws<HeadLensException>(() => Corpus.ReadText(empty)).Message);
        Assert.Contains("binary", Assert.Throws<HeadLensException>(() => Corpus.ReadText(binary)).Message);
    }

    [Fact]
    public void GradientAccumulationMatchesOneLargerBatch()
    {
        // Two micro-batches of one window draw the same two windows as one batch of two, and the mean of the two
        // micro-batch means is the mean over both windows: the same step up to float rounding. Tolerance 1e-4
        // relative: the two orders of summation differ by a few ulps per step, and 6 AdamW steps (which divide by
        // √v) amplify that a little; a missing 1/accumulation scale would be off by a factor, not by 1e-4.
        var large = new Trainer(Transformer.Create(ModelPresets.Get("tiny"), 1), new ByteTokenizer(), TestCorpus(),
            Settings with { Batch = 2, Accumulation = 1 }, Path.Combine(directory, "large"));
        var accumulated = new Trainer(Transformer.Create(ModelPresets.Get("tiny"), 1), new ByteTokenizer(), TestCorpus(),
            Settings with { Batch = 1, Accumulation = 2 }, Path.Combine(directory, "accumulated"));
        large.Run(CancellationToken.None);
        accumulated.Run(CancellationToken.None);
        Assert.Equal(large.Losses.Count, accumulated.Losses.Count);
        for (int i = 0; i < large.Losses.Count; i++)
        {
            Assert.True(Math.Abs(large.Losses[i] - accumulated.Losses[i]) <= 1e-4 * Math.Abs(large.Losses[i]),
                $"step {i + 1}: batch 2 gives {large.Losses[i]}, 2 × batch 1 gives {accumulated.Losses[i]}");
        }
    }

    [Fact]
    public void AKillBetweenTheTwoMovesOfASaveIsRecovered()
    {
        // A save moves the old checkpoint to DIR.previous-PID, then the new one from DIR.saving-PID to DIR. Killed
        // between the two, DIR is missing: --resume must find the new checkpoint (complete: its state file is there).
        string output = Path.Combine(directory, "window");
        var trainer = NewTrainer("window", 6);
        trainer.Run(CancellationToken.None);
        var expected = trainer.Model.Parameters.Arena.All.ToArray();
        Directory.Move(output, output + ".saving-4242");
        Directory.CreateDirectory(output + ".previous-4242");
        File.WriteAllText(Path.Combine(output + ".previous-4242", Trainer.StateFile), "{}");
        var resumed = Trainer.Resume(output, TestCorpus(), null, null);
        Assert.Equal(6, resumed.Step);
        Assert.Equal(expected, resumed.Model.Parameters.Arena.All.ToArray());
    }

    [Fact]
    public void ResumingOnAnotherCorpusIsRefused()
    {
        NewTrainer("corpus", 3).Run(CancellationToken.None);
        var other = new Corpus(new ByteTokenizer().Encode(string.Concat(Enumerable.Repeat("And the earth was without form, and void. ", 40))));
        var error = Assert.Throws<HeadLensException>(() => Trainer.Resume(Path.Combine(directory, "corpus"), other, null, null));
        Assert.Contains("not the one the run", error.Message);
    }

    [Fact]
    public void ScheduleWarmsUpThenDecaysToTheMinimum()
    {
        var s = new TrainingSettings { Steps = 100, WarmupSteps = 10, LearningRate = 1f, MinLearningRate = 0.1f };
        Assert.Equal(0.1f, s.LearningRateAt(1), 5);
        Assert.Equal(1f, s.LearningRateAt(10), 5);
        Assert.Equal(0.55f, s.LearningRateAt(55), 5);
        Assert.Equal(0.1f, s.LearningRateAt(100), 5);
    }
}
