using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;

namespace HeadLens.Tests.Viewer;

/// <summary>A [Fact] that is skipped, with the reason shown, where Debian's chromium or chromium-driver is missing.</summary>
public sealed class BrowserFactAttribute : FactAttribute
{
    public BrowserFactAttribute()
    {
        if (Browser.MissingReason() is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>Real headless Chromium driven through chromedriver, with a fresh profile; screenshots go to TestResults/viewer.</summary>
public sealed class Browser : IDisposable
{
    public const string ChromiumPath = "/usr/bin/chromium";
    public const string DriverPath = "/usr/bin/chromedriver";

    private readonly string profile = Path.Combine(Path.GetTempPath(), "headlens-chromium-" + Guid.NewGuid().ToString("N"));

    public Browser()
    {
        var options = new ChromeOptions { BinaryLocation = ChromiumPath };
        options.AddArguments(
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--window-size=1400,1000", "--user-data-dir=" + profile);
        // The console, to read Content-Security-Policy refusals from.
        options.SetLoggingPreference(LogType.Browser, LogLevel.All);
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(DriverPath)!, Path.GetFileName(DriverPath));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        Driver = new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }

    public ChromeDriver Driver { get; }

    public static string Artifacts { get; } = FindArtifacts();

    public static string? MissingReason() =>
        !File.Exists(ChromiumPath) ? $"{ChromiumPath} is absent (apt-get install chromium chromium-driver)"
        : !File.Exists(DriverPath) ? $"{DriverPath} is absent (apt-get install chromium-driver)"
        : null;

    public IWebElement Find(string css) => Driver.FindElement(By.CssSelector(css));

    public IReadOnlyList<IWebElement> FindAll(string css) => Driver.FindElements(By.CssSelector(css));

    /// <summary>Waits until the condition holds; on timeout, fails with what the page's status line says.</summary>
    public void WaitFor(Func<bool> condition, string what, double seconds = 20)
    {
        var wait = new WebDriverWait(Driver, TimeSpan.FromSeconds(seconds)) { PollingInterval = TimeSpan.FromMilliseconds(50) };
        wait.IgnoreExceptionTypes(typeof(NoSuchElementException), typeof(StaleElementReferenceException));
        try
        {
            wait.Until(_ => condition());
        }
        catch (WebDriverTimeoutException)
        {
            Screenshot("timeout");
            var statuses = FindAll("#status");
            string status = statuses.Count == 0 ? "(no status)" : statuses[0].Text;
            Assert.Fail($"timed out waiting for {what}; the page's status says: {status}");
        }
    }

    /// <summary>The console lines since the last call in which the page's Content-Security-Policy refused something.</summary>
    public IReadOnlyList<string> PolicyViolations() =>
        Driver.Manage().Logs.GetLog(LogType.Browser)
            .Select(entry => entry.Message)
            .Where(message => message.Contains("Content Security Policy", StringComparison.OrdinalIgnoreCase)
                || message.Contains("Content-Security-Policy", StringComparison.OrdinalIgnoreCase))
            .ToList();

    public string Screenshot(string name)
    {
        string path = Path.Combine(Artifacts, name + ".png");
        Driver.GetScreenshot().SaveAsFile(path);
        return path;
    }

    public void Dispose()
    {
        Driver.Quit();
        Driver.Dispose();
        try
        {
            Directory.Delete(profile, recursive: true);
        }
        catch (IOException)
        {
            // Chromium may still be releasing its profile; a leftover temp folder is harmless.
        }
    }

    private static string FindArtifacts()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "HeadLens.slnx")))
        {
            directory = directory.Parent;
        }

        string root = directory?.FullName ?? AppContext.BaseDirectory;
        string path = Path.Combine(root, "TestResults", "viewer");
        Directory.CreateDirectory(path);
        return path;
    }
}
