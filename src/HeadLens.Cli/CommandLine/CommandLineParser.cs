namespace HeadLens.Cli;

/// <summary>
/// Reads the words after the command name against the command's declared options: `--name value`, `--name=value`,
/// flags, repeats, alternatives and required options, each mistake one line that names the option (and the nearest
/// declared name when it looks like a typo). A value may not itself look like an option (`--prompt --json` is a
/// missing value, not the text "--json") unless it is attached with `=` (`--prompt=--json`).
/// </summary>
internal static class CommandLineParser
{
    /// <summary>Options every command takes.</summary>
    public static readonly IReadOnlyList<CliOption> Global = [SharedOptions.Threads, SharedOptions.Help];

    public static CommandArgs Parse(string command, CommandSpec spec, IReadOnlyList<string> words)
    {
        var subcommand = FindSubcommand(command, spec, words, out int subcommandAt);
        var declared = Declared(spec, subcommand);
        string where = subcommand is null ? command : $"{command} {subcommand.Name}";
        var options = new Dictionary<string, List<string?>>(StringComparer.Ordinal);
        var positional = new List<string>();
        bool help = false;
        for (int i = 0; i < words.Count; i++)
        {
            string word = words[i];
            if (i == subcommandAt)
            {
                positional.Add(word);
                continue;
            }

            if (word is "-h" or "--help")
            {
                help = true;
                continue;
            }

            if (!word.StartsWith("--", StringComparison.Ordinal) || word.Length == 2)
            {
                throw new UsageException($"{where}: unexpected argument '{word}'" + (spec.Subcommands.Count > 0 && subcommand is null
                    ? $" (one of {string.Join(", ", spec.Subcommands.Select(s => s.Name))})"
                    : " (options start with --; a value that contains spaces needs quotes)"));
            }

            string name = word[2..];
            string? value = null;
            int equals = name.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                value = name[(equals + 1)..];
                name = name[..equals];
            }

            if (!declared.TryGetValue(name, out var option))
            {
                throw new UsageException($"{where}: unknown option --{name}{UnknownOptionHint(name, spec, subcommand, declared.Keys)}");
            }

            if (option.IsFlag && value is not null)
            {
                throw new UsageException($"{where}: --{name} is a flag and takes no value (got '{value}')");
            }

            if (!option.IsFlag && value is null)
            {
                if (i + 1 >= words.Count)
                {
                    throw new UsageException($"{where}: option --{name} needs a value ({option.Value})");
                }

                string next = words[i + 1];
                if (next.StartsWith("--", StringComparison.Ordinal) && next.Length > 2)
                {
                    throw new UsageException($"{where}: option --{name} needs a value ({option.Value}), got the option {next}; " +
                        $"write --{name}={next} if the value really starts with --");
                }

                value = next;
                i++;
            }

            if (!options.TryGetValue(name, out var values))
            {
                options[name] = values = [];
            }
            else if (!option.Repeatable)
            {
                throw new UsageException($"{where}: option --{name} is given twice");
            }

            if (option.Choices is { } choices && value is not null && !choices.Contains(value, StringComparer.OrdinalIgnoreCase))
            {
                throw new UsageException($"{where}: --{name} {value}: unknown {name}{Suggestions.DidYouMean(value, choices)} (one of {string.Join(", ", choices)})");
            }

            values.Add(value);
        }

        if (!help)
        {
            if (spec.Subcommands.Count > 0 && subcommand is null)
            {
                throw new UsageException($"{command}: name one {spec.SubcommandNoun}: {string.Join(", ", spec.Subcommands.Select(s => s.Name))}");
            }

            CheckRequired(where, declared.Values, options);
        }

        return new CommandArgs(command, options, positional, declared) { HelpRequested = help, Subcommand = subcommand };
    }

    /// <summary>The command's, the subcommand's and the global options, by name.</summary>
    public static Dictionary<string, CliOption> Declared(CommandSpec spec, SubcommandSpec? subcommand)
    {
        var declared = new Dictionary<string, CliOption>(StringComparer.Ordinal);
        foreach (var option in spec.Options.Concat(subcommand?.Options ?? []).Concat(Global))
        {
            declared.TryAdd(option.Name, option);
        }

        return declared;
    }

    // The subcommand is the first word that is neither an option nor an option's value. Which options take values
    // is known before the subcommand is: any option that takes one in the command or in any of its subcommands.
    private static SubcommandSpec? FindSubcommand(string command, CommandSpec spec, IReadOnlyList<string> words, out int at)
    {
        at = -1;
        if (spec.Subcommands.Count == 0)
        {
            return null;
        }

        var valued = spec.Options.Concat(spec.Subcommands.SelectMany(s => s.Options)).Concat(Global)
            .Where(o => !o.IsFlag).Select(o => o.Name).ToHashSet(StringComparer.Ordinal);
        for (int i = 0; i < words.Count; i++)
        {
            string word = words[i];
            if (word.StartsWith('-'))
            {
                if (word.StartsWith("--", StringComparison.Ordinal) && !word.Contains('=', StringComparison.Ordinal) && valued.Contains(word[2..]))
                {
                    i++;
                }

                continue;
            }

            at = i;
            return spec.Subcommands.FirstOrDefault(s => s.Name == word)
                ?? throw new UsageException($"{command}: unknown {spec.SubcommandNoun} '{word}'{Suggestions.DidYouMean(word, spec.Subcommands.Select(s => s.Name))} " +
                    $"(one of {string.Join(", ", spec.Subcommands.Select(s => s.Name))})");
        }

        return null;
    }

    private static string UnknownOptionHint(string name, CommandSpec spec, SubcommandSpec? subcommand, IEnumerable<string> declared)
    {
        string typo = Suggestions.DidYouMeanOption(name, declared);
        if (typo.Length > 0)
        {
            return typo;
        }

        var owner = spec.Subcommands.FirstOrDefault(s => s != subcommand && s.Options.Any(o => o.Name == name));
        return owner is null ? "" : $" (it belongs to {owner.Name})";
    }

    private static void CheckRequired(string where, IEnumerable<CliOption> declared, Dictionary<string, List<string?>> given)
    {
        foreach (var group in declared.Where(o => o.Group is not null).GroupBy(o => o.Group))
        {
            var members = group.ToList();
            var present = members.Where(o => given.ContainsKey(o.Name)).ToList();
            string alternatives = string.Join(" or ", members.Select(o => $"--{o.Name} {o.Value}".TrimEnd()));
            if (present.Count > 1 || (present.Count == 0 && members.Any(o => o.Required)))
            {
                string howMany = members.Any(o => o.Required) ? "exactly" : "at most";
                throw new UsageException($"{where}: give {howMany} one of {alternatives}");
            }
        }

        foreach (var option in declared.Where(o => o.Required && o.Group is null && !given.ContainsKey(o.Name)))
        {
            throw new UsageException($"{where}: missing --{option.Name} {option.Value}".TrimEnd());
        }
    }
}
