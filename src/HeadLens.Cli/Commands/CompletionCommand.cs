namespace HeadLens.Cli.Commands;

/// <summary>Prints a shell completion script (commands, options, subcommands and option values come from the declarations).</summary>
internal sealed class CompletionCommand : ICommand
{
    public string Name => "completion";

    public CommandSpec Spec { get; } = new(
        "Print a script that completes headlens's commands, options and option values in your shell.",
        [],
        "source <(headlens completion bash)")
    {
        SubcommandNoun = "shell",
        Subcommands = [.. Completion.Shells.Select(shell => new SubcommandSpec(shell, $"The completion script for {shell}.", [],
            shell switch
            {
                "fish" => "headlens completion fish | source",
                "powershell" => "headlens completion powershell | Out-String | Invoke-Expression",
                _ => $"source <(headlens completion {shell})",
            }))],
    };

    public int Run(CommandArgs args)
    {
        args.RejectUnknown();
        Console.Write(Completion.Script(args.Positional[0]));
        return 0;
    }
}
