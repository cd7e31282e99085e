using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// The blocked integer product with AVX2 (no AVX-512BW): the same panel (layout, values, scales, corrections, factors)
// built eight rows at a time, and a kernel that runs a tile of 4 tokens over each eighth of the panel's 32 rows:
// 4 × 8 lanes of 16-bit pair sums and 4 × 8 of 32-bit sums stay in AVX2's 16 registers, where 4 tokens × 16 rows
// (as the AVX-512 kernel's 32) would spill. Per step of four values: one load of the eighth's weights, four broadcasts
// of a token's activations, four vpmaddubsw: 32 byte multiply-adds each, against 8 per fp32 FMA. The integer sums
// and the float steps are the AVX-512 kernel's, so every output is IntegerDot.Reference's bit for bit here too.
internal static unsafe partial class IntegerMatMul
{
    // The panel of one super-block (BuildPanel's), eight rows at a time.
    [SkipLocalsInit]
    private static void BuildPanel256(GgmlType type, byte* block, int rowBytes, int lines, byte* panel)
    {
        var words = stackalloc Vector256<int>[16];
        var highBits = stackalloc Vector256<int>[16];
        for (int eighth = 0; eighth < Width; eighth += 8)
        {
            byte* first = block + ((long)eighth * rowBytes);
            int count = Math.Min(8, lines - eighth);
            if (count <= 0)
            {
                first = block;
                count = 1;
            }

            if (type == GgmlType.Q4_K)
            {
                Q4KPanel256(first, rowBytes, count, panel + (4 * eighth), words);
            }
            else if (type == GgmlType.Q5_K)
            {
                Q5KPanel256(first, rowBytes, count, panel + (4 * eighth), words, highBits);
            }
            else
            {
                Q6KPanel256(first, rowBytes, count, panel + (4 * eighth), words, highBits);
            }
        }
    }

    // Both 16-bit halves of each lane set to its low 16 bits.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Twice(Vector256<int> value) => (value & Vector256.Create(0xFFFF)) | Vector256.ShiftLeft(value, 16);

    // Two 16-bit values per lane: `low` and `high` (each −2¹⁵ ≤ v < 2¹⁵).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> Pair(Vector256<int> low, Vector256<int> high) => (low & Vector256.Create(0xFFFF)) | Vector256.ShiftLeft(high, 16);

    // 8 rows' Q4_K super-block into their lanes of the panel (`lanes`: the panel offset by the eighth's first lane).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KPanel256(byte* first, int rowBytes, int count, byte* lanes, Vector256<int>* words)
    {
        KFactors256(first, rowBytes, count, lanes, words);

        // Word j of the 64 quant bytes of half h holds bytes 4·(j % 8) … of group g = 2h + j / 8: their low nibbles are
        // sub-block 2g (step 16g + j % 8), their high nibbles sub-block 2g + 1 (8 steps later).
        var low = Vector256.Create(0x0F0F0F0F);
        for (int half = 0; half < 2; half++)
        {
            RowWords.Eights(first, rowBytes, count, 16 + (64 * half), words);
            RowWords.Eights(first, rowBytes, count, 48 + (64 * half), words + 8);
            byte* steps = lanes + (32 * half * Width * 4);
            for (int j = 0; j < 16; j++)
            {
                byte* step = steps + (((16 * (j / 8)) + (j % 8)) * Width * 4);
                (words[j] & low).Store((int*)step);
                (Vector256.ShiftRightLogical(words[j], 4) & low).Store((int*)(step + (8 * Width * 4)));
            }
        }
    }

    // The K-quants' factors of 8 rows (Q4_K, Q5_K), as KFactors.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KFactors256(byte* first, int rowBytes, int count, byte* lanes, Vector256<int>* words)
    {
        // Words: d and dmin, then the 12 scale bytes.
        RowWords.Transpose4(first, rowBytes, count, 0, words);
        Vector256<int> halves = words[0], w0 = words[1], w1 = words[2], w2 = words[3];
        BlockDecoder.HalfToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(halves, 16), 16)).Store((float*)(lanes + DOffset));
        BlockDecoder.HalfToSingle(Vector256.ShiftRightArithmetic(halves, 16)).Store((float*)(lanes + EOffset));
        for (int j = 0; j < 8; j++)
        {
            BlockDecoder.Q4KScaleMin(w0, w1, w2, j, out var scale, out var min);
            Twice(scale).Store((int*)(lanes + ScalesOffset + (j * Width * 4)));
            Twice(min).Store((int*)(lanes + CorrectionsOffset + (j * Width * 4)));
        }
    }

    // 8 rows' Q5_K super-block into their lanes of the panel (Q5KPanel's values).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q5KPanel256(byte* first, int rowBytes, int count, byte* lanes, Vector256<int>* words, Vector256<int>* fifth)
    {
        KFactors256(first, rowBytes, count, lanes, words);
        RowWords.Eights(first, rowBytes, count, 16, fifth);
        for (int half = 0; half < 2; half++)
        {
            RowWords.Eights(first, rowBytes, count, 48 + (64 * half), words);
            RowWords.Eights(first, rowBytes, count, 80 + (64 * half), words + 8);
            byte* steps = lanes + (32 * half * Width * 4);
            for (int j = 0; j < 16; j++)
            {
                // Sub-blocks 2g and 2g + 1 (g = 2·half + j / 8): the low and high nibbles, with bits 2g and 2g + 1 of qh word j % 8.
                int g = (2 * half) + (j / 8);
                byte* step = steps + (((16 * (j / 8)) + (j % 8)) * Width * 4);
                BlockDecoder.Q5KValues(words[j], fifth[j % 8], g, out var low, out var high);
                low.Store((int*)step);
                high.Store((int*)(step + (8 * Width * 4)));
            }
        }
    }

    // 8 rows' Q6_K super-block into their lanes of the panel (Q6KPanel's layout: ql runs 0 and 2 in bytes 64h …,
    // runs 1 and 3 in bytes 64h + 32 …, qh byte 128 + 32h + l with run r's two high bits at bits 2r).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KPanel256(byte* first, int rowBytes, int count, byte* lanes, Vector256<int>* words, Vector256<int>* highBits)
    {
        // d is the half at byte 208: the upper word of bytes 206-209 (a word at 208 would reach past the block).
        RowWords.Transpose4(first, rowBytes, count, 194, words);
        var d = BlockDecoder.HalfToSingle(Vector256.ShiftRightArithmetic(words[3], 16));
        d.Store((float*)(lanes + DOffset));
        d.Store((float*)(lanes + EOffset));
        RowWords.Transpose4(first, rowBytes, count, 192, words);
        for (int t = 0; t < 4; t++)
        {
            var four = words[t];
            var c0 = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(four, 24), 24);
            var c1 = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(four, 16), 24);
            var c2 = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(four, 8), 24);
            var c3 = Vector256.ShiftRightArithmetic(four, 24);
            Twice(c0).Store((int*)(lanes + ScalesOffset + (((4 * t) + 0) * Width * 4)));
            Twice(c1).Store((int*)(lanes + ScalesOffset + (((4 * t) + 1) * Width * 4)));
            Twice(c2).Store((int*)(lanes + ScalesOffset + (((4 * t) + 2) * Width * 4)));
            Twice(c3).Store((int*)(lanes + ScalesOffset + (((4 * t) + 3) * Width * 4)));
            Pair(Vector256.ShiftLeft(c0, 5), Vector256.ShiftLeft(c1, 5)).Store((int*)(lanes + CorrectionsOffset + (2 * t * Width * 4)));
            Pair(Vector256.ShiftLeft(c2, 5), Vector256.ShiftLeft(c3, 5)).Store((int*)(lanes + CorrectionsOffset + (((2 * t) + 1) * Width * 4)));
        }

        // The high bits of both halves (qh, bytes 128-191): word i of half h is word 8h + i.
        RowWords.Eights(first, rowBytes, count, 128, highBits);
        RowWords.Eights(first, rowBytes, count, 160, highBits + 8);
        for (int h = 0; h < 2; h++)
        {
            RowWords.Eights(first, rowBytes, count, 64 * h, words);
            RowWords.Eights(first, rowBytes, count, (64 * h) + 32, words + 8);
            for (int i = 0; i < 8; i++)
            {
                // Words i and 8 + i are the same four values of runs 0, 2 and 1, 3.
                Q6KValues256(words[i], words[8 + i], highBits[(8 * h) + i], lanes + (((32 * h) + i) * Width * 4));
            }
        }
    }

    // Four values of each of a half's four runs of 32 (steps s, s + 8, s + 16, s + 24 from `step`), as Q6KValues.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KValues256(Vector256<int> firstRuns, Vector256<int> secondRuns, Vector256<int> high, byte* step)
    {
        var low = Vector256.Create(0x0F0F0F0F);
        var two = Vector256.Create(0x30303030);
        ((firstRuns & low) | (Vector256.ShiftLeft(high, 4) & two)).Store((int*)step);
        ((secondRuns & low) | (Vector256.ShiftLeft(high, 2) & two)).Store((int*)(step + (8 * Width * 4)));
        ((Vector256.ShiftRightLogical(firstRuns, 4) & low) | (high & two)).Store((int*)(step + (16 * Width * 4)));
        ((Vector256.ShiftRightLogical(secondRuns, 4) & low) | (Vector256.ShiftRightLogical(high, 2) & two)).Store((int*)(step + (24 * Width * 4)));
    }

    /// <summary>
    /// As <see cref="Kernel"/> with AVX2: results[t, 0..31] += the super-block's part for <paramref name="tokens"/> ≤ 4
    /// tokens, an eighth of the panel's rows at a time.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void Kernel256(byte* panel, bool mins, int chunkSteps, int tokens, sbyte* q, int qStride, short* sums, int sumsStride, float* scales, int scalesStride, float* results)
    {
        // Missing tokens repeat the first; their results are not written.
        sbyte* q0 = q, q1 = q + (tokens > 1 ? qStride : 0), q2 = q + (tokens > 2 ? 2 * qStride : 0), q3 = q + (tokens > 3 ? 3 * qStride : 0);
        short* r0 = sums, r1 = sums + (tokens > 1 ? sumsStride : 0), r2 = sums + (tokens > 2 ? 2 * sumsStride : 0), r3 = sums + (tokens > 3 ? 3 * sumsStride : 0);
        int groupSteps = mins ? 8 : 4;
        for (int eighth = 0; eighth < Width; eighth += 8)
        {
            byte* lanes = panel + (4 * eighth);
            Vector256<int> i0 = default, i1 = default, i2 = default, i3 = default;
            for (int step = 0; step < Steps; step += chunkSteps)
            {
                Vector256<short> p0 = default, p1 = default, p2 = default, p3 = default;
                // Two steps per pass (every chunk is a multiple of two): half the loop's bookkeeping per multiply.
                for (int s = step; s < step + chunkSteps; s += 2)
                {
                    byte* w = lanes + (s * Width * 4);
                    var w0 = Vector256.Load(w);
                    p0 += Avx2.MultiplyAddAdjacent(w0, Vector256.Create(*(int*)(q0 + (4 * s))).AsSByte());
                    p1 += Avx2.MultiplyAddAdjacent(w0, Vector256.Create(*(int*)(q1 + (4 * s))).AsSByte());
                    p2 += Avx2.MultiplyAddAdjacent(w0, Vector256.Create(*(int*)(q2 + (4 * s))).AsSByte());
                    p3 += Avx2.MultiplyAddAdjacent(w0, Vector256.Create(*(int*)(q3 + (4 * s))).AsSByte());
                    var w1 = Vector256.Load(w + (Width * 4));
                    p0 += Avx2.MultiplyAddAdjacent(w1, Vector256.Create(*(int*)(q0 + (4 * s) + 4)).AsSByte());
                    p1 += Avx2.MultiplyAddAdjacent(w1, Vector256.Create(*(int*)(q1 + (4 * s) + 4)).AsSByte());
                    p2 += Avx2.MultiplyAddAdjacent(w1, Vector256.Create(*(int*)(q2 + (4 * s) + 4)).AsSByte());
                    p3 += Avx2.MultiplyAddAdjacent(w1, Vector256.Create(*(int*)(q3 + (4 * s) + 4)).AsSByte());
                }

                var scale = Vector256.Load((short*)(lanes + ScalesOffset + (step / groupSteps * Width * 4)));
                i0 += Avx2.MultiplyAddAdjacent(p0, scale);
                i1 += Avx2.MultiplyAddAdjacent(p1, scale);
                i2 += Avx2.MultiplyAddAdjacent(p2, scale);
                i3 += Avx2.MultiplyAddAdjacent(p3, scale);
            }

            Vector256<int> j0 = default, j1 = default, j2 = default, j3 = default;
            for (int pair = 0; pair < 8; pair++)
            {
                var c = Vector256.Load((short*)(lanes + CorrectionsOffset + (pair * Width * 4)));
                j0 += Avx2.MultiplyAddAdjacent(c, Vector256.Create(*(int*)(r0 + (2 * pair))).AsInt16());
                j1 += Avx2.MultiplyAddAdjacent(c, Vector256.Create(*(int*)(r1 + (2 * pair))).AsInt16());
                j2 += Avx2.MultiplyAddAdjacent(c, Vector256.Create(*(int*)(r2 + (2 * pair))).AsInt16());
                j3 += Avx2.MultiplyAddAdjacent(c, Vector256.Create(*(int*)(r3 + (2 * pair))).AsInt16());
            }

            var d = Vector256.Load((float*)(lanes + DOffset));
            var e = Vector256.Load((float*)(lanes + EOffset));
            Finish256(mins, i0, j0, d, e, scales[0], results + eighth);
            if (tokens > 1)
            {
                Finish256(mins, i1, j1, d, e, scales[scalesStride], results + Width + eighth);
            }

            if (tokens > 2)
            {
                Finish256(mins, i2, j2, d, e, scales[2 * scalesStride], results + (2 * Width) + eighth);
            }

            if (tokens > 3)
            {
                Finish256(mins, i3, j3, d, e, scales[3 * scalesStride], results + (3 * Width) + eighth);
            }
        }
    }

    // Eight of a token's results += their super-block part, in Finish's float steps.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Finish256(bool mins, Vector256<int> dots, Vector256<int> corrections, Vector256<float> d, Vector256<float> e, float scale, float* results)
    {
        var dx = Vector256.Create(scale);
        var part = mins
            ? ((dx * d) * Vector256.ConvertToSingle(dots)) - ((dx * e) * Vector256.ConvertToSingle(corrections))
            : (dx * d) * Vector256.ConvertToSingle(dots - corrections);
        (Vector256.Load(results) + part).Store(results);
    }
}
