using System.Globalization;

namespace HeadLens.Cli;

/// <summary>A user error in the command line: printed as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// The arguments after the command name: positional words and `--name value` / `--flag` options.
/// Every option a command reads is marked used; unknown options are reported instead of silently ignored.
/// </summary>
internal sealed class CommandArgs
{
    private readonly Dictionary<string, List<string?>> options = new(StringComparer.Ordinal);
    private readonly HashSet<string> read = new(StringComparer.Ordinal);

    public CommandArgs(string command, IReadOnlyList<string> words, IReadOnlySet<string> flagNames)
    {
        Command = command;
        var positional = new List<string>();
        for (int i = 0; i < words.Count; i++)
        {
            string word = words[i];
            if (word.StartsWith("--", StringComparison.Ordinal) && word.Length > 2)
            {
                string name = word[2..];
                string? value = null;
                int equals = name.IndexOf('=', StringComparison.Ordinal);
                if (equals >= 0)
                {
                    value = name[(equals + 1)..];
                    name = name[..equals];
                }
                else if (!flagNames.Contains(name))
                {
                    if (i + 1 >= words.Count)
                    {
                        throw new UsageException($"{command}: option --{name} needs a value");
                    }

                    value = words[++i];
                }

                // Repeats are kept: GetAll reads them (embed --text A --text B); Get refuses them.
                if (!options.TryGetValue(name, out var values))
                {
                    options[name] = values = [];
                }

                values.Add(value);
            }
            else
            {
                positional.Add(word);
            }
        }

        Positional = positional;
    }

    public string Command { get; }

    public IReadOnlyList<string> Positional { get; }

    public bool Has(string name)
    {
        read.Add(name);
        return options.ContainsKey(name);
    }

    public bool Flag(string name) => Has(name);

    public string? Get(string name)
    {
        read.Add(name);
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
        read.Add(name);
        return options.TryGetValue(name, out var values)
            ? values.Select(value => value ?? throw new UsageException($"{Command}: option --{name} needs a value")).ToList()
            : [];
    }

    public string Require(string name) =>
        Get(name) ?? throw new UsageException($"{Command}: missing --{name}");

    public int GetInt(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
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

    /// <summary>Call after reading every option: an option nobody read is a typo the user should hear about.</summary>
    public void RejectUnknown()
    {
        foreach (string name in options.Keys)
        {
            if (!read.Contains(name))
            {
                throw new UsageException($"{Command}: unknown option --{name}");
            }
        }
    }
}
