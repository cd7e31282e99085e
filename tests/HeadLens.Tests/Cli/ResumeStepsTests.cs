namespace HeadLens.Tests.Cli;

/// <summary>
/// `train --resume` with another --steps (issue 15): the learning-rate schedule spans the saved run length, so a
/// --steps at or below the step reached is refused in one line, and a longer one is allowed and said.
/// </summary>
public sealed class ResumeStepsTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-resume-steps-" + Guid.NewGuid().ToString("N"));
    private readonly string corpus;

    public ResumeStepsTests()
    {
        Directory.CreateDirectory(directory);
        corpus = Path.Combine(directory, "corpus.txt");
        File.WriteAllText(corpus, string.Concat(Enumerable.Repeat("In the beginning God created the heaven and the earth. ", 40)));
    }

    public void Dispose() => Directory.Delete(directory, recursive: true);

    [Fact]
    public void AShorterRunIsRefusedAndALongerOneSaysTheScheduleChanges()
    {
        string run = Path.Combine(directory, "run");
        var first = CliTests.Run("train", "--corpus", corpus, "--preset", "tiny", "--batch", "2", "--context", "16", "--out", run, "--steps", "4", "--warmup", "1");
        Assert.True(first.Code == 0, first.Error);

        var shorter = CliTests.Run("train", "--corpus", corpus, "--out", run, "--resume", "--steps", "2");
        CliTests.AssertOneLineError(shorter, "--steps 2: the run in");
        Assert.Contains("already at step 4 of 4", shorter.Error);
        Assert.DoesNotContain("resuming", shorter.Error);
        CliTests.AssertOneLineError(CliTests.Run("train", "--corpus", corpus, "--out", run, "--resume", "--steps", "4"), "already at step 4");

        var longer = CliTests.Run("train", "--corpus", corpus, "--out", run, "--resume", "--steps", "6");
        Assert.True(longer.Code == 0, longer.Error);
        Assert.Contains("scheduled for 4 steps; with --steps 6 its learning rate decays over 6 from step 4 on", longer.Error);
        Assert.Contains("trained 6 steps", longer.Out);
    }
}
