namespace HeadLens.Cli.Viewer;

/// <summary>How the viewer server listens and what it accepts.</summary>
public sealed record ViewerOptions
{
    /// <summary>Loopback unless the user names another address: the viewer is a local tool, not a public service.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>0 picks a free port (tests).</summary>
    public int Port { get; init; } = 5005;

    /// <summary>
    /// The most --max-tokens accepts: one head's pattern is then 4096² floats (64 MB), the most one request works in,
    /// and a layer of up to 127 heads stays within a 32-bit length.
    /// </summary>
    public const int MaxTokensLimit = 4096;

    /// <summary>The longest input any request may use (the model's context may lower it).</summary>
    public int MaxTokens { get; init; } = 1024;

    /// <summary>A request body larger than this gets 413: texts of 1024 tokens fit many times over.</summary>
    public long MaxBodyBytes { get; init; } = 64 * 1024;

    public int MaxGeneratedTokens { get; init; } = 64;

    /// <summary>
    /// The most probabilities one pattern response may carry (heads × T²): two heads at 1024 tokens, 128 heads at
    /// 128. About 5 bytes of JSON each.
    /// </summary>
    public long MaxPatternValues { get; init; } = 2L * 1024 * 1024;
}
