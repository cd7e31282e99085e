using System.Globalization;

namespace HeadLens.Cli;

/// <summary>
/// Numbers as people read them, the same in every command: counts with a suffix (124.4M), small and large values in
/// short scientific form (6e-5), operation counts and bytes with units (2.1 GFLOP, 1.5 GiB), signed percentages.
/// JSON output keeps raw numbers; this is for text.
/// </summary>
internal static class Numbers
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>A count: 950, 16.38K, 124.4M, 7.242B (four significant digits, trailing zeros dropped).</summary>
    public static string Count(double n)
    {
        string[] suffixes = ["", "K", "M", "B", "T"];
        int step = 0;
        double scaled = Math.Abs(n);
        while (scaled >= 1000 && step < suffixes.Length - 1)
        {
            scaled /= 1000;
            step++;
        }

        string digits = step == 0 ? Math.Round(scaled).ToString(Invariant) : Significant(scaled, 4);
        if (step > 0 && step < suffixes.Length - 1 && double.Parse(digits, Invariant) >= 1000)
        {
            // Rounding carried into the next suffix: 999,960 is 1M, not 1000K.
            digits = Significant(scaled / 1000, 4);
            step++;
        }

        return (n < 0 ? "-" : "") + digits + suffixes[step];
    }

    /// <summary>A value: 0.25, 3.142, 1024; below 0.001 or from 100,000 up, scientific with at most 3 digits (6e-5, 1.72e10).</summary>
    public static string Value(double x)
    {
        if (x == 0 || double.IsNaN(x) || double.IsInfinity(x))
        {
            return x.ToString(Invariant);
        }

        double magnitude = Math.Abs(x);
        if (magnitude >= 1e-3 && magnitude < 1e5)
        {
            return Significant(x, 4);
        }

        int exponent = (int)Math.Floor(Math.Log10(magnitude));
        double mantissa = Math.Round(x / Math.Pow(10, exponent), 2);
        if (Math.Abs(mantissa) >= 10)
        {
            mantissa /= 10;
            exponent++;
        }

        return $"{mantissa.ToString("0.##", Invariant)}e{exponent.ToString(Invariant)}";
    }

    /// <summary>Floating-point operations with a unit: 950 FLOP, 247 MFLOP, 2.08 GFLOP, 1.5 TFLOP (three significant digits).</summary>
    public static string Flops(double flops) => WithUnit(flops, "FLOP");

    /// <summary>Bytes in binary units: 512 B, 12.5 KiB, 474.7 MiB, 1.16 GiB.</summary>
    public static string Bytes(double bytes)
    {
        string[] units = ["B", "KiB", "MiB", "GiB", "TiB"];
        int step = 0;
        while (bytes >= 1024 && step < units.Length - 1)
        {
            bytes /= 1024;
            step++;
        }

        return step == 0 ? $"{bytes.ToString("0", Invariant)} B" : $"{Significant(bytes, 4)} {units[step]}";
    }

    /// <summary>A signed relative change in percent: +0.2%, -12.5%, +0% (one decimal, trailing zero dropped).</summary>
    public static string Percent(double fraction) => (fraction >= 0 ? "+" : "-") + Math.Abs(100 * fraction).ToString("0.#", Invariant) + "%";

    private static string WithUnit(double value, string unit)
    {
        string[] prefixes = ["", "k", "M", "G", "T", "P"];
        int step = 0;
        while (Math.Abs(value) >= 999.5 && step < prefixes.Length - 1)
        {
            value /= 1000;
            step++;
        }

        return $"{Significant(value, 3)} {prefixes[step]}{unit}";
    }

    // digits significant digits, no exponent, trailing zeros dropped: Significant(124.4398, 4) = "124.4".
    private static string Significant(double x, int digits)
    {
        if (x == 0)
        {
            return "0";
        }

        int decimals = Math.Max(0, digits - 1 - (int)Math.Floor(Math.Log10(Math.Abs(x))));
        return Math.Round(x, Math.Min(decimals, 15)).ToString("0.###############", Invariant);
    }
}
