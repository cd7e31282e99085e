using System.Reflection;
using System.Text;

namespace HeadLens.Cli;

/// <summary>
/// The help, written from the same declarations the parser reads (<see cref="CommandSpec"/>), so it lists exactly the
/// options that parse, with their defaults: `headlens help`, `headlens help COMMAND [SUBCOMMAND]`, `COMMAND --help`.
/// </summary>
internal static class HelpWriter
{
    private const int Width = 100;

    /// <summary>The tool's version, as `headlens --version` prints it (the package version, without the commit).</summary>
    public static string Version
    {
        get
        {
            string version = typeof(HelpWriter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";
            int plus = version.IndexOf('+', StringComparison.Ordinal);
            return plus < 0 ? version : version[..plus];
        }
    }

    /// <summary>The list of commands, each with its usage line and summary.</summary>
    public static string Overview(IEnumerable<ICommand> commands)
    {
        var text = new StringBuilder();
        text.AppendLine($"headlens {Version} — the attention mechanism of large language models, made visible");
        text.AppendLine();
        text.AppendLine("usage: headlens COMMAND [options]   ([ ] optional, ( | ) choose one, ... repeatable)");
        text.AppendLine();
        foreach (var command in commands)
        {
            text.AppendLine("  headlens " + Synopsis(command.Name, command.Spec, null));
            foreach (string line in Wrap(FirstSentence(command.Spec.Summary), Width - 6))
            {
                text.AppendLine("      " + line);
            }
        }

        text.AppendLine();
        text.AppendLine("Every command takes --threads N (threads that compute) and -h/--help.");
        text.AppendLine("headlens help COMMAND (or COMMAND --help) lists a command's options, their defaults and an example;");
        text.AppendLine("headlens --version prints the version; headlens completion bash|zsh|fish|powershell prints a shell completion script.");
        return text.ToString();
    }

    /// <summary>One command's help: usage, summary, every option with its default, the subcommands, an example.</summary>
    public static string ForCommand(string name, CommandSpec spec, SubcommandSpec? subcommand)
    {
        var text = new StringBuilder();
        text.AppendLine("usage: headlens " + Synopsis(name, spec, subcommand));
        text.AppendLine();
        foreach (string line in Wrap(subcommand?.Summary ?? spec.Summary, Width))
        {
            text.AppendLine(line);
        }

        if (subcommand is null && spec.Subcommands.Count > 0)
        {
            text.AppendLine();
            text.AppendLine($"{spec.SubcommandNoun}s (headlens help {name} {spec.SubcommandNoun.ToUpperInvariant()} for its own options):");
            int width = spec.Subcommands.Max(s => s.Name.Length);
            foreach (var sub in spec.Subcommands)
            {
                string subOptions = sub.Options.Count == 0 ? "" : "  [" + string.Join(" ", sub.Options.Select(o => Usage(o, false))) + "]";
                AppendAligned(text, sub.Name.PadRight(width) + subOptions, FirstSentence(sub.Summary), 2);
            }
        }

        var options = spec.Options.Concat(subcommand?.Options ?? []).Concat(CommandLineParser.Global).ToList();
        text.AppendLine();
        text.AppendLine("options:");
        foreach (var option in options)
        {
            string left = (option.Name == "help" ? "-h, " : "") + $"--{option.Name}" + (option.IsFlag ? "" : " " + option.Value);
            string right = option.Description + Qualifiers(option, options);
            AppendAligned(text, left, right, 2);
        }

        text.AppendLine();
        text.AppendLine("example:");
        text.AppendLine("  " + (subcommand?.Example ?? spec.Example));
        return text.ToString();
    }

    /// <summary>`generate [--model MODEL] (--prompt TEXT | --ids 1,2,3) [--json]`: the usage line, optional parts in brackets.</summary>
    public static string Synopsis(string name, CommandSpec spec, SubcommandSpec? subcommand)
    {
        var parts = new List<string> { name };
        if (subcommand is not null)
        {
            parts.Add(subcommand.Name);
        }
        else if (spec.Subcommands.Count > 0)
        {
            parts.Add("(" + string.Join(" | ", spec.Subcommands.Select(s => s.Name)) + ")");
        }

        var options = spec.Options.Concat(subcommand?.Options ?? []).ToList();
        var groupsDone = new HashSet<string>(StringComparer.Ordinal);
        foreach (var option in options)
        {
            if (option.Group is { } group)
            {
                if (groupsDone.Add(group))
                {
                    var members = options.Where(o => o.Group == group).ToList();
                    string alternatives = string.Join(" | ", members.Select(o => Usage(o, true)));
                    parts.Add(members.Any(o => o.Required) ? $"({alternatives})" : $"[{alternatives}]");
                }
            }
            else
            {
                parts.Add(option.Required ? Usage(option, true) : $"[{Usage(option, true)}]");
            }
        }

        return string.Join(' ', parts);
    }

    private static string Usage(CliOption option, bool repeat) =>
        $"--{option.Name}" + (option.IsFlag ? "" : " " + option.Value) + (repeat && option.Repeatable ? " ..." : "");

    private static string Qualifiers(CliOption option, IReadOnlyList<CliOption> all)
    {
        var notes = new List<string>();
        if (option.Group is { } group)
        {
            var others = all.Where(o => o.Group == group && o != option).Select(o => "--" + o.Name);
            notes.Add((option.Required ? "required: this or " : "optional, or instead ") + string.Join(" or ", others));
        }
        else if (option.Required)
        {
            notes.Add("required");
        }

        if (option.Choices is { } choices && choices.Count <= 12)
        {
            notes.Add("one of " + string.Join(", ", choices));
        }

        if (option.Default is { } value)
        {
            notes.Add("default: " + value);
        }

        if (option.Repeatable)
        {
            notes.Add("repeatable");
        }

        return notes.Count == 0 ? "" : $" ({string.Join("; ", notes)})";
    }

    private static void AppendAligned(StringBuilder text, string left, string right, int indent)
    {
        const int Column = 26;
        string head = new string(' ', indent) + left;
        var lines = Wrap(right, Width - Column);
        if (head.Length + 2 > Column)
        {
            text.AppendLine(head);
            head = "";
        }

        foreach (string line in lines)
        {
            text.AppendLine(head.PadRight(Column) + line);
            head = "";
        }
    }

    private static string FirstSentence(string text)
    {
        int end = text.IndexOf(". ", StringComparison.Ordinal);
        return end < 0 ? text.TrimEnd('.') : text[..end];
    }

    private static List<string> Wrap(string text, int width)
    {
        var lines = new List<string>();
        var line = new StringBuilder();
        foreach (string word in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.Length > 0 && line.Length + 1 + word.Length > width)
            {
                lines.Add(line.ToString());
                line.Clear();
            }

            line.Append(line.Length > 0 ? " " : "").Append(word);
        }

        lines.Add(line.ToString());
        return lines;
    }
}
