using HeadLens.Checkpoints;
using HeadLens.Model;
using HeadLens.Tokenization;
using HeadLens.Training;

namespace HeadLens.Tests.Checkpoints;

/// <summary>
/// Checkpoint saves under a kill at every step: the fault hook of <see cref="AtomicDirectory"/> throws at step i of a
/// save (standing for a kill there: nothing runs after it), for every i, with the RENAME_EXCHANGE swap and with the
/// two-move fallback; the directory must then load, as the old checkpoint or the new one, never neither.
/// </summary>
public sealed class CheckpointAtomicityTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-atomic-" + Guid.NewGuid().ToString("N"));

    public CheckpointAtomicityTests() => Directory.CreateDirectory(directory);

    public void Dispose()
    {
        AtomicDirectory.FaultHook = null;
        AtomicDirectory.ExchangeDisabled = false;
        Directory.Delete(directory, recursive: true);
    }

    private sealed class Killed : Exception;

    private static Transformer Model(int seed) => Transformer.Create(ModelPresets.Get("tiny"), seed);

    // The names of the sibling directories a save may leave ("run.saving-PID", "run.previous-PID").
    private static string[] Leftovers(string target) =>
        [.. Directory.GetDirectories(Path.GetDirectoryName(target)!).Select(Path.GetFileName)
            .Where(name => name!.StartsWith(Path.GetFileName(target) + ".", StringComparison.Ordinal)).Order(StringComparer.Ordinal)!];

    private static float[] Weights(Transformer model) => model.Parameters.Arena.All.ToArray();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void AKillAtAnyStepOfASaveLeavesTheOldOrTheNewCheckpoint(bool fallback)
    {
        AtomicDirectory.ExchangeDisabled = fallback;
        var (old, fresh) = (Model(1), Model(2));
        var steps = new List<string>();
        string counted = Path.Combine(directory, "counted");
        ModelFiles.Save(old, new ByteTokenizer(), counted);
        AtomicDirectory.FaultHook = steps.Add;
        ModelFiles.Save(fresh, new ByteTokenizer(), counted);
        AtomicDirectory.FaultHook = null;
        Assert.Contains(fallback ? "move-old" : "exchange", steps);
        Assert.DoesNotContain(fallback ? "exchange" : "move-old", steps);

        var outcomes = new List<string>();
        for (int kill = 0; kill < steps.Count; kill++)
        {
            string target = Path.Combine(directory, $"{fallback}-{kill}");
            ModelFiles.Save(old, new ByteTokenizer(), target);
            int step = 0;
            AtomicDirectory.FaultHook = name =>
            {
                if (step++ == kill)
                {
                    throw new Killed();
                }
            };
            Assert.Throws<Killed>(() => ModelFiles.Save(fresh, new ByteTokenizer(), target));
            AtomicDirectory.FaultHook = null;

            // Every loader reads it as it is, before any repair...
            var loaded = Weights(ModelFiles.Load(target).Model);
            string which = loaded.SequenceEqual(Weights(old)) ? "old" : loaded.SequenceEqual(Weights(fresh)) ? "new" : "neither";
            Assert.True(which != "neither", $"killed at step {kill} ({steps[kill]}): the directory holds neither checkpoint");
            outcomes.Add(which);

            // ...and the next start puts it in place and leaves no leftovers.
            TrainingCheckpoint.RecoverInterruptedSave(target);
            Assert.True(Directory.Exists(target));
            Assert.Equal(loaded, Weights(ModelFiles.Load(target).Model));
            Assert.Empty(Leftovers(target));
        }

        // A kill before the swap keeps the old checkpoint; once the swap is done, the new one is in place.
        Assert.Equal("old", outcomes[0]);
        Assert.Equal("new", outcomes[^1]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ATrainingRunKilledAtAnyStepOfASaveResumes(bool fallback)
    {
        var corpus = new Corpus(new ByteTokenizer().Encode(string.Concat(Enumerable.Repeat("In the beginning God created the heaven and the earth. ", 40))));
        var settings = new TrainingSettings { Steps = 2, Batch = 2, Context = 16, WarmupSteps = 1, EvalInterval = 100, CheckpointInterval = 1 };
        for (int kill = 0; ; kill++)
        {
            string output = Path.Combine(directory, $"train-{fallback}-{kill}");
            var trainer = new Trainer(Model(1), new ByteTokenizer(), corpus, settings, output);
            int step = 0, saves = 0;
            bool killed = false;
            AtomicDirectory.ExchangeDisabled = fallback;
            AtomicDirectory.FaultHook = name =>
            {
                // Only the second save (step 2) is killed; the first one gives the old checkpoint.
                saves += name == "write" ? 1 : 0;
                if (saves == 2 && step++ == kill)
                {
                    killed = true;
                    throw new Killed();
                }
            };
            try
            {
                trainer.Run(CancellationToken.None);
            }
            catch (Killed)
            {
            }

            AtomicDirectory.FaultHook = null;
            if (!killed)
            {
                // Past the last step of the save: every step has been killed once.
                Assert.True(kill > 3, $"the save has only {kill} steps");
                break;
            }

            var resumed = Trainer.Resume(output, corpus, null, null);
            Assert.InRange(resumed.Step, 1, 2);
            Assert.Equal(resumed.Step, resumed.Losses.Count);
            Assert.Empty(Leftovers(output));
        }
    }

    [Fact]
    public void WithTheNameMissingTheNewestInterruptedSaveWinsOverAStaleOne()
    {
        // An older crash left "DIR.previous-111" (model 1); a newer fallback save was killed between its moves and
        // left "DIR.previous-222" (model 2) and the complete "DIR.saving-222" (model 3): model 3 is the checkpoint.
        string target = Path.Combine(directory, "run");
        ModelFiles.Save(Model(1), null, target + ".previous-111");
        ModelFiles.Save(Model(2), null, target + ".previous-222");
        ModelFiles.Save(Model(3), null, target + ".saving-222");
        foreach (string file in Directory.GetFiles(target + ".previous-111"))
        {
            File.SetLastWriteTimeUtc(file, DateTime.UtcNow.AddHours(-1));
        }

        Assert.Equal(Weights(Model(3)), Weights(ModelFiles.Load(target).Model));
        TrainingCheckpoint.RecoverInterruptedSave(target);
        Assert.Equal(Weights(Model(3)), Weights(ModelFiles.Load(target).Model));
        Assert.Empty(Leftovers(target));
    }

    [Fact]
    public void LeftoversOfDeadProcessesAreCleanedAndThoseOfLiveOnesKept()
    {
        string target = Path.Combine(directory, "run");
        ModelFiles.Save(Model(1), null, target);
        Directory.CreateDirectory(target + ".saving-999999999");
        Directory.CreateDirectory(target + ".previous-999999998");
        using var live = System.Diagnostics.Process.Start("sleep", "30");
        string liveSave = target + ".saving-" + live.Id;
        Directory.CreateDirectory(liveSave);
        try
        {
            ModelFiles.Save(Model(2), null, target);
            Assert.Equal([Path.GetFileName(liveSave)], Leftovers(target));
        }
        finally
        {
            live.Kill();
            live.WaitForExit();
        }
    }
}
