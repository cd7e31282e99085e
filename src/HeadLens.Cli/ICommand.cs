namespace HeadLens.Cli;

/// <summary>
/// One `headlens` subcommand. Commands are discovered by reflection, so adding one is adding a file in Commands/.
/// </summary>
internal interface ICommand
{
    /// <summary>The word after `headlens`, e.g. "bench".</summary>
    string Name { get; }

    /// <summary>What it does, its options and an example: the parser, the help and shell completion all read this.</summary>
    CommandSpec Spec { get; }

    int Run(CommandArgs args);
}
