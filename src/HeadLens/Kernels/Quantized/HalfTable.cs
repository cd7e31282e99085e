using System.Runtime.InteropServices;

namespace HeadLens.Kernels.Quantized;

// Every IEEE half bit pattern as float32: BlockDecoder.Half's exact values, zeros, subnormals, infinities and NaNs
// included (65,536 floats, 256 KiB, built on first use and kept for the process). Why: a row dot of a decode step
// converts two block scales per super-block, .NET 10 has no F16C conversion, and the branch-free vector conversion
// is ~17 instructions where a load from here is two (Q4_K's integer row dot went from ~26 to ~22 cycles per
// super-block on Zen 4). The few entries a model's scales use stay in L1 and L2. ggml keeps the same table for CPUs
// without F16C.
internal static unsafe class HalfTable
{
    /// <summary>Values[bits] = the half with those bits, as float32. Callers load the pointer once, before their loop.</summary>
    public static readonly float* Values = Build();

    private static float* Build()
    {
        var values = (float*)NativeMemory.AlignedAlloc(65536 * sizeof(float), 64);
        for (int bits = 0; bits < 65536; bits++)
        {
            ushort half = (ushort)bits;
            values[bits] = BlockDecoder.Half((byte*)&half);
        }

        return values;
    }
}
