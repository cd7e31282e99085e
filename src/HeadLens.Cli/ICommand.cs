namespace HeadLens.Cli;

/// <summary>
/// One `headlens` subcommand. Commands are discovered by reflection, so adding one is adding a file in Commands/.
/// </summary>
internal interface ICommand
{
    /// <summary>The word after `headlens`, e.g. "bench".</summary>
    string Name { get; }

    /// <summary>One line for `headlens help`: the usage, as in the CLI contract.</summary>
    string Usage { get; }

    int Run(CommandArgs args);
}
