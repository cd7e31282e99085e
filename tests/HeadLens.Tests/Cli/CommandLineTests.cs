using System.Diagnostics;
using System.Reflection;
using HeadLens.Cli;
using HeadLens.Cli.Commands.Bench;

namespace HeadLens.Tests.Cli;

/// <summary>
/// The command line itself (issue 15): help from the declarations, typos named with the nearest option, values that
/// look like options refused, --version, shell completion. Each test fails on the parser this replaced.
/// </summary>
public class CommandLineTests
{
    private static readonly Dictionary<string, ICommand> Commands = typeof(ICommand).Assembly.GetTypes()
        .Where(type => type.IsClass && !type.IsAbstract && typeof(ICommand).IsAssignableFrom(type))
        .Select(type => (ICommand)Activator.CreateInstance(type)!)
        .ToDictionary(command => command.Name, StringComparer.Ordinal);

    [Fact]
    public void EveryCommandsHelpListsEveryOptionWithItsDefaultAndAnExample()
    {
        foreach (var command in Commands.Values)
        {
            var (code, output, error) = CliTests.Run(command.Name, "--help");
            Assert.True(code == 0, $"{command.Name} --help: {error}");
            Assert.StartsWith($"usage: headlens {command.Name}", output);
            Assert.Contains("example:\n  " + command.Spec.Example, output);
            // Descriptions wrap at the help's width: compare with the line breaks and indents read as single spaces.
            string flat = System.Text.RegularExpressions.Regex.Replace(output, @"\s+", " ");
            foreach (var option in command.Spec.Options.Concat(CommandLineParser.Global))
            {
                Assert.Contains("--" + option.Name, output);
                Assert.Contains(option.Description, flat);
                if (option.Default is not null)
                {
                    Assert.Contains("default: " + option.Default, flat);
                }
            }

            // The three spellings print the same text.
            Assert.Equal(output, CliTests.Run(command.Name, "-h").Out);
            Assert.Equal(output, CliTests.Run("help", command.Name).Out);
        }
    }

    [Fact]
    public void TheCommandListShowsEveryBenchSuiteAndMarksOptionalOptions()
    {
        var (code, output, _) = CliTests.Run("help");
        Assert.Equal(0, code);
        var suites = typeof(IBenchmark).Assembly.GetTypes()
            .Where(type => type.IsClass && !type.IsAbstract && typeof(IBenchmark).IsAssignableFrom(type))
            .Select(type => ((IBenchmark)Activator.CreateInstance(type)!).Name).Order(StringComparer.Ordinal);
        Assert.Contains($"headlens bench ({string.Join(" | ", suites)}) [--json]", output);
        // --model is optional everywhere it has a default; --json is optional for logits and attention.
        Assert.Contains("headlens generate [--model MODEL] [--tokenizer FILE] (--prompt TEXT | --ids 1,2,3)", output);
        Assert.Contains("headlens logits [--model MODEL] [--tokenizer FILE] (--text TEXT | --ids 1,2,3) [--top-k K] [--activations fp32|q8] [--json]", output);
        Assert.Contains("[--layer L] [--head H] [--json]", output);
        Assert.DoesNotContain("headlens attention --model", output);

        var suiteHelp = CliTests.Run("help", "bench", "matmul");
        Assert.Equal(0, suiteHelp.Code);
        Assert.Contains("--sizes N,N", suiteHelp.Out);
        Assert.Contains("--tokens N,N", suiteHelp.Out);
        Assert.Contains("--blocking KCxMCxNC,...", suiteHelp.Out);
        Assert.Equal(suiteHelp.Out, CliTests.Run("bench", "matmul", "--help").Out);
    }

    [Fact]
    public void VersionIsTheAssemblysVersion()
    {
        var (code, output, _) = CliTests.Run("--version");
        Assert.Equal(0, code);
        string version = typeof(ICommand).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()!.InformationalVersion.Split('+')[0];
        Assert.Equal($"headlens {version}\n", output);
    }

    [Fact]
    public void AnUnknownOptionIsNamedWithTheNearestDeclaredOne()
    {
        var result = CliTests.Run("generate", "--promt", "hi");
        CliTests.AssertOneLineError(result, "unknown option --promt (did you mean --prompt?)");
        Assert.Equal(2, result.Code);
        CliTests.AssertOneLineError(CliTests.Run("genrate", "--prompt", "hi"), "unknown command 'genrate' (did you mean 'generate'?)");
        CliTests.AssertOneLineError(CliTests.Run("bench", "matmull"), "unknown suite 'matmull' (did you mean 'matmul'?)");
        CliTests.AssertOneLineError(CliTests.Run("bench", "matmul", "--tokens", "256,x"), "--tokens expects positive integers, got 'x'");
        CliTests.AssertOneLineError(CliTests.Run("experiment", "sinks", "--steps", "5"), "--steps (it belongs to induction)");
        CliTests.AssertOneLineError(CliTests.Run("help", "atention"), "did you mean 'attention'?");
        CliTests.AssertOneLineError(CliTests.Run("generate", "hello"), "unexpected argument 'hello'");
    }

    [Fact]
    public void AValueThatLooksLikeAnOptionIsRefusedUnlessAttachedWithEquals()
    {
        CliTests.AssertOneLineError(CliTests.Run("generate", "--prompt", "--json"), "--prompt needs a value (TEXT), got the option --json");
        var (code, output, error) = CliTests.Run("generate", "--prompt=--json", "--max-tokens", "2", "--temperature", "0", "--json");
        Assert.True(code == 0, error);
        using var json = System.Text.Json.JsonDocument.Parse(output);
        // The embedded model reads bytes: the prompt is the six bytes of "--json".
        Assert.Equal("--json"u8.ToArray().Select(b => (int)b), json.RootElement.GetProperty("prompt_ids").EnumerateArray().Select(v => v.GetInt32()));
    }

    [Fact]
    public void AlternativesAndRequiredOptionsAreCheckedBeforeAnyWork()
    {
        CliTests.AssertOneLineError(CliTests.Run("logits", "--text", "a", "--ids", "1"), "give exactly one of --text TEXT or --ids 1,2,3");
        CliTests.AssertOneLineError(CliTests.Run("convert"), "missing --out");
        CliTests.AssertOneLineError(CliTests.Run("generate", "--json=yes", "--ids", "1"), "--json is a flag");
        CliTests.AssertOneLineError(CliTests.Run("generate", "--ids", "1", "--ids", "2"), "--ids is given twice");
        CliTests.AssertOneLineError(CliTests.Run("convert", "--out", "x.gguf", "--type", "q4"), "--type q4");
    }

    [Theory]
    [InlineData("gen", "generate")]
    [InlineData("generate --pro", "--prompt")]
    [InlineData("convert --type ", "f32 f16 q8_0")]
    [InlineData("describe --preset gpt2-", "gpt2-medium gpt2-large gpt2-xl")]
    [InlineData("experiment ", "handcrafted induction sinks real-heads")]
    [InlineData("experiment induction --st", "--steps")]
    [InlineData("help ben", "bench")]
    [InlineData("generate --model ", "")]
    public void CompletionOffersWhatTheDeclarationsAllow(string line, string expected)
    {
        var words = line.Split(' ');
        var candidates = Completion.Candidates(Commands, words);
        Assert.Equal(expected.Split(' ', StringSplitOptions.RemoveEmptyEntries), candidates);
    }

    [Fact]
    public void TheBashScriptCompletesThroughTheTool()
    {
        var (code, script, _) = CliTests.Run("completion", "bash");
        Assert.Equal(0, code);
        string directory = Path.Combine(Path.GetTempPath(), "headlens-completion-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(directory);
        try
        {
            // `headlens` on the PATH of the shell: a wrapper that runs the built tool.
            string wrapper = Path.Combine(directory, "headlens");
            File.WriteAllText(wrapper, $"#!/bin/sh\nexec dotnet \"{Path.Combine(AppContext.BaseDirectory, "HeadLens.Cli.dll")}\" \"$@\"\n");
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }

            File.WriteAllText(Path.Combine(directory, "completion.bash"), script);
            string test = "source completion.bash; COMP_WORDS=(headlens bench mat); COMP_CWORD=2; _headlens_complete; echo \"${COMPREPLY[*]}\"; "
                + "COMP_WORDS=(headlens generate --max); COMP_CWORD=2; _headlens_complete; echo \"${COMPREPLY[*]}\"";
            var start = new ProcessStartInfo("bash", ["-c", test]) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
            start.Environment["PATH"] = directory + ":" + Environment.GetEnvironmentVariable("PATH");
            using var bash = Process.Start(start)!;
            string output = bash.StandardOutput.ReadToEnd();
            string error = bash.StandardError.ReadToEnd();
            bash.WaitForExit();
            Assert.True(bash.ExitCode == 0, error);
            Assert.Equal("matmul\n--max-tokens\n", output);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void EveryShellGetsAScript()
    {
        foreach (string shell in Completion.Shells)
        {
            var (code, output, error) = CliTests.Run("completion", shell);
            Assert.True(code == 0, error);
            Assert.Contains("headlens __complete", output);
        }

        CliTests.AssertOneLineError(CliTests.Run("completion", "tcsh"), "unknown shell 'tcsh'");
    }

    [Theory]
    [InlineData("promt", "prompt")]
    [InlineData("contex", "context")]
    [InlineData("max-tokns", "max-tokens")]
    [InlineData("jsno", "json")]
    [InlineData("temp", "temperature")]
    [InlineData("xyz", null)]
    [InlineData("json", "json")]
    public void SuggestionsFindTheIntendedName(string typed, string? expected)
    {
        string[] declared = ["prompt", "ids", "context", "max-tokens", "json", "temperature", "top-k", "top-p", "seed", "model"];
        Assert.Equal(expected, Suggestions.Nearest(typed, declared));
    }

    [Fact]
    public void EditDistanceCountsSwapsAsOne()
    {
        Assert.Equal(0, Suggestions.Distance("seed", "seed"));
        Assert.Equal(1, Suggestions.Distance("promt", "prompt"));
        Assert.Equal(1, Suggestions.Distance("jsno", "json"));
        Assert.Equal(3, Suggestions.Distance("", "ids"));
        Assert.Equal(2, Suggestions.Distance("top-k", "top"));
    }
}
