using System.Diagnostics;

namespace HeadLens.Tests.Cli;

/// <summary>One setting for the threads that compute: --threads N on any command, else HEADLENS_THREADS.</summary>
public class ThreadsOptionTests
{
    private static readonly string App = Path.Combine(AppContext.BaseDirectory, "HeadLens.Cli.dll");
    private static readonly string Model = Path.Combine(AppContext.BaseDirectory, "Fixtures", "models", "tiny-gpt2");

    [Fact]
    public void AnyThreadCountGivesTheSameLogits()
    {
        var all = Run(null, "logits", "--model", Model, "--ids", "1,2,3,60", "--json");
        var one = Run(null, "logits", "--model", Model, "--ids", "1,2,3,60", "--json", "--threads", "1");
        var three = Run("3", "logits", "--model", Model, "--ids", "1,2,3,60", "--json");
        Assert.Equal(0, all.Code);
        Assert.Equal(0, one.Code);
        Assert.Equal(0, three.Code);
        Assert.Equal(all.Out, one.Out);
        Assert.Equal(all.Out, three.Out);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData("many")]
    public void ABadThreadsOptionIsOneLine(string value) =>
        CliTests.AssertOneLineError(Run(null, "logits", "--model", Model, "--ids", "1,2", "--threads", value), "--threads");

    [Theory]
    [InlineData("abc")]
    [InlineData("0")]
    public void ABadEnvironmentVariableIsOneLine(string value)
    {
        var result = Run(value, "logits", "--model", Model, "--ids", "1,2");
        CliTests.AssertOneLineError(result, "HEADLENS_THREADS");
        Assert.Contains($"'{value}'", result.Error);
    }

    [Fact]
    public void TheOptionOverridesTheEnvironmentVariable()
    {
        var result = Run("abc", "logits", "--model", Model, "--ids", "1,2", "--threads", "2", "--json");
        Assert.Equal(0, result.Code);
    }

    private static (int Code, string Out, string Error) Run(string? environment, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetTempPath() };
        start.ArgumentList.Add(App);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        if (environment is null)
        {
            start.Environment.Remove("HEADLENS_THREADS");
        }
        else
        {
            start.Environment["HEADLENS_THREADS"] = environment;
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output.Result, error);
    }
}
