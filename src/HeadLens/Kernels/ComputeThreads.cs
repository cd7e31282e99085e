using System.Globalization;
using System.Runtime.ExceptionServices;

namespace HeadLens.Kernels;

// A small persistent pool for the kernels' fork–join loops: body(part) for every part in [0, parts), on the calling
// thread and up to threads − 1 workers that live for the whole process. Every kernel that splits work between threads
// goes through here, so one setting decides how many threads compute: Count (the CLI's --threads N), else the
// environment variable HEADLENS_THREADS, else all cores.
// Why not Parallel.For: a product of a GPT-2 step takes 1–5 ms, and Parallel.For's start (a task, a queue, a
// thread-pool wake-up) plus its long tail on a busy machine cost several percent of that. Here a worker that has
// just finished keeps polling its ticket for a short while (as OpenMP runtimes do), so back-to-back products find it
// running; after that it parks on its own semaphore. Parts are handed out by one atomic counter, so a thread that is
// descheduled simply takes fewer parts. One product at a time uses the pool; a second caller (another thread, or a
// part that itself multiplies) falls back to Parallel.For, so nothing ever waits on itself.
public static class ComputeThreads
{
    /// <summary>The environment variable that sets <see cref="Count"/> when nothing else does.</summary>
    public const string EnvironmentVariable = "HEADLENS_THREADS";

    /// <summary>The most threads one setting may ask for: far beyond any CPU this runs on, well below a typo.</summary>
    public const int MaxCount = 1024;

    // How long an idle worker keeps polling before it parks: long enough to bridge the other kernels of a training
    // step between two products, short enough not to hold a core for long when the work is done.
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 2000;

    private static Worker[] workers = [];
    private static long tickets;
    private static readonly ManualResetEventSlim Done = new(false, spinCount: 1000);
    private static int busy;
    private static Job? current;
    private static int count;

    /// <summary>
    /// Threads every kernel computes on (the calling thread included) unless a call names its own count: set by the
    /// CLI's --threads, else read once from HEADLENS_THREADS, else Environment.ProcessorCount.
    /// </summary>
    public static int Count
    {
        get
        {
            int value = Volatile.Read(ref count);
            if (value == 0)
            {
                value = FromEnvironment() ?? Environment.ProcessorCount;
                Interlocked.CompareExchange(ref count, value, 0);
                value = Volatile.Read(ref count);
            }

            return value;
        }

        set
        {
            if (value < 1 || value > MaxCount)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value, $"the thread count must be in [1, {MaxCount}]");
            }

            Volatile.Write(ref count, value);
        }
    }

    /// <summary>The thread count HEADLENS_THREADS asks for, or null when it is unset or empty.</summary>
    /// <exception cref="HeadLensException">The variable is not a whole number in [1, MaxCount].</exception>
    public static int? FromEnvironment() => Parse(Environment.GetEnvironmentVariable(EnvironmentVariable));

    /// <summary>Parses a HEADLENS_THREADS value: null for unset or blank, else a whole number in [1, MaxCount].</summary>
    public static int? Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        if (!int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) || value < 1 || value > MaxCount)
        {
            throw new HeadLensException($"{EnvironmentVariable} must be a whole number of threads in [1, {MaxCount}], got '{text}'");
        }

        return value;
    }

    /// <summary>Runs <paramref name="body"/> for parts 0..parts−1 on up to <see cref="Count"/> threads.</summary>
    internal static void Run(int parts, Action<int> body) => Run(parts, 0, body);

    /// <summary>
    /// Runs <paramref name="range"/>(first, end) over [0, length) in pieces of 16K elements (whole vectors) on up to
    /// <see cref="Count"/> threads; below two pieces, the whole range on the calling thread, where the threads' start
    /// would cost more than they save. For elementwise kernels.
    /// </summary>
    internal static void RunInPieces(int length, Action<int, int> range)
    {
        const int piece = 16 * 1024;
        if (length < 2 * piece)
        {
            range(0, length);
            return;
        }

        int parts = (length + piece - 1) / piece;
        Run(parts, part => range(part * piece, Math.Min(length, (part + 1) * piece)));
    }

    /// <summary>
    /// Runs <paramref name="body"/> for parts 0..parts−1 on up to <paramref name="threads"/> threads
    /// (0 = <see cref="Count"/>).
    /// </summary>
    internal static void Run(int parts, int threads, Action<int> body)
    {
        threads = threads > 0 ? threads : Count;
        int helpers = Math.Min(threads, parts) - 1;
        if (helpers <= 0)
        {
            for (int part = 0; part < parts; part++)
            {
                body(part);
            }

            return;
        }

        if (Interlocked.CompareExchange(ref busy, 1, 0) != 0)
        {
            try
            {
                Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
            }
            catch (AggregateException error) when (error.InnerExceptions.Count > 0)
            {
                // The pool's own path throws a part's failure as it is: so does this one, so that what a caller
                // catches does not depend on whether another computation held the pool.
                ExceptionDispatchInfo.Capture(error.InnerExceptions[0]).Throw();
            }

            return;
        }

        try
        {
            var job = new Job(body, parts);
            Done.Reset();
            Volatile.Write(ref current, job);
            long ticket = Interlocked.Increment(ref tickets);
            var team = Workers(helpers);
            for (int i = 0; i < helpers; i++)
            {
                team[i].Call(ticket);
            }

            job.Work();
            Done.Wait();
            job.Failure?.Throw();
        }
        finally
        {
            Volatile.Write(ref busy, 0);
        }
    }

    // At least `helpers` workers, started the first time they are needed (only the pool's holder calls this, so the
    // array is never grown by two threads at once). Workers live for the process: a later, smaller count leaves the
    // extra ones parked.
    private static Worker[] Workers(int helpers)
    {
        if (workers.Length < helpers)
        {
            var grown = new Worker[helpers];
            workers.CopyTo(grown, 0);
            for (int i = workers.Length; i < helpers; i++)
            {
                grown[i] = new Worker(i);
            }

            workers = grown;
        }

        return workers;
    }

    /// <summary>One call's parts: the next part to hand out, the parts not yet finished, the first failure.</summary>
    private sealed class Job(Action<int> body, int parts)
    {
        private readonly int count = parts;
        private int next;
        private int remaining = parts;

        public ExceptionDispatchInfo? Failure { get; private set; }

        public void Work()
        {
            int part;
            while ((part = Interlocked.Increment(ref next) - 1) < count)
            {
                try
                {
                    body(part);
                }
                catch (Exception error)
                {
                    Failure ??= ExceptionDispatchInfo.Capture(error);
                }

                if (Interlocked.Decrement(ref remaining) == 0)
                {
                    Done.Set();
                }
            }
        }
    }

    private sealed class Worker
    {
        private long ticket;
        private int parked;

        public Worker(int index)
        {
            var thread = new Thread(Loop) { IsBackground = true, Name = $"HeadLens compute {index + 1}" };
            thread.Start();
        }

        private SemaphoreSlim Wake { get; } = new(0);

        /// <summary>Hands the worker the job of <paramref name="newTicket"/>: seen at once if it is polling.</summary>
        public void Call(long newTicket)
        {
            Volatile.Write(ref ticket, newTicket);
            if (Interlocked.Exchange(ref parked, 0) == 1)
            {
                Wake.Release();
            }
        }

        private void Loop()
        {
            long seen = 0;
            while (true)
            {
                long deadline = System.Diagnostics.Stopwatch.GetTimestamp() + SpinTicks;
                while (Volatile.Read(ref ticket) == seen && System.Diagnostics.Stopwatch.GetTimestamp() < deadline)
                {
                    Thread.SpinWait(20);
                }

                if (Volatile.Read(ref ticket) == seen)
                {
                    // Park, but re-read the ticket after announcing it: a Call in between either sees parked = 1 and
                    // releases the semaphore, or wrote its ticket before the re-read. A spare release only makes a
                    // later wait return early, and the loop then polls again.
                    Interlocked.Exchange(ref parked, 1);
                    if (Volatile.Read(ref ticket) == seen)
                    {
                        Wake.Wait();
                    }

                    Interlocked.Exchange(ref parked, 0);
                    continue;
                }

                seen = Volatile.Read(ref ticket);
                // A late start may find the job finished (its caller took every part): Work then returns at once.
                Volatile.Read(ref current)?.Work();
            }
        }
    }
}
