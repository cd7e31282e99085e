using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace HeadLens.Attention;

// The fused attention's tile products and softmax when the value head size is 64 (GPT-2, Llama) or 32 (MiniLM) and
// the machine has AVX-512 (below), AVX2 with FMA (AttentionPanels.Avx2.cs, the same operations on 8 lanes) or any
// other accelerated Vector128 (AttentionPanels.Portable.cs, 4 lanes: Arm's NEON, x86 without AVX2):
//   MultiplyAdd:            C[rows, 64] (+)= A[rows, K] · B[K, 64]     rows of A, B and C at arbitrary strides
//   MultiplyAdd32:          C[rows, 32] (+)= A[rows, K] · B[K, 32]     P·V for 32-wide values
//   MultiplyAddTransposedA: C[rows, 64] (+)= Aᵀ[rows, K] · B[K, 64]    A stored [K, rows] (P or dS read as Pᵀ, dSᵀ)
//   OnlineSoftmaxRows:      FlashAttention's running max/sum update on a tile of base-2 scores
//   AttendRows:             the three fused: S = Q·Kᵀ, softmax update, acc += P·V for four rows, S in registers
//   Exp2:                   2^x, 16 lanes, without widening to double
// Forward: S = Q_tile · Kᵀ_tile (B = a head's keys transposed to [D, 64] blocks) and acc += P · V_tile (B = a block
// of V rows). Backward adds dP = dO·Vᵀ_tile, dV += Pᵀ·dO, dK += dSᵀ·Q, dQ += dS·K_tile. Four rows of C live in 16 zmm
// accumulators while the depth loop streams four vectors of B and broadcasts four values of A per step: no packing,
// because every B is already row-contiguous.
// Scores are kept in base 2 (the keys carry scale·log₂e) so that the exponential is 2^x: a round, a degree-5
// polynomial and one vscalefps, where Vector512.Exp widens to double (it was ~30% of the forward at T = 4096).
internal static partial class AttentionPanels
{
    public const int Width = 64;

    /// <summary>The value width of the other heads the panels take (MultiplyAdd32: MiniLM's 32-wide heads).</summary>
    public const int HalfWidth = 32;

    /// <summary>log₂e: scores scaled by it turn exp(s) into 2^s.</summary>
    public const float Log2E = 1.44269504088896341f;

    /// <summary>
    /// Whether the panel kernels run here: AVX-512, AVX2 with FMA (AttentionPanels.Avx2.cs), or any other accelerated
    /// Vector128 (AttentionPanels.Portable.cs: Arm's NEON, x86 without AVX2).
    /// </summary>
    public static bool Available => Wide || EightLanes || Vector128.IsHardwareAccelerated;

    // AVX-512 (16 lanes, 32 registers); otherwise each method below hands its work to its 8-lane version where
    // EightLanes holds (AVX2 with FMA), else to its 4-lane one (AttentionPanels.Portable.cs). All three are constants
    // to the JIT, so the branches cost nothing.
    private static bool Wide => Vector512.IsHardwareAccelerated && Avx512F.IsSupported;

    private static bool EightLanes => Vector256.IsHardwareAccelerated && Avx2.IsSupported && Fma.IsSupported;

    /// <summary>
    /// 2^x for x ≤ 0 (scores minus their running max), relative error ≤ 2e-7 (a least-squares degree-5 fit of 2^f
    /// on [−½, ½], 1.4e-7, plus rounding); x below <see cref="Exp2Floor"/> (−∞, masked scores, NaN) gives exactly 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2(Vector512<float> x)
    {
        var visible = Vector512.GreaterThanOrEqual(x, Vector512.Create(Exp2Floor));
        return Exp2FromFloor(x) & visible;
    }

    /// <summary>
    /// The smallest argument Exp2 computes: 2⁻¹²⁵ (and p·2^n for any x ≥ −125, p ≥ 2^−½) is a normal
    /// float. What lies below it is ≤ 2⁻¹²⁵ of the row's largest term, far under float's 2⁻²⁴ resolution of the sum.
    /// </summary>
    public const float Exp2Floor = -125f;

    /// <summary>
    /// <see cref="Exp2(Vector512{float})"/>, bit for bit, with nothing on the FMA pipes but its polynomial: for
    /// exponentials computed between the products of AttendRows, whose FMAs keep those pipes busy while the others
    /// idle. The lanes to zero are found from the sign of max(x − floor, −1e-30), which is −1e-30 below the floor and
    /// for NaN (vmaxps returns its second operand then) and ≥ +0 from the floor up. Exp2's compare into a mask register
    /// issues on the FMA pipes on Zen 4 (4 of them beside 12 FMAs cost 4 cycles: bench/fma-neighbours.c), but in a
    /// pass of exponentials alone its one compare is cheaper than this max, shift and and-not.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2OffTheFmaPipes(Vector512<float> x)
    {
        var hidden = Avx512F.Max(x - Vector512.Create(Exp2Floor), Vector512.Create(-1e-30f)).AsInt32() >> 31;
        return Vector512.AndNot(Exp2FromFloor(x), hidden.AsSingle());
    }

    /// <summary>
    /// 2^max(x, <see cref="Exp2Floor"/>): <see cref="Exp2(Vector512{float})"/>'s bits from the floor up, and 2⁻¹²⁵ (not 0)
    /// below it, for −∞ and for NaN. For AttendRows's tiles where no score is hidden: there a term 2⁻¹²⁵ stands for
    /// one ≥ 2¹²⁵ times smaller than the row's largest (≥ 1), which no float sum of them can tell from 0, and leaving
    /// the zeroing out saves four of its fifteen vector instructions — on Intel's cores every 512-bit one issues on
    /// the two ports the products' FMAs need.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp2Clamped(Vector512<float> x) => Exp2FromFloor(x);

    // 2^max(x, floor) = p(f)·2^n, the part the Exp2 variants share; Exp2 and Exp2OffTheFmaPipes zero the lanes below the floor.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Exp2FromFloor(Vector512<float> x)
    {
        // No result may be subnormal or underflow to 0 inside vscalefps: on Intel each such vector costs a microcode
        // assist of ~150 cycles (a vector of masked scores took 28× as long as one of −5), and a causal tile on the
        // diagonal is half masked. So x is clamped to the floor, where 2^x is still a normal float (2⁻¹²⁵ ≥ 2⁻¹²⁶),
        // and Exp2 and Exp2OffTheFmaPipes zero the lanes below it afterwards (Exp2Clamped leaves them at 2⁻¹²⁵). The
        // clamp also keeps −∞ − round(−∞) from being NaN.
        x = Avx512F.Max(x, Vector512.Create(Exp2Floor));
        // f = x − round(x) in one instruction (vreduceps; vrndscaleps and a subtraction are three µops on Intel, all on
        // the FMA ports), exactly; then n = x − f = round(x), exactly: the same n and f, and bits, as rounding first.
        var f = Avx512DQ.Reduce(x, 0x08); // nearest, no precision exception: f in [−½, ½]
        var n = x - f;
        var p = Vector512.FusedMultiplyAdd(Vector512.Create(0.0013266970636323094f), f, Vector512.Create(0.009675459936261177f));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(0.05550742521882057f));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(0.24022121727466583f));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(0.6931469440460205f));
        p = Vector512.FusedMultiplyAdd(p, f, Vector512.Create(1.0000001192092896f));
        return Avx512F.Scale(p, n);
    }

    /// <summary>
    /// block [64, 64] = factor · Xᵀ for X = rows 0..rows−1 (≤ 64) of 64 floats at row stride ld: column j of the block
    /// is row j of X (zero for j ≥ rows). A head's keys become the B operand of S = Q·Kᵀ this way, one tile of 64 keys
    /// per block, in 16×16 register transposes (64 shuffles per 256 floats) instead of one scalar move per float.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void TransposeBlock(float* x, int ld, int rows, float factor, float* block)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                TransposeBlock256(x, ld, rows, factor, block);
            }
            else
            {
                TransposeBlock128(x, ld, rows, factor, block);
            }

            return;
        }

        var scale = Vector512.Create(factor);
        // Rows past the end read as zero: loaded from a zero row instead of branching per vector.
        float* zero = stackalloc float[Width];
        new Span<float>(zero, Width).Clear();
        for (int j0 = 0; j0 < Width; j0 += 16)
        {
            float* row0 = Row(0), row1 = Row(1), row2 = Row(2), row3 = Row(3), row4 = Row(4), row5 = Row(5), row6 = Row(6), row7 = Row(7);
            float* row8 = Row(8), row9 = Row(9), row10 = Row(10), row11 = Row(11), row12 = Row(12), row13 = Row(13), row14 = Row(14), row15 = Row(15);
            for (int d0 = 0; d0 < Width; d0 += 16)
            {
                // 16×16 in registers: interleave pairs of floats, then pairs of doubles, then 128-bit quarters twice.
                var t0 = Avx512F.UnpackLow(Vector512.Load(row0 + d0), Vector512.Load(row1 + d0));
                var t1 = Avx512F.UnpackHigh(Vector512.Load(row0 + d0), Vector512.Load(row1 + d0));
                var t2 = Avx512F.UnpackLow(Vector512.Load(row2 + d0), Vector512.Load(row3 + d0));
                var t3 = Avx512F.UnpackHigh(Vector512.Load(row2 + d0), Vector512.Load(row3 + d0));
                var t4 = Avx512F.UnpackLow(Vector512.Load(row4 + d0), Vector512.Load(row5 + d0));
                var t5 = Avx512F.UnpackHigh(Vector512.Load(row4 + d0), Vector512.Load(row5 + d0));
                var t6 = Avx512F.UnpackLow(Vector512.Load(row6 + d0), Vector512.Load(row7 + d0));
                var t7 = Avx512F.UnpackHigh(Vector512.Load(row6 + d0), Vector512.Load(row7 + d0));
                var t8 = Avx512F.UnpackLow(Vector512.Load(row8 + d0), Vector512.Load(row9 + d0));
                var t9 = Avx512F.UnpackHigh(Vector512.Load(row8 + d0), Vector512.Load(row9 + d0));
                var t10 = Avx512F.UnpackLow(Vector512.Load(row10 + d0), Vector512.Load(row11 + d0));
                var t11 = Avx512F.UnpackHigh(Vector512.Load(row10 + d0), Vector512.Load(row11 + d0));
                var t12 = Avx512F.UnpackLow(Vector512.Load(row12 + d0), Vector512.Load(row13 + d0));
                var t13 = Avx512F.UnpackHigh(Vector512.Load(row12 + d0), Vector512.Load(row13 + d0));
                var t14 = Avx512F.UnpackLow(Vector512.Load(row14 + d0), Vector512.Load(row15 + d0));
                var t15 = Avx512F.UnpackHigh(Vector512.Load(row14 + d0), Vector512.Load(row15 + d0));

                var r0 = Avx512F.UnpackLow(t0.AsDouble(), t2.AsDouble()).AsSingle();
                var r1 = Avx512F.UnpackHigh(t0.AsDouble(), t2.AsDouble()).AsSingle();
                var r2 = Avx512F.UnpackLow(t1.AsDouble(), t3.AsDouble()).AsSingle();
                var r3 = Avx512F.UnpackHigh(t1.AsDouble(), t3.AsDouble()).AsSingle();
                var r4 = Avx512F.UnpackLow(t4.AsDouble(), t6.AsDouble()).AsSingle();
                var r5 = Avx512F.UnpackHigh(t4.AsDouble(), t6.AsDouble()).AsSingle();
                var r6 = Avx512F.UnpackLow(t5.AsDouble(), t7.AsDouble()).AsSingle();
                var r7 = Avx512F.UnpackHigh(t5.AsDouble(), t7.AsDouble()).AsSingle();
                var r8 = Avx512F.UnpackLow(t8.AsDouble(), t10.AsDouble()).AsSingle();
                var r9 = Avx512F.UnpackHigh(t8.AsDouble(), t10.AsDouble()).AsSingle();
                var r10 = Avx512F.UnpackLow(t9.AsDouble(), t11.AsDouble()).AsSingle();
                var r11 = Avx512F.UnpackHigh(t9.AsDouble(), t11.AsDouble()).AsSingle();
                var r12 = Avx512F.UnpackLow(t12.AsDouble(), t14.AsDouble()).AsSingle();
                var r13 = Avx512F.UnpackHigh(t12.AsDouble(), t14.AsDouble()).AsSingle();
                var r14 = Avx512F.UnpackLow(t13.AsDouble(), t15.AsDouble()).AsSingle();
                var r15 = Avx512F.UnpackHigh(t13.AsDouble(), t15.AsDouble()).AsSingle();

                t0 = Avx512F.Shuffle4x128(r0, r4, 0x88);
                t1 = Avx512F.Shuffle4x128(r1, r5, 0x88);
                t2 = Avx512F.Shuffle4x128(r2, r6, 0x88);
                t3 = Avx512F.Shuffle4x128(r3, r7, 0x88);
                t4 = Avx512F.Shuffle4x128(r0, r4, 0xDD);
                t5 = Avx512F.Shuffle4x128(r1, r5, 0xDD);
                t6 = Avx512F.Shuffle4x128(r2, r6, 0xDD);
                t7 = Avx512F.Shuffle4x128(r3, r7, 0xDD);
                t8 = Avx512F.Shuffle4x128(r8, r12, 0x88);
                t9 = Avx512F.Shuffle4x128(r9, r13, 0x88);
                t10 = Avx512F.Shuffle4x128(r10, r14, 0x88);
                t11 = Avx512F.Shuffle4x128(r11, r15, 0x88);
                t12 = Avx512F.Shuffle4x128(r8, r12, 0xDD);
                t13 = Avx512F.Shuffle4x128(r9, r13, 0xDD);
                t14 = Avx512F.Shuffle4x128(r10, r14, 0xDD);
                t15 = Avx512F.Shuffle4x128(r11, r15, 0xDD);

                // Column c of the 16 rows, scaled, into row d0 + c of the block, at keys j0..j0+15.
                float* b = block + ((long)d0 * Width) + j0;
                (Avx512F.Shuffle4x128(t0, t8, 0x88) * scale).Store(b);
                (Avx512F.Shuffle4x128(t1, t9, 0x88) * scale).Store(b + Width);
                (Avx512F.Shuffle4x128(t2, t10, 0x88) * scale).Store(b + (2 * Width));
                (Avx512F.Shuffle4x128(t3, t11, 0x88) * scale).Store(b + (3 * Width));
                (Avx512F.Shuffle4x128(t4, t12, 0x88) * scale).Store(b + (4 * Width));
                (Avx512F.Shuffle4x128(t5, t13, 0x88) * scale).Store(b + (5 * Width));
                (Avx512F.Shuffle4x128(t6, t14, 0x88) * scale).Store(b + (6 * Width));
                (Avx512F.Shuffle4x128(t7, t15, 0x88) * scale).Store(b + (7 * Width));
                (Avx512F.Shuffle4x128(t0, t8, 0xDD) * scale).Store(b + (8 * Width));
                (Avx512F.Shuffle4x128(t1, t9, 0xDD) * scale).Store(b + (9 * Width));
                (Avx512F.Shuffle4x128(t2, t10, 0xDD) * scale).Store(b + (10 * Width));
                (Avx512F.Shuffle4x128(t3, t11, 0xDD) * scale).Store(b + (11 * Width));
                (Avx512F.Shuffle4x128(t4, t12, 0xDD) * scale).Store(b + (12 * Width));
                (Avx512F.Shuffle4x128(t5, t13, 0xDD) * scale).Store(b + (13 * Width));
                (Avx512F.Shuffle4x128(t6, t14, 0xDD) * scale).Store(b + (14 * Width));
                (Avx512F.Shuffle4x128(t7, t15, 0xDD) * scale).Store(b + (15 * Width));
            }

            float* Row(int j) => j0 + j < rows ? x + ((long)(j0 + j) * ld) : zero;
        }
    }

    /// <summary>
    /// Asks for rows 0..rows−1 of 64 floats at row stride ld (≥ 64) to be brought into the caches: the five lines a
    /// row may span where it does not start on a line.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void PrefetchRows(float* x, long ld, int rows)
    {
        if (!Sse.IsSupported)
        {
            return; // the 4-lane panels on Arm: no prefetch instruction in the cross-platform API
        }

        for (int j = 0; j < rows; j++, x += ld)
        {
            Sse.Prefetch0(x);
            Sse.Prefetch0(x + 16);
            Sse.Prefetch0(x + 32);
            Sse.Prefetch0(x + 48);
            Sse.Prefetch0(x + 63);
        }
    }

    /// <summary>block [64, 64] = rows 0..rows−1 of 64 floats at row stride ld, zero rows past them.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void CopyBlock(float* x, int ld, int rows, float* block)
    {
        for (int j = 0; j < Width; j++)
        {
            float* target = block + ((long)j * Width);
            if (j < rows)
            {
                CopyRow(x + ((long)j * ld), target);
            }
            else
            {
                new Span<float>(target, Width).Clear();
            }
        }
    }

    /// <summary>x·y for two rows of 64 floats: four products, one horizontal sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe float Dot(float* x, float* y)
    {
        if (!Wide)
        {
            return EightLanes ? Dot256(x, y) : Dot128(x, y);
        }

        var sum01 = Vector512.FusedMultiplyAdd(Vector512.Load(x + 16), Vector512.Load(y + 16), Vector512.Load(x) * Vector512.Load(y));
        var sum23 = Vector512.FusedMultiplyAdd(Vector512.Load(x + 48), Vector512.Load(y + 48), Vector512.Load(x + 32) * Vector512.Load(y + 32));
        return Vector512.Sum(sum01 + sum23);
    }

    /// <summary>to = factor · from, for rows of 64 floats.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void ScaleRow(float* from, float factor, float* to)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                ScaleRow256(from, factor, to);
            }
            else
            {
                ScaleRow128(from, factor, to);
            }

            return;
        }

        var scale = Vector512.Create(factor);
        (Vector512.Load(from) * scale).Store(to);
        (Vector512.Load(from + 16) * scale).Store(to + 16);
        (Vector512.Load(from + 32) * scale).Store(to + 32);
        (Vector512.Load(from + 48) * scale).Store(to + 48);
    }

    /// <summary>
    /// row[j] = e^(row[j] − shift) for j &lt; count, in place, and their sum: the exponentials of the tile-at-a-time
    /// softmax (any head size) in one pass, as 2^((row − shift)·log₂e) through Exp2 (16, 8 or 4 lanes; what is left
    /// past the last whole vector through MathF.Exp). The difference first: near the max it is exact, so the terms that carry the
    /// sum get Exp2's 2e-7. shift is the row's running max, not NaN; −∞ scores give exactly 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe float ExpShiftedRow(float* row, int count, float shift)
    {
        int j = 0;
        float sum = 0f;
        if (Wide)
        {
            var offset = Vector512.Create(shift);
            var log2E = Vector512.Create(Log2E);
            var sums = Vector512<float>.Zero;
            for (; j <= count - 16; j += 16)
            {
                var p = Exp2((Vector512.Load(row + j) - offset) * log2E);
                p.Store(row + j);
                sums += p;
            }

            sum = Vector512.Sum(sums);
        }
        else if (EightLanes)
        {
            var offset = Vector256.Create(shift);
            var log2E = Vector256.Create(Log2E);
            var sums = Vector256<float>.Zero;
            for (; j <= count - 8; j += 8)
            {
                var p = Exp2((Vector256.Load(row + j) - offset) * log2E);
                p.Store(row + j);
                sums += p;
            }

            sum = Vector256.Sum(sums);
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var offset = Vector128.Create(shift);
            var log2E = Vector128.Create(Log2E);
            var sums = Vector128<float>.Zero;
            for (; j <= count - 4; j += 4)
            {
                var p = Exp2((Vector128.Load(row + j) - offset) * log2E);
                p.Store(row + j);
                sums += p;
            }

            sum = Vector128.Sum(sums);
        }

        for (; j < count; j++)
        {
            row[j] = MathF.Exp(row[j] - shift);
            sum += row[j];
        }

        return sum;
    }

    /// <summary>The sum of a row's 16 running-sum lanes (the [rows, 16] layout of OnlineSoftmaxRows's sums).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float SumOfLanes(ReadOnlySpan<float> lanes) =>
        Wide ? Vector512.Sum(Vector512.Create(lanes))
        : EightLanes ? Vector256.Sum(Vector256.Create(lanes) + Vector256.Create(lanes[8..]))
        : Vector128.Sum((Vector128.Create(lanes) + Vector128.Create(lanes[4..])) + (Vector128.Create(lanes[8..]) + Vector128.Create(lanes[12..])));

    /// <summary>A row of 64 floats copied in four vector moves (a library copy's call cost as much as the copy).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void CopyRow(float* from, float* to)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                CopyRow256(from, to);
            }
            else
            {
                CopyRow128(from, to);
            }

            return;
        }

        Vector512.Load(from).Store(to);
        Vector512.Load(from + 16).Store(to + 16);
        Vector512.Load(from + 32).Store(to + 32);
        Vector512.Load(from + 48).Store(to + 48);
    }

    /// <summary>
    /// C[rows, 64] (+)= Aᵀ · B where A is stored [depth, rows] at row stride lda (so Aᵀ[i, p] = a[p·lda + i]) and
    /// B is [depth, 64] at row stride ldb: dV += Pᵀ·dO and dK += dSᵀ·Q without transposing P or dS.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void MultiplyAddTransposedA(int rows, int depth, float* a, int lda, float* b, int ldb, float* c, int ldc)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                MultiplyAddTransposedA256(rows, depth, a, lda, b, ldb, c, ldc);
            }
            else
            {
                MultiplyAdd128(rows, depth, a, 1, lda, b, ldb, c, ldc, add: true, Width);
            }

            return;
        }

        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            float* c0 = c + (long)i * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            Vector512<float> c00 = Vector512.Load(c0), c01 = Vector512.Load(c0 + 16), c02 = Vector512.Load(c0 + 32), c03 = Vector512.Load(c0 + 48);
            Vector512<float> c10 = Vector512.Load(c1), c11 = Vector512.Load(c1 + 16), c12 = Vector512.Load(c1 + 32), c13 = Vector512.Load(c1 + 48);
            Vector512<float> c20 = Vector512.Load(c2), c21 = Vector512.Load(c2 + 16), c22 = Vector512.Load(c2 + 32), c23 = Vector512.Load(c2 + 48);
            Vector512<float> c30 = Vector512.Load(c3), c31 = Vector512.Load(c3 + 16), c32 = Vector512.Load(c3 + 32), c33 = Vector512.Load(c3 + 48);
            // Two steps per loop trip, as in AttendRows: the backward ran 2-6% faster (same-process A/B, 1 and 2 threads,
            // T = 256 to 4096), with the same bits.
            float* ap = a + i;
            float* bp = b;
            Vector512<float> b0, b1, b2, b3, x;
            int p = 0;
            for (; p + 2 <= depth; p += 2, ap += 2L * lda, bp += 2L * ldb)
            {
                b0 = Vector512.Load(bp);
                b1 = Vector512.Load(bp + 16);
                b2 = Vector512.Load(bp + 32);
                b3 = Vector512.Load(bp + 48);
                x = Vector512.Create(ap[0]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
                x = Vector512.Create(ap[1]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
                x = Vector512.Create(ap[2]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
                x = Vector512.Create(ap[3]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
                b0 = Vector512.Load(bp + ldb);
                b1 = Vector512.Load(bp + ldb + 16);
                b2 = Vector512.Load(bp + ldb + 32);
                b3 = Vector512.Load(bp + ldb + 48);
                x = Vector512.Create(ap[lda]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
                x = Vector512.Create(ap[lda + 1]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
                x = Vector512.Create(ap[lda + 2]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
                x = Vector512.Create(ap[lda + 3]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
            }

            if (p < depth)
            {
                b0 = Vector512.Load(bp);
                b1 = Vector512.Load(bp + 16);
                b2 = Vector512.Load(bp + 32);
                b3 = Vector512.Load(bp + 48);
                x = Vector512.Create(ap[0]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
                x = Vector512.Create(ap[1]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
                x = Vector512.Create(ap[2]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
                x = Vector512.Create(ap[3]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
            }

            c00.Store(c0); c01.Store(c0 + 16); c02.Store(c0 + 32); c03.Store(c0 + 48);
            c10.Store(c1); c11.Store(c1 + 16); c12.Store(c1 + 32); c13.Store(c1 + 48);
            c20.Store(c2); c21.Store(c2 + 16); c22.Store(c2 + 32); c23.Store(c2 + 48);
            c30.Store(c3); c31.Store(c3 + 16); c32.Store(c3 + 32); c33.Store(c3 + 48);
        }

        for (; i < rows; i++)
        {
            float* ci = c + (long)i * ldc;
            Vector512<float> r0 = Vector512.Load(ci), r1 = Vector512.Load(ci + 16), r2 = Vector512.Load(ci + 32), r3 = Vector512.Load(ci + 48);
            float* ap = a + i;
            float* bp = b;
            for (int p = 0; p < depth; p++, ap += lda, bp += ldb)
            {
                var x = Vector512.Create(ap[0]);
                r0 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp), r0);
                r1 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp + 16), r1);
                r2 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp + 32), r2);
                r3 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp + 48), r3);
            }

            r0.Store(ci); r1.Store(ci + 16); r2.Store(ci + 32); r3.Store(ci + 48);
        }
    }

    /// <summary>
    /// C[rows, 32] (+)= A[rows, depth] · B[depth, 32], rows of A, B and C at arbitrary strides: MultiplyAdd for heads
    /// whose values are 32 wide (P·V of MiniLM's heads), four rows of C in 8 zmm accumulators (on AVX2 the six-row
    /// and two-row kernels of MultiplyAdd over 32 columns).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void MultiplyAdd32(int rows, int depth, float* a, int lda, float* b, int ldb, float* c, int ldc, bool add)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                MultiplyAdd256(rows, depth, a, lda, b, ldb, c, ldc, add, HalfWidth);
            }
            else
            {
                MultiplyAdd128(rows, depth, a, lda, 1, b, ldb, c, ldc, add, HalfWidth);
            }

            return;
        }

        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            float* a0 = a + (long)i * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
            float* c0 = c + (long)i * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            Vector512<float> c00, c01, c10, c11, c20, c21, c30, c31;
            if (add)
            {
                c00 = Vector512.Load(c0); c01 = Vector512.Load(c0 + 16); c10 = Vector512.Load(c1); c11 = Vector512.Load(c1 + 16);
                c20 = Vector512.Load(c2); c21 = Vector512.Load(c2 + 16); c30 = Vector512.Load(c3); c31 = Vector512.Load(c3 + 16);
            }
            else
            {
                c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = Vector512<float>.Zero;
            }

            float* bp = b;
            for (int p = 0; p < depth; p++, bp += ldb)
            {
                var b0 = Vector512.Load(bp);
                var b1 = Vector512.Load(bp + 16);
                var x = Vector512.Create(a0[p]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                x = Vector512.Create(a1[p]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                x = Vector512.Create(a2[p]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                x = Vector512.Create(a3[p]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            }

            c00.Store(c0); c01.Store(c0 + 16); c10.Store(c1); c11.Store(c1 + 16);
            c20.Store(c2); c21.Store(c2 + 16); c30.Store(c3); c31.Store(c3 + 16);
        }

        for (; i < rows; i++)
        {
            float* ai = a + (long)i * lda;
            float* ci = c + (long)i * ldc;
            Vector512<float> r0 = add ? Vector512.Load(ci) : Vector512<float>.Zero, r1 = add ? Vector512.Load(ci + 16) : Vector512<float>.Zero;
            float* bp = b;
            for (int p = 0; p < depth; p++, bp += ldb)
            {
                var x = Vector512.Create(ai[p]);
                r0 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp), r0);
                r1 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp + 16), r1);
            }

            r0.Store(ci); r1.Store(ci + 16);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void MultiplyAdd(int rows, int depth, float* a, int lda, float* b, int ldb, float* c, int ldc, bool add)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                MultiplyAdd256(rows, depth, a, lda, b, ldb, c, ldc, add, Width);
            }
            else
            {
                MultiplyAdd128(rows, depth, a, lda, 1, b, ldb, c, ldc, add, Width);
            }

            return;
        }

        int i = 0;
        for (; i + 4 <= rows; i += 4)
        {
            float* a0 = a + (long)i * lda, a1 = a0 + lda, a2 = a1 + lda, a3 = a2 + lda;
            Vector512<float> c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33;
            float* c0 = c + (long)i * ldc, c1 = c0 + ldc, c2 = c1 + ldc, c3 = c2 + ldc;
            if (add)
            {
                c00 = Vector512.Load(c0); c01 = Vector512.Load(c0 + 16); c02 = Vector512.Load(c0 + 32); c03 = Vector512.Load(c0 + 48);
                c10 = Vector512.Load(c1); c11 = Vector512.Load(c1 + 16); c12 = Vector512.Load(c1 + 32); c13 = Vector512.Load(c1 + 48);
                c20 = Vector512.Load(c2); c21 = Vector512.Load(c2 + 16); c22 = Vector512.Load(c2 + 32); c23 = Vector512.Load(c2 + 48);
                c30 = Vector512.Load(c3); c31 = Vector512.Load(c3 + 16); c32 = Vector512.Load(c3 + 32); c33 = Vector512.Load(c3 + 48);
            }
            else
            {
                c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = Vector512<float>.Zero;
                c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = Vector512<float>.Zero;
            }

            // Two steps per loop trip, as in MultiplyAddTransposedA above (same bits).
            float* bp = b;
            Vector512<float> b0, b1, b2, b3, x;
            nint p = 0;
            for (; p + 2 <= depth; p += 2, bp += 2L * ldb)
            {
                b0 = Vector512.Load(bp);
                b1 = Vector512.Load(bp + 16);
                b2 = Vector512.Load(bp + 32);
                b3 = Vector512.Load(bp + 48);
                x = Vector512.Create(a0[p]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
                x = Vector512.Create(a1[p]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
                x = Vector512.Create(a2[p]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
                x = Vector512.Create(a3[p]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
                b0 = Vector512.Load(bp + ldb);
                b1 = Vector512.Load(bp + ldb + 16);
                b2 = Vector512.Load(bp + ldb + 32);
                b3 = Vector512.Load(bp + ldb + 48);
                x = Vector512.Create(a0[p + 1]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
                x = Vector512.Create(a1[p + 1]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
                x = Vector512.Create(a2[p + 1]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
                x = Vector512.Create(a3[p + 1]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
            }

            if (p < depth)
            {
                b0 = Vector512.Load(bp);
                b1 = Vector512.Load(bp + 16);
                b2 = Vector512.Load(bp + 32);
                b3 = Vector512.Load(bp + 48);
                x = Vector512.Create(a0[p]);
                c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
                c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
                x = Vector512.Create(a1[p]);
                c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
                c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
                x = Vector512.Create(a2[p]);
                c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
                c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
                x = Vector512.Create(a3[p]);
                c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
                c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
            }

            c00.Store(c0); c01.Store(c0 + 16); c02.Store(c0 + 32); c03.Store(c0 + 48);
            c10.Store(c1); c11.Store(c1 + 16); c12.Store(c1 + 32); c13.Store(c1 + 48);
            c20.Store(c2); c21.Store(c2 + 16); c22.Store(c2 + 32); c23.Store(c2 + 48);
            c30.Store(c3); c31.Store(c3 + 16); c32.Store(c3 + 32); c33.Store(c3 + 48);
        }

        for (; i < rows; i++)
        {
            float* ai = a + (long)i * lda;
            float* ci = c + (long)i * ldc;
            Vector512<float> r0, r1, r2, r3;
            if (add)
            {
                r0 = Vector512.Load(ci); r1 = Vector512.Load(ci + 16); r2 = Vector512.Load(ci + 32); r3 = Vector512.Load(ci + 48);
            }
            else
            {
                r0 = r1 = r2 = r3 = Vector512<float>.Zero;
            }

            float* bp = b;
            for (int p = 0; p < depth; p++, bp += ldb)
            {
                var x = Vector512.Create(ai[p]);
                r0 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp), r0);
                r1 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp + 16), r1);
                r2 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp + 32), r2);
                r3 = Vector512.FusedMultiplyAdd(x, Vector512.Load(bp + 48), r3);
            }

            r0.Store(ci); r1.Store(ci + 16); r2.Store(ci + 32); r3.Store(ci + 48);
        }
    }

    /// <summary>
    /// The online-softmax update of FlashAttention for full 64-wide rows of base-2 scores s [rows, 64] (stride ls):
    /// s ← 2^(s − m); l ← l + s summed into 16 lanes (sums [rows, 16]); m, and with it l and the acc row, rescaled
    /// by 2^(m − m') only when the tile holds a score more than <see cref="RescaleSlack"/> above the running m.
    /// Rows with nothing visible so far (m = −∞ after the tile) are zeroed so they add nothing to acc. acc's rows are
    /// accWidth wide (the value head size: 64 or 32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void OnlineSoftmaxRows(int rows, float* s, int ls, float* acc, int ldacc, float* max, float* sums, int accWidth)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                OnlineSoftmaxRows256(rows, s, ls, acc, ldacc, max, sums, accWidth);
            }
            else
            {
                OnlineSoftmaxRows128(rows, s, ls, acc, ldacc, max, sums, accWidth);
            }

            return;
        }

        for (int i = 0; i < rows; i++)
        {
            float* row = s + (long)i * ls;
            var x0 = Vector512.Load(row);
            var x1 = Vector512.Load(row + 16);
            var x2 = Vector512.Load(row + 32);
            var x3 = Vector512.Load(row + 48);
            var tileMax = Avx512F.Max(Avx512F.Max(x0, x1), Avx512F.Max(x2, x3));
            float m = max[i];
            float* sum = sums + (16L * i);
            // One compare instead of a horizontal max per row: m may lag the true max by up to the slack, which
            // only lets P grow to 2^slack; lse = m + log₂ l and out = acc / l hold for any m.
            if (float.IsNegativeInfinity(m) || Vector512.GreaterThanAny(tileMax, Vector512.Create(m + RescaleSlack)))
            {
                float newMax = HorizontalMax(tileMax);
                newMax = newMax > m ? newMax : m;
                if (float.IsNegativeInfinity(newMax))
                {
                    Vector512<float>.Zero.Store(row);
                    Vector512<float>.Zero.Store(row + 16);
                    Vector512<float>.Zero.Store(row + 32);
                    Vector512<float>.Zero.Store(row + 48);
                    continue;
                }

                // The running max rose: rescale what was summed against the old one (2^−∞ = 0 for the first tile).
                var c = Exp2(Vector512.Create(m - newMax));
                (Vector512.Load(sum) * c).Store(sum);
                float* a = acc + (long)i * ldacc;
                for (int j = 0; j < accWidth; j += 16)
                {
                    (Vector512.Load(a + j) * c).Store(a + j);
                }

                max[i] = m = newMax;
            }

            var shift = Vector512.Create(m);
            x0 = Exp2(x0 - shift);
            x1 = Exp2(x1 - shift);
            x2 = Exp2(x2 - shift);
            x3 = Exp2(x3 - shift);
            x0.Store(row);
            x1.Store(row + 16);
            x2.Store(row + 32);
            x3.Store(row + 48);
            (Vector512.Load(sum) + ((x0 + x1) + (x2 + x3))).Store(sum);
        }
    }

    /// <summary>
    /// The fused forward's whole step for four query rows against one tile of 64 keys, with the scores never leaving
    /// registers: S = Q·Kᵀ (keys: the tile's block scale·log₂e·Kᵀ, [64, 64]); the columns outside each row's
    /// [first, end) hidden (ranges: 8 ints, or null when every row sees all 64); the online-softmax update of
    /// <see cref="OnlineSoftmaxRows"/> (P into p, [4, 64]); then acc [4, 64] += P · V over the first `depth` keys
    /// (values: the tile's [64, 64] block; the keys past depth must have P = 0, so with ranges their scores may go
    /// uncomputed). q0..q3 are rows of 64 queries
    /// (a block with fewer rows repeats its last one; acc, max and sums still hold four rows).
    /// prefetchKeys and prefetchValues each name 64 cache lines (4 KB) to bring into L1 while the products run: a
    /// quarter of the next tile's blocks for each of the first four row blocks of a tile, which otherwise arrive from
    /// L2 or L3 on first use (the head's blocks are 2 MB at T = 4096: ~7% of the forward, same-process A/B).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void AttendRows(
        float* q0, float* q1, float* q2, float* q3, float* keys, float* values, int* ranges, int depth,
        float* prefetchKeys, float* prefetchValues, float* acc, float* max, float* sums, float* p)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                AttendRows256(q0, q1, q2, q3, keys, values, ranges, depth, prefetchKeys, prefetchValues, acc, max, sums, p);
            }
            else
            {
                AttendRows128(q0, q1, q2, q3, keys, values, ranges, depth, acc, max, sums, p);
            }

            return;
        }

        Vector512<float> s00 = default, s01 = default, s02 = default, s03 = default;
        Vector512<float> s10 = default, s11 = default, s12 = default, s13 = default;
        Vector512<float> s20 = default, s21 = default, s22 = default, s23 = default;
        Vector512<float> s30 = default, s31 = default, s32 = default, s33 = default;
        // Both products run two steps per trip of their loops, the fetch pointer bumped rather than recomputed: one step
        // per trip cost ~8 integer uops (addresses, counter, branch) per 16 FMAs, which issue on the FMA ports too (as
        // in Gemm's kernel). The forward ran 2-11% faster (same-process A/B on an Emerald Rapids Xeon, 1 and 2 threads,
        // T = 256 to 4096), with the same bits: each accumulator still sums in order.
        float* bp = keys, prefetch = prefetchKeys;
        Vector512<float> b0, b1, b2, b3, x;
        // A block on the causal diagonal that sees at most 32 of the tile's keys (the caller hides the rest: ranges end
        // by depth) needs only half of S. At T = 256 a fifth of the calls are such blocks, and skipping the hidden half
        // made the forward 2-4% faster at T = 64 and 256 (same-process A/B, 1 and 2 threads), 1% at T = 1024.
        if (ranges != null && depth <= 32)
        {
            for (nint d = 0; d < Width; d += 2, bp += 2 * Width, prefetch += 32)
            {
                Sse.Prefetch0(prefetch);
                Sse.Prefetch0(prefetch + 16);
                b0 = Vector512.Load(bp);
                b1 = Vector512.Load(bp + 16);
                x = Vector512.Create(q0[d]);
                s00 = Vector512.FusedMultiplyAdd(x, b0, s00); s01 = Vector512.FusedMultiplyAdd(x, b1, s01);
                x = Vector512.Create(q1[d]);
                s10 = Vector512.FusedMultiplyAdd(x, b0, s10); s11 = Vector512.FusedMultiplyAdd(x, b1, s11);
                x = Vector512.Create(q2[d]);
                s20 = Vector512.FusedMultiplyAdd(x, b0, s20); s21 = Vector512.FusedMultiplyAdd(x, b1, s21);
                x = Vector512.Create(q3[d]);
                s30 = Vector512.FusedMultiplyAdd(x, b0, s30); s31 = Vector512.FusedMultiplyAdd(x, b1, s31);
                b0 = Vector512.Load(bp + Width);
                b1 = Vector512.Load(bp + Width + 16);
                x = Vector512.Create(q0[d + 1]);
                s00 = Vector512.FusedMultiplyAdd(x, b0, s00); s01 = Vector512.FusedMultiplyAdd(x, b1, s01);
                x = Vector512.Create(q1[d + 1]);
                s10 = Vector512.FusedMultiplyAdd(x, b0, s10); s11 = Vector512.FusedMultiplyAdd(x, b1, s11);
                x = Vector512.Create(q2[d + 1]);
                s20 = Vector512.FusedMultiplyAdd(x, b0, s20); s21 = Vector512.FusedMultiplyAdd(x, b1, s21);
                x = Vector512.Create(q3[d + 1]);
                s30 = Vector512.FusedMultiplyAdd(x, b0, s30); s31 = Vector512.FusedMultiplyAdd(x, b1, s31);
            }
        }
        else
        {
            for (nint d = 0; d < Width; d += 2, bp += 2 * Width, prefetch += 32)
            {
                Sse.Prefetch0(prefetch);
                Sse.Prefetch0(prefetch + 16);
                b0 = Vector512.Load(bp);
                b1 = Vector512.Load(bp + 16);
                b2 = Vector512.Load(bp + 32);
                b3 = Vector512.Load(bp + 48);
                x = Vector512.Create(q0[d]);
                s00 = Vector512.FusedMultiplyAdd(x, b0, s00); s01 = Vector512.FusedMultiplyAdd(x, b1, s01);
                s02 = Vector512.FusedMultiplyAdd(x, b2, s02); s03 = Vector512.FusedMultiplyAdd(x, b3, s03);
                x = Vector512.Create(q1[d]);
                s10 = Vector512.FusedMultiplyAdd(x, b0, s10); s11 = Vector512.FusedMultiplyAdd(x, b1, s11);
                s12 = Vector512.FusedMultiplyAdd(x, b2, s12); s13 = Vector512.FusedMultiplyAdd(x, b3, s13);
                x = Vector512.Create(q2[d]);
                s20 = Vector512.FusedMultiplyAdd(x, b0, s20); s21 = Vector512.FusedMultiplyAdd(x, b1, s21);
                s22 = Vector512.FusedMultiplyAdd(x, b2, s22); s23 = Vector512.FusedMultiplyAdd(x, b3, s23);
                x = Vector512.Create(q3[d]);
                s30 = Vector512.FusedMultiplyAdd(x, b0, s30); s31 = Vector512.FusedMultiplyAdd(x, b1, s31);
                s32 = Vector512.FusedMultiplyAdd(x, b2, s32); s33 = Vector512.FusedMultiplyAdd(x, b3, s33);
                b0 = Vector512.Load(bp + Width);
                b1 = Vector512.Load(bp + Width + 16);
                b2 = Vector512.Load(bp + Width + 32);
                b3 = Vector512.Load(bp + Width + 48);
                x = Vector512.Create(q0[d + 1]);
                s00 = Vector512.FusedMultiplyAdd(x, b0, s00); s01 = Vector512.FusedMultiplyAdd(x, b1, s01);
                s02 = Vector512.FusedMultiplyAdd(x, b2, s02); s03 = Vector512.FusedMultiplyAdd(x, b3, s03);
                x = Vector512.Create(q1[d + 1]);
                s10 = Vector512.FusedMultiplyAdd(x, b0, s10); s11 = Vector512.FusedMultiplyAdd(x, b1, s11);
                s12 = Vector512.FusedMultiplyAdd(x, b2, s12); s13 = Vector512.FusedMultiplyAdd(x, b3, s13);
                x = Vector512.Create(q2[d + 1]);
                s20 = Vector512.FusedMultiplyAdd(x, b0, s20); s21 = Vector512.FusedMultiplyAdd(x, b1, s21);
                s22 = Vector512.FusedMultiplyAdd(x, b2, s22); s23 = Vector512.FusedMultiplyAdd(x, b3, s23);
                x = Vector512.Create(q3[d + 1]);
                s30 = Vector512.FusedMultiplyAdd(x, b0, s30); s31 = Vector512.FusedMultiplyAdd(x, b1, s31);
                s32 = Vector512.FusedMultiplyAdd(x, b2, s32); s33 = Vector512.FusedMultiplyAdd(x, b3, s33);
            }
        }

        if (ranges != null)
        {
            var k0 = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            Vector512<int> k1 = k0 + Vector512.Create(16), k2 = k1 + Vector512.Create(16), k3 = k2 + Vector512.Create(16);
            var first = Vector512.Create(ranges[0]);
            var end = Vector512.Create(ranges[1]);
            s00 = Visible(s00, k0, first, end); s01 = Visible(s01, k1, first, end); s02 = Visible(s02, k2, first, end); s03 = Visible(s03, k3, first, end);
            first = Vector512.Create(ranges[2]);
            end = Vector512.Create(ranges[3]);
            s10 = Visible(s10, k0, first, end); s11 = Visible(s11, k1, first, end); s12 = Visible(s12, k2, first, end); s13 = Visible(s13, k3, first, end);
            first = Vector512.Create(ranges[4]);
            end = Vector512.Create(ranges[5]);
            s20 = Visible(s20, k0, first, end); s21 = Visible(s21, k1, first, end); s22 = Visible(s22, k2, first, end); s23 = Visible(s23, k3, first, end);
            first = Vector512.Create(ranges[6]);
            end = Vector512.Create(ranges[7]);
            s30 = Visible(s30, k0, first, end); s31 = Visible(s31, k1, first, end); s32 = Visible(s32, k2, first, end); s33 = Visible(s33, k3, first, end);
        }

        UpdateRowMax(s00, s01, s02, s03, max, sums, acc, p);
        UpdateRowMax(s10, s11, s12, s13, max + 1, sums + 16, acc + Width, p + Width);
        UpdateRowMax(s20, s21, s22, s23, max + 2, sums + 32, acc + (2 * Width), p + (2 * Width));
        UpdateRowMax(s30, s31, s32, s33, max + 3, sums + 48, acc + (3 * Width), p + (3 * Width));

        float* c0 = acc, c1 = acc + Width, c2 = acc + (2 * Width), c3 = acc + (3 * Width);
        Vector512<float> c00 = Vector512.Load(c0), c01 = Vector512.Load(c0 + 16), c02 = Vector512.Load(c0 + 32), c03 = Vector512.Load(c0 + 48);
        Vector512<float> c10 = Vector512.Load(c1), c11 = Vector512.Load(c1 + 16), c12 = Vector512.Load(c1 + 32), c13 = Vector512.Load(c1 + 48);
        Vector512<float> c20 = Vector512.Load(c2), c21 = Vector512.Load(c2 + 16), c22 = Vector512.Load(c2 + 32), c23 = Vector512.Load(c2 + 48);
        Vector512<float> c30 = Vector512.Load(c3), c31 = Vector512.Load(c3 + 16), c32 = Vector512.Load(c3 + 32), c33 = Vector512.Load(c3 + 48);

        // P = 2^(S − m) in place. Keys 0..15 of each row first; on a whole tile the other 12 vectors are computed
        // inside the loop below, where the exponential's non-FMA work issues beside the products instead of in a pause
        // between the two products: one every 2 keys over the first 24, so each is ready at least 10 keys (80 cycles
        // of products) before its first use. One every 4 keys left the last of each 16 only 4 keys (~32 cycles) for
        // its ~50-cycle chain, and that row's products waited (~4% of the forward on an Intel Xeon).
        // Hidden scores (−∞) must give exactly 0; a tile with none skips the zeroing (Exp2Clamped).
        bool hidden = ranges != null;
        ExpInPlace(p, max[0], hidden);
        ExpInPlace(p + Width, max[1], hidden);
        ExpInPlace(p + (2 * Width), max[2], hidden);
        ExpInPlace(p + (3 * Width), max[3], hidden);
        nint interleaved = 0;
        if (depth == Width)
        {
            interleaved = 24;
        }
        else
        {
            for (int j = 16; j < Width; j += 16)
            {
                ExpInPlace(p + j, max[0], hidden);
                ExpInPlace(p + Width + j, max[1], hidden);
                ExpInPlace(p + (2 * Width) + j, max[2], hidden);
                ExpInPlace(p + (3 * Width) + j, max[3], hidden);
            }
        }

        bp = values;
        prefetch = prefetchValues;
        nint k = 0;
        for (; k + 2 <= depth; k += 2, bp += 2 * Width, prefetch += 32)
        {
            if (k < interleaved)
            {
                // The k/2-th of the 12: row (k/2) mod 4, keys 16 + 16·⌊k/8⌋ onwards.
                nint row = (k >> 1) & 3;
                ExpInPlace(p + (row * Width) + 16 + ((k >> 3) << 4), max[row], hidden);
            }

            Sse.Prefetch0(prefetch);
            Sse.Prefetch0(prefetch + 16);
            b0 = Vector512.Load(bp);
            b1 = Vector512.Load(bp + 16);
            b2 = Vector512.Load(bp + 32);
            b3 = Vector512.Load(bp + 48);
            x = Vector512.Create(p[k]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
            x = Vector512.Create(p[Width + k]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
            x = Vector512.Create(p[(2 * Width) + k]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
            x = Vector512.Create(p[(3 * Width) + k]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
            b0 = Vector512.Load(bp + Width);
            b1 = Vector512.Load(bp + Width + 16);
            b2 = Vector512.Load(bp + Width + 32);
            b3 = Vector512.Load(bp + Width + 48);
            x = Vector512.Create(p[k + 1]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
            x = Vector512.Create(p[Width + k + 1]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
            x = Vector512.Create(p[(2 * Width) + k + 1]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
            x = Vector512.Create(p[(3 * Width) + k + 1]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
        }

        // An odd depth's last key (never with interleaved exponentials: those need the whole 64).
        if (k < depth)
        {
            Sse.Prefetch0(prefetch);
            b0 = Vector512.Load(bp);
            b1 = Vector512.Load(bp + 16);
            b2 = Vector512.Load(bp + 32);
            b3 = Vector512.Load(bp + 48);
            x = Vector512.Create(p[k]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            c02 = Vector512.FusedMultiplyAdd(x, b2, c02); c03 = Vector512.FusedMultiplyAdd(x, b3, c03);
            x = Vector512.Create(p[Width + k]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            c12 = Vector512.FusedMultiplyAdd(x, b2, c12); c13 = Vector512.FusedMultiplyAdd(x, b3, c13);
            x = Vector512.Create(p[(2 * Width) + k]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            c22 = Vector512.FusedMultiplyAdd(x, b2, c22); c23 = Vector512.FusedMultiplyAdd(x, b3, c23);
            x = Vector512.Create(p[(3 * Width) + k]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            c32 = Vector512.FusedMultiplyAdd(x, b2, c32); c33 = Vector512.FusedMultiplyAdd(x, b3, c33);
        }

        c00.Store(c0); c01.Store(c0 + 16); c02.Store(c0 + 32); c03.Store(c0 + 48);
        c10.Store(c1); c11.Store(c1 + 16); c12.Store(c1 + 32); c13.Store(c1 + 48);
        c20.Store(c2); c21.Store(c2 + 16); c22.Store(c2 + 32); c23.Store(c2 + 48);
        c30.Store(c3); c31.Store(c3 + 16); c32.Store(c3 + 32); c33.Store(c3 + 48);
        AddRowSum(p, sums);
        AddRowSum(p + Width, sums + 16);
        AddRowSum(p + (2 * Width), sums + 32);
        AddRowSum(p + (3 * Width), sums + 48);
    }

    // The first half of AttendRows's softmax for one row, on its four score vectors: OnlineSoftmaxRows's update of
    // the running max (rescaling sum and acc when it rises past the slack), then the scores themselves into p. A row
    // that has seen nothing keeps m = −∞, and its P = 2^(−∞ − (−∞)) = Exp2(NaN) comes out 0.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void UpdateRowMax(
        Vector512<float> x0, Vector512<float> x1, Vector512<float> x2, Vector512<float> x3, float* max, float* sum, float* acc, float* p)
    {
        var tileMax = Avx512F.Max(Avx512F.Max(x0, x1), Avx512F.Max(x2, x3));
        float m = *max;
        if (float.IsNegativeInfinity(m) || Vector512.GreaterThanAny(tileMax, Vector512.Create(m + RescaleSlack)))
        {
            float newMax = HorizontalMax(tileMax);
            newMax = newMax > m ? newMax : m;
            if (!float.IsNegativeInfinity(newMax))
            {
                // The running max rose: rescale what was summed against the old one (2^−∞ = 0 for the first tile).
                var c = Exp2(Vector512.Create(m - newMax));
                (Vector512.Load(sum) * c).Store(sum);
                (Vector512.Load(acc) * c).Store(acc);
                (Vector512.Load(acc + 16) * c).Store(acc + 16);
                (Vector512.Load(acc + 32) * c).Store(acc + 32);
                (Vector512.Load(acc + 48) * c).Store(acc + 48);
                *max = newMax;
            }
        }

        x0.Store(p);
        x1.Store(p + 16);
        x2.Store(p + 32);
        x3.Store(p + 48);
    }

    // 16 scores at e ← 2^(e − m); with none hidden, 2⁻¹²⁵ for those more than 125 below m (Exp2Clamped).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void ExpInPlace(float* e, float m, bool hidden)
    {
        var x = Vector512.Load(e) - Vector512.Create(m);
        (hidden ? Exp2OffTheFmaPipes(x) : Exp2Clamped(x)).Store(e);
    }

    // A row's 16 sums += its 64 values of P, added in the order the softmax of OnlineSoftmaxRows adds them.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AddRowSum(float* p, float* sum) =>
        (Vector512.Load(sum) + ((Vector512.Load(p) + Vector512.Load(p + 16)) + (Vector512.Load(p + 32) + Vector512.Load(p + 48)))).Store(sum);

    // The scores x of the columns `column` where first ≤ column < end, −∞ elsewhere.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Visible(Vector512<float> x, Vector512<int> column, Vector512<int> first, Vector512<int> end) =>
        Vector512.ConditionalSelect(
            (Vector512.GreaterThanOrEqual(column, first) & Vector512.LessThan(column, end)).AsSingle(), x, Vector512.Create(float.NegativeInfinity));

    /// <summary>row[j] ← −∞ for the columns j of a 64-wide row outside [first, end).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static unsafe void HideOutside(float* row, int first, int end)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                HideOutside256(row, first, end);
            }
            else
            {
                HideOutside128(row, first, end);
            }

            return;
        }

        var hidden = Vector512.Create(float.NegativeInfinity);
        var column = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        var lower = Vector512.Create(first);
        var upper = Vector512.Create(end);
        for (int j = 0; j < Width; j += 16, column += Vector512.Create(16))
        {
            var visible = Vector512.GreaterThanOrEqual(column, lower) & Vector512.LessThan(column, upper);
            Vector512.ConditionalSelect(visible.AsSingle(), Vector512.Load(row + j), hidden).Store(row + j);
        }
    }

    /// <summary>How far (in base-2 units) a score may exceed the running max before the row is rescaled.</summary>
    public const float RescaleSlack = 8f;

    /// <summary>
    /// The backward's elementwise step on a tile of base-2 scores s [rows, 64] (stride ls) and dP [rows, 64]:
    /// P = 2^(s − log₂e·lse_i) into s, and dS = scale·P∘(dP − D_i) into dp. Rows whose lse is −∞ (nothing visible)
    /// give P = dS = 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void ProbabilitiesAndScoreGrad(int rows, float* s, float* dp, int ls, float* logSumExp, float* rowTerm, float scale)
    {
        if (!Wide)
        {
            if (EightLanes)
            {
                ProbabilitiesAndScoreGrad256(rows, s, dp, ls, logSumExp, rowTerm, scale);
            }
            else
            {
                ProbabilitiesAndScoreGrad128(rows, s, dp, ls, logSumExp, rowTerm, scale);
            }

            return;
        }

        var factor = Vector512.Create(scale);
        for (int i = 0; i < rows; i++)
        {
            float* si = s + ((long)i * ls), di = dp + ((long)i * ls);
            float lse = logSumExp[i];
            // −∞ lse: shift by +∞ so that every score gives 2^−∞ = 0 (the masked ones are −∞ already).
            var shift = Vector512.Create(float.IsNegativeInfinity(lse) ? float.PositiveInfinity : lse * Log2E);
            var d = Vector512.Create(rowTerm[i]);
            for (int j = 0; j < Width; j += 16)
            {
                var pj = Exp2(Vector512.Load(si + j) - shift);
                pj.Store(si + j);
                (factor * pj * (Vector512.Load(di + j) - d)).Store(di + j);
            }
        }
    }

    /// <summary>The largest of the 16 lanes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float HorizontalMax(Vector512<float> m)
    {
        // vmaxps, not Vector*.Max: the latter orders NaN and ±0 as IEEE 754 does, at three instructions each.
        var m256 = Avx.Max(m.GetLower(), m.GetUpper());
        var m128 = Sse.Max(m256.GetLower(), m256.GetUpper());
        m128 = Sse.Max(m128, Sse.Shuffle(m128, m128, 0b01_00_11_10));
        return Sse.MaxScalar(m128, Sse.Shuffle(m128, m128, 0b00_00_00_01)).ToScalar();
    }
}
