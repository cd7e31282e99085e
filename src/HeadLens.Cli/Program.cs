using System.Reflection;
using HeadLens.Kernels;

namespace HeadLens.Cli;

internal static class Program
{
    // Options that take no value, across all commands.
    private static readonly HashSet<string> FlagNames = new(StringComparer.Ordinal)
    {
        "json", "resume", "force", "help", "quiet", "no-report",
    };

    private static int Main(string[] args)
    {
        var commands = DiscoverCommands();
        if (args.Length == 0 || args[0] is "help" or "--help" or "-h")
        {
            PrintHelp(commands);
            return args.Length == 0 ? 2 : 0;
        }

        if (!commands.TryGetValue(args[0], out var command))
        {
            Console.Error.WriteLine($"headlens: unknown command '{args[0]}' (try 'headlens help')");
            return 2;
        }

        try
        {
            var parsed = new CommandArgs(command.Name, args[1..], FlagNames);
            ConfigureThreads(parsed);
            if (parsed.Flag("help"))
            {
                Console.WriteLine("usage: headlens " + command.Usage);
                return 0;
            }

            return command.Run(parsed);
        }
        catch (UsageException error)
        {
            Console.Error.WriteLine("headlens " + error.Message);
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

    private static void PrintHelp(SortedDictionary<string, ICommand> commands)
    {
        Console.WriteLine("headlens — the attention mechanism of large language models, made visible");
        Console.WriteLine();
        foreach (var command in commands.Values)
        {
            Console.WriteLine("  headlens " + command.Usage);
        }

        Console.WriteLine();
        Console.WriteLine($"Every command takes --threads N: the threads that compute (default: {ComputeThreads.EnvironmentVariable}, else all cores).");
    }
}
