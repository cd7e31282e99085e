using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// Sixteen rows (eight with AVX2) of ggml blocks read as 32-bit words and transposed in registers, so that word j of row i lands in lane i
// of vector j: the decoders that fill a panel (one lane per row of W) use it instead of AVX2's 8-lane gathers
// (.NET 10 has no AVX-512 gather), which cost ~16 cycles per gather on Zen 4. Rows from `count` on repeat row 0
// (partial panels); the caller masks or ignores those lanes, and keeps every load inside the rows' bytes (64 bytes
// from the offset for Quads, 32 for Eights, 16 for Transpose4).
internal static unsafe class RowWords
{
    // Row i of 16 (those from `count` on repeat row 0).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static byte* Row(byte* first, int rowBytes, int count, int i) => first + (i < count ? (long)i * rowBytes : 0);

    // The 64 bytes at `offset` of 16 rows as 16 words each, half transposed: unpacking words, then word pairs,
    // within 128-bit lanes leaves rows 4q … 4q + 3 of word 4L + c in lane L of quads[4q + c]. Columns finishes it.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Quads(byte* first, int rowBytes, int count, int offset, Vector512<int>* quads)
    {
        for (int q = 0; q < 16; q += 4)
        {
            var r0 = Vector512.Load((int*)(Row(first, rowBytes, count, q) + offset));
            var r1 = Vector512.Load((int*)(Row(first, rowBytes, count, q + 1) + offset));
            var r2 = Vector512.Load((int*)(Row(first, rowBytes, count, q + 2) + offset));
            var r3 = Vector512.Load((int*)(Row(first, rowBytes, count, q + 3) + offset));
            Vector512<long> t0 = Avx512F.UnpackLow(r0, r1).AsInt64(), t1 = Avx512F.UnpackHigh(r0, r1).AsInt64();
            Vector512<long> t2 = Avx512F.UnpackLow(r2, r3).AsInt64(), t3 = Avx512F.UnpackHigh(r2, r3).AsInt64();
            quads[q] = Avx512F.UnpackLow(t0, t2).AsInt32();
            quads[q + 1] = Avx512F.UnpackHigh(t0, t2).AsInt32();
            quads[q + 2] = Avx512F.UnpackLow(t1, t3).AsInt32();
            quads[q + 3] = Avx512F.UnpackHigh(t1, t3).AsInt32();
        }
    }

    // Words c, 4 + c, 8 + c and 12 + c of the 16 rows whose Quads these are, row i in lane i: two rounds of 128-bit
    // shuffles gather lane L of the four row quads. The columns go straight to their use, not back to memory.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Columns(Vector512<int>* quads, int c, out Vector512<int> word0, out Vector512<int> word4, out Vector512<int> word8, out Vector512<int> word12)
    {
        Vector512<int> u0 = quads[c], u1 = quads[4 + c], u2 = quads[8 + c], u3 = quads[12 + c];
        var low01 = Avx512F.Shuffle4x128(u0, u1, 0x44);
        var high01 = Avx512F.Shuffle4x128(u0, u1, 0xEE);
        var low23 = Avx512F.Shuffle4x128(u2, u3, 0x44);
        var high23 = Avx512F.Shuffle4x128(u2, u3, 0xEE);
        word0 = Avx512F.Shuffle4x128(low01, low23, 0x88);
        word4 = Avx512F.Shuffle4x128(low01, low23, 0xDD);
        word8 = Avx512F.Shuffle4x128(high01, high23, 0x88);
        word12 = Avx512F.Shuffle4x128(high01, high23, 0xDD);
    }

    // The 16 bytes at `offset` of 16 rows as four words each, transposed: columns[j] lane i = word j of row i. Vector k
    // is loaded with rows k, 4 + k, 8 + k, 12 + k in its 128-bit lanes, so that one 4 × 4 transpose per lane puts
    // rows 4L … 4L + 3 in lane L.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose4(byte* first, int rowBytes, int count, int offset, Vector512<int>* columns)
    {
        Vector512<int> z0 = Quad(first, rowBytes, count, offset, 0), z1 = Quad(first, rowBytes, count, offset, 1);
        Vector512<int> z2 = Quad(first, rowBytes, count, offset, 2), z3 = Quad(first, rowBytes, count, offset, 3);
        Vector512<long> t0 = Avx512F.UnpackLow(z0, z1).AsInt64(), t1 = Avx512F.UnpackHigh(z0, z1).AsInt64();
        Vector512<long> t2 = Avx512F.UnpackLow(z2, z3).AsInt64(), t3 = Avx512F.UnpackHigh(z2, z3).AsInt64();
        columns[0] = Avx512F.UnpackLow(t0, t2).AsInt32();
        columns[1] = Avx512F.UnpackHigh(t0, t2).AsInt32();
        columns[2] = Avx512F.UnpackLow(t1, t3).AsInt32();
        columns[3] = Avx512F.UnpackHigh(t1, t3).AsInt32();
    }

    // Rows k, 4 + k, 8 + k and 12 + k's 16 bytes at `offset`, one per 128-bit lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Quad(byte* first, int rowBytes, int count, int offset, int k) => Vector512.Create(
        Vector256.Create(Vector128.Load((int*)(Row(first, rowBytes, count, k) + offset)), Vector128.Load((int*)(Row(first, rowBytes, count, 4 + k) + offset))),
        Vector256.Create(Vector128.Load((int*)(Row(first, rowBytes, count, 8 + k) + offset)), Vector128.Load((int*)(Row(first, rowBytes, count, 12 + k) + offset))));

    // The 32 bytes at `offset` of 16 rows as 8 words each, transposed: words[j] lane i = word j of row i. Vector k
    // holds rows k and 8 + k (256 bits each); unpacking as in Quads leaves rows 4q … 4q + 3 of word 4a + c in lane a
    // of vector 4q + c and rows 4q + 8 … 4q + 11 in lane 2 + a; one 128-bit shuffle takes those four lanes of the two
    // row quads, a second puts them in row order.
    [SkipLocalsInit]
    internal static void Eights(byte* first, int rowBytes, int count, int offset, Vector512<int>* words)
    {
        var quads = stackalloc Vector512<int>[8];
        for (int q = 0; q < 2; q++)
        {
            var r0 = Pair(first, rowBytes, count, offset, 4 * q);
            var r1 = Pair(first, rowBytes, count, offset, (4 * q) + 1);
            var r2 = Pair(first, rowBytes, count, offset, (4 * q) + 2);
            var r3 = Pair(first, rowBytes, count, offset, (4 * q) + 3);
            Vector512<long> t0 = Avx512F.UnpackLow(r0, r1).AsInt64(), t1 = Avx512F.UnpackHigh(r0, r1).AsInt64();
            Vector512<long> t2 = Avx512F.UnpackLow(r2, r3).AsInt64(), t3 = Avx512F.UnpackHigh(r2, r3).AsInt64();
            quads[4 * q] = Avx512F.UnpackLow(t0, t2).AsInt32();
            quads[(4 * q) + 1] = Avx512F.UnpackHigh(t0, t2).AsInt32();
            quads[(4 * q) + 2] = Avx512F.UnpackLow(t1, t3).AsInt32();
            quads[(4 * q) + 3] = Avx512F.UnpackHigh(t1, t3).AsInt32();
        }

        for (int c = 0; c < 4; c++)
        {
            // Lanes [a, 2 + a] of both row quads, then reordered to rows 0-3, 4-7, 8-11, 12-15.
            var low = Avx512F.Shuffle4x128(quads[c], quads[4 + c], 0x88);
            var high = Avx512F.Shuffle4x128(quads[c], quads[4 + c], 0xDD);
            words[c] = Avx512F.Shuffle4x128(low, low, 0xD8);
            words[4 + c] = Avx512F.Shuffle4x128(high, high, 0xD8);
        }
    }

    // Rows k and 8 + k's 32 bytes at `offset`, one per 256-bit half.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<int> Pair(byte* first, int rowBytes, int count, int offset, int k) => Vector512.Create(
        Vector256.Load((int*)(Row(first, rowBytes, count, k) + offset)), Vector256.Load((int*)(Row(first, rowBytes, count, 8 + k) + offset)));

    // The 16 bytes at `offset` of 8 rows as four words each, transposed (AVX2): columns[j] lane i = word j of row i.
    // Vector k holds rows k and 4 + k in its 128-bit lanes, so one 4 × 4 transpose per lane puts rows 4L … 4L + 3 in lane L.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose4(byte* first, int rowBytes, int count, int offset, Vector256<int>* columns)
    {
        Vector256<int> z0 = Halves(first, rowBytes, count, offset, 0), z1 = Halves(first, rowBytes, count, offset, 1);
        Vector256<int> z2 = Halves(first, rowBytes, count, offset, 2), z3 = Halves(first, rowBytes, count, offset, 3);
        Vector256<long> t0 = Avx2.UnpackLow(z0, z1).AsInt64(), t1 = Avx2.UnpackHigh(z0, z1).AsInt64();
        Vector256<long> t2 = Avx2.UnpackLow(z2, z3).AsInt64(), t3 = Avx2.UnpackHigh(z2, z3).AsInt64();
        columns[0] = Avx2.UnpackLow(t0, t2).AsInt32();
        columns[1] = Avx2.UnpackHigh(t0, t2).AsInt32();
        columns[2] = Avx2.UnpackLow(t1, t3).AsInt32();
        columns[3] = Avx2.UnpackHigh(t1, t3).AsInt32();
    }

    // Rows k and 4 + k's 16 bytes at `offset`, one per 128-bit lane.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Halves(byte* first, int rowBytes, int count, int offset, int k) => Vector256.Create(
        Vector128.Load((int*)(Row(first, rowBytes, count, k) + offset)), Vector128.Load((int*)(Row(first, rowBytes, count, 4 + k) + offset)));

    // The 32 bytes at `offset` of 8 rows as 8 words each, transposed (AVX2): words[j] lane i = word j of row i.
    // Unpacking words, then word pairs, within 128-bit lanes leaves rows 4q … 4q + 3 of word 4a + c in lane a of
    // quad c of row quad q; one 128-bit permute per word joins the two row quads' lanes.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Eights(byte* first, int rowBytes, int count, int offset, Vector256<int>* words)
    {
        Quads4(first, rowBytes, count, offset, 0, out var a0, out var a1, out var a2, out var a3);
        Quads4(first, rowBytes, count, offset, 4, out var b0, out var b1, out var b2, out var b3);
        words[0] = Avx2.Permute2x128(a0, b0, 0x20);
        words[1] = Avx2.Permute2x128(a1, b1, 0x20);
        words[2] = Avx2.Permute2x128(a2, b2, 0x20);
        words[3] = Avx2.Permute2x128(a3, b3, 0x20);
        words[4] = Avx2.Permute2x128(a0, b0, 0x31);
        words[5] = Avx2.Permute2x128(a1, b1, 0x31);
        words[6] = Avx2.Permute2x128(a2, b2, 0x31);
        words[7] = Avx2.Permute2x128(a3, b3, 0x31);
    }

    // Rows q … q + 3's 32 bytes at `offset`: quad c lane a holds word 4a + c of the four rows.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quads4(byte* first, int rowBytes, int count, int offset, int q,
        out Vector256<int> quad0, out Vector256<int> quad1, out Vector256<int> quad2, out Vector256<int> quad3)
    {
        var r0 = Vector256.Load((int*)(Row(first, rowBytes, count, q) + offset));
        var r1 = Vector256.Load((int*)(Row(first, rowBytes, count, q + 1) + offset));
        var r2 = Vector256.Load((int*)(Row(first, rowBytes, count, q + 2) + offset));
        var r3 = Vector256.Load((int*)(Row(first, rowBytes, count, q + 3) + offset));
        Vector256<long> t0 = Avx2.UnpackLow(r0, r1).AsInt64(), t1 = Avx2.UnpackHigh(r0, r1).AsInt64();
        Vector256<long> t2 = Avx2.UnpackLow(r2, r3).AsInt64(), t3 = Avx2.UnpackHigh(r2, r3).AsInt64();
        quad0 = Avx2.UnpackLow(t0, t2).AsInt32();
        quad1 = Avx2.UnpackHigh(t0, t2).AsInt32();
        quad2 = Avx2.UnpackLow(t1, t3).AsInt32();
        quad3 = Avx2.UnpackHigh(t1, t3).AsInt32();
    }
}
