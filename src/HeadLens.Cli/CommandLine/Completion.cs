namespace HeadLens.Cli;

/// <summary>
/// Shell completion from the declared commands and options. The scripts `headlens completion SHELL` prints call
/// `headlens __complete WORD...` (the words after `headlens`, the last one being the word under the cursor, possibly
/// empty) and offer what it prints, one candidate a line; where it prints nothing (a file or a model path), the shell
/// falls back to file names.
/// </summary>
internal static class Completion
{
    public const string Entry = "__complete";

    public static IReadOnlyList<string> Candidates(IReadOnlyDictionary<string, ICommand> commands, IReadOnlyList<string> words)
    {
        string current = words.Count == 0 ? "" : words[^1];
        var before = words.Take(Math.Max(0, words.Count - 1)).ToList();
        IEnumerable<string> candidates;
        if (before.Count == 0)
        {
            candidates = commands.Keys.Append("help").Concat(current.StartsWith('-') ? ["--help", "--version"] : []);
        }
        else if (before[0] == "help")
        {
            candidates = before.Count == 1 ? commands.Keys
                : before.Count == 2 && commands.TryGetValue(before[1], out var named) ? named.Spec.Subcommands.Select(s => s.Name) : [];
        }
        else if (!commands.TryGetValue(before[0], out var command))
        {
            candidates = [];
        }
        else
        {
            candidates = ForCommand(command.Spec, before.Skip(1).ToList(), current);
        }

        return candidates.Where(c => c.StartsWith(current, StringComparison.Ordinal)).Distinct().ToList();
    }

    private static IEnumerable<string> ForCommand(CommandSpec spec, List<string> given, string current)
    {
        var subcommand = spec.Subcommands.FirstOrDefault(s => given.Contains(s.Name));
        var declared = CommandLineParser.Declared(spec, subcommand);
        if (given.Count > 0 && given[^1].StartsWith("--", StringComparison.Ordinal) && declared.TryGetValue(given[^1][2..], out var previous) && !previous.IsFlag)
        {
            // The word under the cursor is this option's value: its choices, or nothing (the shell completes files).
            return previous.Choices ?? [];
        }

        if (current.StartsWith('-'))
        {
            return declared.Values
                .Where(o => o.Repeatable || !given.Contains("--" + o.Name))
                .Select(o => "--" + o.Name);
        }

        return subcommand is null ? spec.Subcommands.Select(s => s.Name) : [];
    }

    /// <summary>The script for one shell; each calls back into `headlens __complete`.</summary>
    public static string Script(string shell) => shell switch
    {
        "bash" => """
            # headlens completion for bash. Load it with: source <(headlens completion bash)
            _headlens_complete() {
                local IFS=$'\n'
                local candidates
                candidates=$(headlens __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
                COMPREPLY=($(compgen -W "$candidates" -- "${COMP_WORDS[COMP_CWORD]}"))
            }
            complete -o default -F _headlens_complete headlens

            """,
        "zsh" => """
            # headlens completion for zsh (through bash's completion API). Load it with: source <(headlens completion zsh)
            autoload -U +X bashcompinit && bashcompinit
            _headlens_complete() {
                local IFS=$'\n'
                local candidates
                candidates=$(headlens __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)
                COMPREPLY=($(compgen -W "$candidates" -- "${COMP_WORDS[COMP_CWORD]}"))
            }
            complete -o default -F _headlens_complete headlens

            """,
        "fish" => """
            # headlens completion for fish. Load it with: headlens completion fish | source
            complete -c headlens -a '(headlens __complete (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'

            """,
        "powershell" => """
            # headlens completion for PowerShell. Load it with: headlens completion powershell | Out-String | Invoke-Expression
            Register-ArgumentCompleter -Native -CommandName headlens -ScriptBlock {
                param($wordToComplete, $commandAst, $cursorPosition)
                $words = @($commandAst.CommandElements | Select-Object -Skip 1 | ForEach-Object { $_.ToString() })
                if ($wordToComplete -eq '') { $words += '' }
                headlens __complete @words 2>$null | ForEach-Object {
                    [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
                }
            }

            """,
        _ => throw new ArgumentOutOfRangeException(nameof(shell), shell, "unknown shell"),
    };

    public static readonly string[] Shells = ["bash", "zsh", "fish", "powershell"];
}
