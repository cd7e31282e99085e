using System.Diagnostics;

namespace HeadLens.Tests.Cli;

/// <summary>
/// `headlens` as users install it (README's first lines): the tool package packed from the repository, installed with
/// `dotnet tool install` into a temporary --tool-path from the local package folder, then `headlens --version` and
/// `headlens demo`. Offline: a NuGet.config that lists only that folder, and a private packages folder, so neither
/// the network nor a cached older build of the same version is used.
/// </summary>
public sealed class ToolInstallTests : IDisposable
{
    private readonly string directory = Path.Combine(Path.GetTempPath(), "headlens-tool-" + Guid.NewGuid().ToString("N"));

#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    public void Dispose()
    {
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    [Trait("Category", "Install")]
    public void PackInstallAndRunTheTool()
    {
        string packages = Path.Combine(directory, "packages"), tools = Path.Combine(directory, "tools"), work = Path.Combine(directory, "work");
        Directory.CreateDirectory(work);
        string project = Path.Combine(RepositoryRoot(), "src", "HeadLens.Cli", "HeadLens.Cli.csproj");
        // --no-build: the test run built the tool already, in this configuration.
        Dotnet(work, "pack", project, "-c", Configuration, "--no-build", "-o", packages);
        string config = Path.Combine(directory, "NuGet.config");
        File.WriteAllText(config, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="local" value="{packages}" />
              </packageSources>
            </configuration>
            """);
        Dotnet(work, "tool", "install", "HeadLens.Cli", "--tool-path", tools, "--configfile", config);

        string headlens = Path.Combine(tools, "headlens");
        var version = Run(work, headlens, "--version");
        Assert.Matches(@"^headlens \d+\.\d+\.\d+\n$", version);
        string demo = Run(work, headlens, "demo", "--max-tokens", "20");
        Assert.Contains("HeadLens demo", demo);
        Assert.Contains("layer head  kind", demo);
        Assert.True(File.Exists(Path.Combine(work, "headlens-demo.html")));
    }

    [Fact]
    [Trait("Category", "Install")]
    public void TheLibraryPacksWithItsXmlDocumentation()
    {
        string packages = Path.Combine(directory, "packages");
        Directory.CreateDirectory(directory);
        Dotnet(directory, "pack", Path.Combine(RepositoryRoot(), "src", "HeadLens", "HeadLens.csproj"), "-c", Configuration, "--no-build", "-o", packages);
        string package = Assert.Single(Directory.GetFiles(packages, "HeadLens.*.nupkg"));
        using var archive = System.IO.Compression.ZipFile.OpenRead(package);
        var names = archive.Entries.Select(entry => entry.FullName).ToList();
        Assert.Contains("lib/net10.0/HeadLens.dll", names);
        var documentation = archive.GetEntry("lib/net10.0/HeadLens.xml");
        Assert.NotNull(documentation);
        using var reader = new StreamReader(documentation.Open());
        string xml = reader.ReadToEnd();
        Assert.Contains("<member name=\"M:HeadLens.Inference.Generator.Stream", xml); // a public API's summary travels with it
    }

    private string Dotnet(string workingDirectory, params string[] args) => Run(workingDirectory, "dotnet", args);

    private string Run(string workingDirectory, string program, params string[] args)
    {
        var start = new ProcessStartInfo(program, args) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["NUGET_PACKAGES"] = Path.Combine(directory, "nuget-cache");
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"{program} {string.Join(' ', args)} exited with {process.ExitCode}: {error}{output.Result}");
        return output.Result;
    }

    private static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            if (File.Exists(Path.Combine(folder.FullName, "HeadLens.slnx")))
            {
                return folder.FullName;
            }
        }

        throw new InvalidOperationException($"no HeadLens.slnx above {AppContext.BaseDirectory}");
    }
}
