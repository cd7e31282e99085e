using System.Globalization;

namespace HeadLens.Cli;

/// <summary>A user error in the command line: printed as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The arguments after the command name, as <see cref="CommandLineParser"/> read them against the command's declared
/// options: positional words (a subcommand) and option values. Command bodies read values here; reading an option the
/// command does not declare is a bug in HeadLens, reported as one.
/// </summary>
internal sealed class CommandArgs
{
    private readonly Dictionary<string, List<string?>> options;
    private readonly IReadOnlyDictionary<string, CliOption> declared;
    private readonly HashSet<string> read = new(StringComparer.Ordinal);

    public CommandArgs(string command, Dictionary<string, List<string?>> options, IReadOnlyList<string> positional, IReadOnlyDictionary<string, CliOption> declared)
    {
        Command = command;
        this.options = options;
        this.declared = declared;
        Positional = positional;
    }

    /// <summary>-h or --help was given: the command prints its help instead of running.</summary>
    public bool HelpRequested { get; init; }

    /// <summary>The subcommand named (bench matmul), when the command has them.</summary>
    public SubcommandSpec? Subcommand { get; init; }

    public string Command { get; }

    public IReadOnlyList<string> Positional { get; }

    public bool Has(string name)
    {
        MarkRead(name);
        return options.ContainsKey(name);
    }

    public bool Flag(string name) => Has(name);

    public string? Get(string name)
    {
        MarkRead(name);
        if (!options.TryGetValue(name, out var values))
        {
            return null;
        }

        return values.Count == 1 ? values[0] : throw new UsageException($"{Command}: option --{name} is given twice");
    }

    /// <summary>These arguments with an option set where the user gave none (a command's own default).</summary>
    public CommandArgs WithDefault(string name, string value)
    {
        if (!options.ContainsKey(name))
        {
            options[name] = [value];
        }

        return this;
    }

    /// <summary>Every value of an option that may be repeated, in order (empty when absent).</summary>
    public IReadOnlyList<string> GetAll(string name)
    {
        MarkRead(name);
        return options.TryGetValue(name, out var values)
            ? values.Select(value => value ?? throw new UsageException($"{Command}: option --{name} needs a value")).ToList()
            : [];
    }

    public string Require(string name) =>
        Get(name) ?? throw new UsageException($"{Command}: missing --{name}");

    public int GetInt(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        CheckDefault(name, fallback.ToString(CultureInfo.InvariantCulture), text => int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value == fallback : null);
        string? text = Get(name);
        if (text is null)
        {
            return fallback;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) || value < min || value > max)
        {
            throw new UsageException($"{Command}: --{name} must be an integer in [{min}, {max}], got '{text}'");
        }

        return value;
    }

    public double GetDouble(string name, double fallback, double min = double.MinValue, double max = double.MaxValue)
    {
        CheckDefault(name, fallback.ToString(CultureInfo.InvariantCulture), text => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) ? value == fallback : null);
        string? text = Get(name);
        if (text is null)
        {
            return fallback;
        }

        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
            || double.IsNaN(value) || value < min || value > max)
        {
            throw new UsageException($"{Command}: --{name} must be a number in [{min}, {max}], got '{text}'");
        }

        return value;
    }

    /// <summary>Parses a comma-separated id list such as `1,2,3`.</summary>
    public int[]? GetIds(string name)
    {
        string? text = Get(name);
        if (text is null)
        {
            return null;
        }

        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out ids[i]) || ids[i] < 0)
            {
                throw new UsageException($"{Command}: --{name}: '{parts[i]}' is not a token id");
            }
        }

        if (ids.Length == 0)
        {
            throw new UsageException($"{Command}: --{name} is empty");
        }

        return ids;
    }

    private void MarkRead(string name)
    {
        if (!declared.ContainsKey(name))
        {
            throw new InvalidOperationException($"{Command} reads --{name} but does not declare it (add it to the command's Spec)");
        }

        read.Add(name);
    }

    // A numeric default shown in help must be the fallback the body uses when the option is absent; a descriptive one
    // ("all cores") is not checked, nor a fallback that cannot apply because the option is given.
    private void CheckDefault(string name, string fallback, Func<string, bool?> equalsFallback)
    {
        if (!options.ContainsKey(name) && declared.TryGetValue(name, out var option) && option.Default is { } shown && equalsFallback(shown) == false)
        {
            throw new InvalidOperationException($"{Command}: help says --{name} defaults to {shown}, the command uses {fallback}");
        }
    }

    /// <summary>
    /// Call after reading every option: an option nobody read is a typo the user should hear about, or a declared one
    /// that the other options given leave without effect.
    /// </summary>
    public void RejectUnknown()
    {
        foreach (string name in options.Keys)
        {
            if (!read.Contains(name))
            {
                throw new UsageException(declared.ContainsKey(name)
                    ? $"{Command}: --{name} has no effect together with the other options given"
                    : $"{Command}: unknown option --{name}");
            }
        }
    }
}
