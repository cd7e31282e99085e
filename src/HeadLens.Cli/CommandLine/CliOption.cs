namespace HeadLens.Cli;

/// <summary>
/// One option as a command declares it. The same declaration parses the command line (<see cref="CommandLineParser"/>),
/// writes the help (<see cref="HelpWriter"/>) and answers shell completion (<see cref="Completion"/>), so the three
/// cannot disagree.
/// </summary>
/// <param name="Name">The name without dashes: "max-tokens" for --max-tokens.</param>
/// <param name="Description">One sentence for the help.</param>
internal sealed record CliOption(string Name, string Description)
{
    /// <summary>The value's placeholder in help ("N", "TEXT", "1,2,3"); null for a flag, which takes no value.</summary>
    public string? Value { get; init; }

    /// <summary>
    /// What the command does without the option, as help shows it. A numeric default is checked against the fallback the
    /// command body reads with (<see cref="CommandArgs.GetInt"/>), so help and behaviour cannot drift apart.
    /// </summary>
    public string? Default { get; init; }

    /// <summary>Must be given; for an option in a <see cref="Group"/>, one of the group must be given.</summary>
    public bool Required { get; init; }

    /// <summary>Options sharing a group are alternatives (--text or --ids): at most one may be given.</summary>
    public string? Group { get; init; }

    /// <summary>May be given more than once (embed --text A --text B).</summary>
    public bool Repeatable { get; init; }

    /// <summary>The values the option accepts (checked when parsing, offered by completion); null when open.</summary>
    public IReadOnlyList<string>? Choices { get; init; }

    public bool IsFlag => Value is null;

    public static CliOption Flag(string name, string description) => new(name, description);

    public static CliOption Valued(string name, string value, string description, string? defaultValue = null) =>
        new(name, description) { Value = value, Default = defaultValue };
}

/// <summary>A word after the command that selects what it runs (`bench matmul`, `experiment sinks`), with its own options.</summary>
internal sealed record SubcommandSpec(string Name, string Summary, IReadOnlyList<CliOption> Options, string Example);

/// <summary>Everything `headlens help COMMAND` shows and the parser checks: a summary, the options, an example.</summary>
/// <param name="Summary">What the command does, one or two sentences.</param>
/// <param name="Options">Its options, in the order help lists them (the global ones are added by the parser).</param>
/// <param name="Example">One command line that works as written.</param>
internal sealed record CommandSpec(string Summary, IReadOnlyList<CliOption> Options, string Example)
{
    /// <summary>The words that may follow the command, each with its own options; empty when it takes none.</summary>
    public IReadOnlyList<SubcommandSpec> Subcommands { get; init; } = [];

    /// <summary>What one subcommand is called in messages and help ("suite", "experiment").</summary>
    public string SubcommandNoun { get; init; } = "subcommand";
}
