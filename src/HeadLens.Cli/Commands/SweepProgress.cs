using System.Diagnostics;

namespace HeadLens.Cli.Commands;

/// <summary>
/// Progress of a sweep of interventions on stderr ("ablated 24/144 heads (3.1 s)"): one line per tenth of the work
/// and one at the end, once it has taken more than a moment.
/// </summary>
internal sealed class SweepProgress(int total, string verb, string unit)
{
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private int reported;

    public void Report(int done, int all)
    {
        if (clock.Elapsed.TotalSeconds < 2 || (done * 10 / total == reported && done != all))
        {
            return;
        }

        reported = done * 10 / total;
        Console.Error.WriteLine($"{verb} {done}/{all} {unit} ({clock.Elapsed.TotalSeconds:F1} s)");
    }
}
