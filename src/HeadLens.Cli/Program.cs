using System.Reflection;
using HeadLens.Kernels;

namespace HeadLens.Cli;

internal static class Program
{
    private static int Main(string[] args)
    {
        var commands = DiscoverCommands();
        if (args.Length > 0 && args[0] == Completion.Entry)
        {
            foreach (string candidate in Completion.Candidates(commands, args[1..]))
            {
                Console.WriteLine(candidate);
            }

            return 0;
        }

        if (args.Length == 0 || args[0] is "--help" or "-h" || (args[0] == "help" && args.Length == 1))
        {
            Console.Write(HelpWriter.Overview(commands.Values));
            return args.Length == 0 ? 2 : 0;
        }

        if (args[0] is "--version")
        {
            Console.WriteLine($"headlens {HelpWriter.Version}");
            return 0;
        }

        if (args[0] == "help")
        {
            return Help(commands, args[1..]);
        }

        if (args[0].StartsWith('-'))
        {
            Console.Error.WriteLine($"headlens: options come after the command (headlens COMMAND {args[0]} ...); try 'headlens help'");
            return 2;
        }

        if (!commands.TryGetValue(args[0], out var command))
        {
            Console.Error.WriteLine($"headlens: unknown command '{args[0]}'{Suggestions.DidYouMean(args[0], commands.Keys)} (try 'headlens help')");
            return 2;
        }

        try
        {
            var parsed = CommandLineParser.Parse(command.Name, command.Spec, args[1..]);
            if (parsed.HelpRequested)
            {
                Console.Write(HelpWriter.ForCommand(command.Name, command.Spec, parsed.Subcommand));
                return 0;
            }

            ConfigureThreads(parsed);

            return command.Run(parsed);
        }
        catch (UsageException error)
        {
            Console.Error.WriteLine($"headlens {error.Message} (see 'headlens help {command.Name}')");
            return 2;
        }
        catch (HeadLensException error)
        {
            Console.Error.WriteLine($"headlens {command.Name}: {error.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"headlens {command.Name}: cancelled");
            return 130;
        }
        catch (Exception error) when (Environment.GetEnvironmentVariable("HEADLENS_DEBUG") != "1")
        {
            // A bug, not bad input: still one line, with a way to see the trace.
            Console.Error.WriteLine(
                $"headlens {command.Name}: internal error: {error.GetType().Name}: {error.Message} (set HEADLENS_DEBUG=1 for the trace)");
            return 70;
        }
    }

    // One setting for every kernel's thread count, read before the command starts so that a bad value is one line
    // before any work: --threads N (any command), else HEADLENS_THREADS, else all cores.
    private static void ConfigureThreads(CommandArgs args)
    {
        ComputeThreads.Count = args.Has("threads")
            ? args.GetInt("threads", 0, 1, ComputeThreads.MaxCount)
            : ComputeThreads.FromEnvironment() ?? Environment.ProcessorCount;
    }

    private static SortedDictionary<string, ICommand> DiscoverCommands()
    {
        var commands = new SortedDictionary<string, ICommand>(StringComparer.Ordinal);
        foreach (var type in Assembly.GetExecutingAssembly().GetTypes())
        {
            if (type.IsClass && !type.IsAbstract && typeof(ICommand).IsAssignableFrom(type))
            {
                var command = (ICommand)Activator.CreateInstance(type)!;
                commands.Add(command.Name, command);
            }
        }

        return commands;
    }

    // `headlens help COMMAND [SUBCOMMAND]`: the same text as `COMMAND [SUBCOMMAND] --help`.
    private static int Help(SortedDictionary<string, ICommand> commands, string[] words)
    {
        if (!commands.TryGetValue(words[0], out var command))
        {
            Console.Error.WriteLine($"headlens help: unknown command '{words[0]}'{Suggestions.DidYouMean(words[0], commands.Keys)} (try 'headlens help')");
            return 2;
        }

        SubcommandSpec? subcommand = null;
        if (words.Length > 1)
        {
            subcommand = command.Spec.Subcommands.FirstOrDefault(s => s.Name == words[1]);
            if (subcommand is null || words.Length > 2)
            {
                Console.Error.WriteLine($"headlens help {command.Name}: unknown {command.Spec.SubcommandNoun} '{string.Join(' ', words[1..])}'" +
                    Suggestions.DidYouMean(words[1], command.Spec.Subcommands.Select(s => s.Name)));
                return 2;
            }
        }

        Console.Write(HelpWriter.ForCommand(command.Name, command.Spec, subcommand));
        return 0;
    }
}
