using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels.Quantized;

// PanelOfRows with AVX2 only (Q4_0, Q4_K, Q5_K, Q6_K, Q8_0, F16, BF16): eight rows at a time, one per lane, for the AVX2 product's panels (16 columns). Before,
// each row's depth range was decoded into a scratch and then transposed into the panel, which wrote every value twice
// and read it back once: in a 16-token prompt of a 1.1B Q4_K_M model with AVX-512 off (Emerald Rapids) the transpose
// took 12% of the time and the decoding 11%, against 19% for the product's kernel. The values are Decode256's (the
// reference's) bit for bit: the K-quants' d·scale products formed per lane as Decode256 forms them per block, then
// q·(d·scale) − dmin·min without a fused multiply-add.
internal static unsafe partial class BlockDecoder
{
    [SkipLocalsInit]
    internal static void PanelOfRows256(GgmlType type, byte* first, int rowBytes, int lines, int depth, float* panel, int width)
    {
        int blockValues = GgmlTypes.BlockValues(type), blockBytes = GgmlTypes.BlockBytes(type);
        // Q4_K: per sub-block, d·scale and dmin·min of each lane's row; Q6_K: d·scale of each run of 16.
        var scale = stackalloc Vector256<float>[16];
        var min = stackalloc Vector256<float>[8];
        // RowWords' transposes: words in flight, and Q6_K's high bits.
        var words = stackalloc Vector256<int>[16];
        var highBits = stackalloc Vector256<int>[16];
        for (int column = 0; column < width; column += 8)
        {
            int count = Math.Clamp(lines - column, 0, 8);
            if (count == 0)
            {
                for (int p = 0; p < depth; p++)
                {
                    Vector256<float>.Zero.Store(panel + ((long)p * width) + column);
                }

                continue;
            }

            // Lanes past the last row read this group's first row again; their factors are zeroed (or their values
            // masked), so they write +0.
            var lane = Vector256<int>.Indices;
            var valid = Vector256.LessThan(lane, Vector256.Create(count)).AsSingle();
            var offsets = Vector256.ConditionalSelect(valid.AsInt32(), lane * Vector256.Create(rowBytes), Vector256<int>.Zero);
            byte* rows = first + ((long)column * rowBytes);
            if (type is GgmlType.F16 or GgmlType.BF16)
            {
                HalfLanes256(type == GgmlType.F16, rows, rowBytes, count, depth, valid, panel + column, width, words);
                continue;
            }

            for (int b = 0; b < depth / blockValues; b++)
            {
                byte* block = rows + ((long)b * blockBytes);
                float* target = panel + ((long)blockValues * b * width) + column;
                switch (type)
                {
                    case GgmlType.Q4_K:
                        Q4KLanes256(block, rowBytes, count, valid, scale, min, target, width, words);
                        break;
                    case GgmlType.Q5_K:
                        Q5KLanes256(block, rowBytes, count, valid, scale, min, target, width, words, highBits);
                        break;
                    case GgmlType.Q6_K:
                        Q6KLanes256(block, rowBytes, count, valid, scale, target, width, words, highBits);
                        break;
                    case GgmlType.Q4_0:
                        Q40Lanes256(block, offsets, rowBytes, count, valid, target, width, words);
                        break;
                    default:
                        Q8Lanes256(block, offsets, rowBytes, count, valid, target, width, words);
                        break;
                }
            }
        }
    }

    // One Q4_K super-block of 8 rows (Q4KLanes' layout and arithmetic at 8 lanes).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q4KLanes256(byte* first, int rowBytes, int count, Vector256<float> valid, Vector256<float>* scale, Vector256<float>* min,
        float* target, int width, Vector256<int>* words)
    {
        KFactors256(first, rowBytes, count, valid, scale, min, words);

        // Word j of the 64 quant bytes of half h: bytes l … l + 3 (l = 4·(j % 8)) of group g = 2h + j / 8, whose low
        // nibbles are depths 64g + l + t (sub-block 2g) and high nibbles 32 later (sub-block 2g + 1).
        for (int h = 0; h < 2; h++)
        {
            RowWords.Eights(first, rowBytes, count, 16 + (64 * h), words);
            RowWords.Eights(first, rowBytes, count, 48 + (64 * h), words + 8);
            for (int j = 0; j < 16; j++)
            {
                int g = (2 * h) + (j / 8);
                Q4KWord256(words[j], scale[2 * g], min[2 * g], scale[(2 * g) + 1], min[(2 * g) + 1], target + ((long)((64 * g) + (4 * (j % 8))) * width), width);
            }
        }
    }

    // Q4_K's and Q5_K's d·scale and dmin·min per sub-block of each lane's row (zero past `count`).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KFactors256(byte* first, int rowBytes, int count, Vector256<float> valid, Vector256<float>* scale, Vector256<float>* min, Vector256<int>* words)
    {
        RowWords.Transpose4(first, rowBytes, count, 0, words);
        var halves = words[0];
        var d = HalfToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(halves, 16), 16)) & valid;
        var dmin = HalfToSingle(Vector256.ShiftRightArithmetic(halves, 16)) & valid;
        for (int j = 0; j < 8; j++)
        {
            Q4KScaleMin(words[1], words[2], words[3], j, out var scaleJ, out var minJ);
            scale[j] = Vector256.ConvertToSingle(scaleJ) * d;
            min[j] = Vector256.ConvertToSingle(minJ) * dmin;
        }
    }

    // One Q5_K super-block of 8 rows (Q5KLanes' layout): the quant bytes from byte 48, the fifth bits from qh (bytes 16-47).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q5KLanes256(byte* first, int rowBytes, int count, Vector256<float> valid, Vector256<float>* scale, Vector256<float>* min,
        float* target, int width, Vector256<int>* words, Vector256<int>* fifth)
    {
        KFactors256(first, rowBytes, count, valid, scale, min, words);
        RowWords.Eights(first, rowBytes, count, 16, fifth);
        for (int h = 0; h < 2; h++)
        {
            RowWords.Eights(first, rowBytes, count, 48 + (64 * h), words);
            RowWords.Eights(first, rowBytes, count, 80 + (64 * h), words + 8);
            for (int j = 0; j < 16; j++)
            {
                int g = (2 * h) + (j / 8);
                Q5KValues(words[j], fifth[j % 8], g, out var lowValues, out var highValues);
                float* low = target + ((long)((64 * g) + (4 * (j % 8))) * width);
                KWord256(lowValues, scale[2 * g], min[2 * g], low, width);
                KWord256(highValues, scale[(2 * g) + 1], min[(2 * g) + 1], low + ((long)32 * width), width);
            }
        }
    }

    // Four values of each lane's row, one per byte, at depths `to` + t: q·(d·scale) − dmin·min.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KWord256(Vector256<int> values, Vector256<float> scale, Vector256<float> min, float* to, int width)
    {
        for (int t = 0; t < 4; t++)
        {
            var q = Vector256.ConvertToSingle(Vector256.ShiftRightLogical(values, 8 * t) & Vector256.Create(0xFF));
            ((q * scale) - min).Store(to + ((long)t * width));
        }
    }

    // Four bytes of each lane's row: their low nibbles at depths `low` + t, their high nibbles 32 depths later.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q4KWord256(Vector256<int> bytes, Vector256<float> lowScale, Vector256<float> lowMin, Vector256<float> highScale, Vector256<float> highMin, float* low, int width)
    {
        var nibble = Vector256.Create(0xF);
        float* high = low + ((long)32 * width);
        for (int t = 0; t < 4; t++)
        {
            var q = Vector256.ConvertToSingle(Vector256.ShiftRightLogical(bytes, 8 * t) & nibble);
            ((q * lowScale) - lowMin).Store(low + ((long)t * width));
            q = Vector256.ConvertToSingle(Vector256.ShiftRightLogical(bytes, (8 * t) + 4) & nibble);
            ((q * highScale) - highMin).Store(high + ((long)t * width));
        }
    }

    // One Q6_K super-block of 8 rows (Q6KLanes' layout and arithmetic at 8 lanes): (d·scale)·(q − 32), the lanes past
    // `count` masked to +0.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q6KLanes256(byte* first, int rowBytes, int count, Vector256<float> valid, Vector256<float>* runScale,
        float* target, int width, Vector256<int>* words, Vector256<int>* highBits)
    {
        // d is the half at byte 208: the upper word of bytes 206-209 (a word at 208 would reach past the block).
        RowWords.Transpose4(first, rowBytes, count, 194, words);
        var d = HalfToSingle(Vector256.ShiftRightArithmetic(words[3], 16));
        RowWords.Transpose4(first, rowBytes, count, 192, words);
        for (int t = 0; t < 4; t++)
        {
            for (int i = 0; i < 4; i++)
            {
                var scale = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(words[t], 24 - (8 * i)), 24);
                runScale[(4 * t) + i] = Vector256.ConvertToSingle(scale) * d;
            }
        }

        // qh: word i of half h is word 8h + i.
        RowWords.Eights(first, rowBytes, count, 128, highBits);
        RowWords.Eights(first, rowBytes, count, 160, highBits + 8);
        var low = Vector256.Create(0x0F0F0F0F);
        var two = Vector256.Create(0x30303030);
        for (int h = 0; h < 2; h++)
        {
            RowWords.Eights(first, rowBytes, count, 64 * h, words);
            RowWords.Eights(first, rowBytes, count, (64 * h) + 32, words + 8);
            for (int i = 0; i < 8; i++)
            {
                // Word i of runs 0 and 2 and word 8 + i of runs 1 and 3: values l = 4i … 4i + 3.
                Vector256<int> firstRuns = words[i], secondRuns = words[8 + i], high = highBits[(8 * h) + i];
                var run0 = (firstRuns & low) | (Vector256.ShiftLeft(high, 4) & two);
                var run1 = (secondRuns & low) | (Vector256.ShiftLeft(high, 2) & two);
                var run2 = (Vector256.ShiftRightLogical(firstRuns, 4) & low) | (high & two);
                var run3 = (Vector256.ShiftRightLogical(secondRuns, 4) & low) | (Vector256.ShiftRightLogical(high, 2) & two);
                int s = (8 * h) + (i / 4);
                float* to = target + ((long)((128 * h) + (4 * i)) * width);
                Q6KWord256(run0, runScale[s], valid, to, width);
                Q6KWord256(run1, runScale[s + 2], valid, to + ((long)32 * width), width);
                Q6KWord256(run2, runScale[s + 4], valid, to + ((long)64 * width), width);
                Q6KWord256(run3, runScale[s + 6], valid, to + ((long)96 * width), width);
            }
        }
    }

    // Four six-bit values per lane (one per byte) at depths `to` + t: (d·scale)·(q − 32).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Q6KWord256(Vector256<int> values, Vector256<float> runScale, Vector256<float> valid, float* to, int width)
    {
        for (int t = 0; t < 4; t++)
        {
            var q = (Vector256.ShiftRightLogical(values, 8 * t) & Vector256.Create(0x3F)) - Vector256.Create(32);
            ((Vector256.ConvertToSingle(q) * runScale) & valid).Store(to + ((long)t * width));
        }
    }

    // 8 rows of F16 or BF16 values (HalfLanes' form at 8 lanes): per 16 values the rows' 32 bytes transposed into
    // lanes, each word two depths; the last depth % 16 values one row at a time; lanes past `count` masked to +0.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void HalfLanes256(bool f16, byte* first, int rowBytes, int count, int depth, Vector256<float> valid, float* target, int width, Vector256<int>* words)
    {
        int whole = depth / 16 * 16;
        for (int p = 0; p < whole; p += 16)
        {
            RowWords.Eights(first, rowBytes, count, 2 * p, words);
            for (int j = 0; j < 8; j++)
            {
                var word = words[j];
                var low = f16 ? HalfToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(word, 16), 16)) : Vector256.ShiftLeft(word, 16).AsSingle();
                var high = f16 ? HalfToSingle(Vector256.ShiftRightArithmetic(word, 16)) : (word & Vector256.Create(unchecked((int)0xFFFF0000))).AsSingle();
                float* to = target + ((long)(p + (2 * j)) * width);
                (low & valid).Store(to);
                (high & valid).Store(to + width);
            }
        }

        for (int p = whole; p < depth; p++)
        {
            float* to = target + ((long)p * width);
            Vector256<float>.Zero.Store(to);
            for (int i = 0; i < count; i++)
            {
                ushort bits = ((ushort*)(first + ((long)i * rowBytes)))[p];
                to[i] = f16 ? (float)BitConverter.UInt16BitsToHalf(bits) : BitConverter.Int32BitsToSingle(bits << 16);
            }
        }
    }

    // One Q4_0 block of 8 rows: (q − 8)·d, d gathered from each row's first word, the 16 nibble bytes transposed.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q40Lanes256(byte* block, Vector256<int> offsets, int rowBytes, int count, Vector256<float> valid, float* target, int width, Vector256<int>* words)
    {
        var d = HalfToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(Avx2.GatherVector256((int*)block, offsets, 1), 16), 16));
        RowWords.Transpose4(block, rowBytes, count, 2, words);
        var nibble = Vector256.Create(0xF);
        var eight = Vector256.Create(8);
        for (int j = 0; j < 4; j++)
        {
            var bytes = words[j];
            for (int t = 0; t < 4; t++)
            {
                var low = Vector256.ConvertToSingle((Vector256.ShiftRightLogical(bytes, 8 * t) & nibble) - eight);
                var high = Vector256.ConvertToSingle((Vector256.ShiftRightLogical(bytes, (8 * t) + 4) & nibble) - eight);
                ((low * d) & valid).Store(target + ((long)((4 * j) + t) * width));
                ((high * d) & valid).Store(target + ((long)(16 + (4 * j) + t) * width));
            }
        }
    }

    // One Q8_0 block of 8 rows: (q as float)·d, d gathered, the 32 value bytes transposed; lanes past `count` masked to +0.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Q8Lanes256(byte* block, Vector256<int> offsets, int rowBytes, int count, Vector256<float> valid, float* target, int width, Vector256<int>* words)
    {
        var d = HalfToSingle(Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(Avx2.GatherVector256((int*)block, offsets, 1), 16), 16));
        RowWords.Eights(block, rowBytes, count, 2, words);
        for (int j = 0; j < 8; j++)
        {
            var bytes = words[j];
            float* to = target + ((long)(4 * j) * width);
            for (int t = 0; t < 4; t++)
            {
                var q = Vector256.ShiftRightArithmetic(Vector256.ShiftLeft(bytes, 24 - (8 * t)), 24);
                ((Vector256.ConvertToSingle(q) * d) & valid).Store(to + ((long)t * width));
            }
        }
    }
}
