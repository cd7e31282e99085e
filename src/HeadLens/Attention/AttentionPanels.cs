using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace HeadLens.Attention;

// The fused attention's two tile products when AVX-512 is present and the value head size is 64 (GPT-2, Llama):
//   C[rows, 64] (+)= A[rows, K] · B[K, 64]   with rows of A, B and C at arbitrary strides
// used as S = Q_tile · Kᵀ_tile (B = the head's keys transposed once to [D, T]) and acc += P · V_tile (B = rows of V,
// read in place). Four rows of C live in 16 zmm accumulators while the depth loop streams four vectors of B and
// broadcasts four values of A per step: no packing, because both B layouts are already row-contiguous.
internal static class AttentionPanels
{
    public const int Width = 64;

    public static bool Available => Vector512.IsHardwareAccelerated;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void MultiplyAdd(int rows, int depth, float* a, int lda, float* b, int ldb, float* c, int ldc, bool add)
    {
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

            float* bp = b;
            for (int p = 0; p < depth; p++, bp += ldb)
            {
                var b0 = Vector512.Load(bp);
                var b1 = Vector512.Load(bp + 16);
                var b2 = Vector512.Load(bp + 32);
                var b3 = Vector512.Load(bp + 48);
                var x = Vector512.Create(a0[p]);
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
    /// The online-softmax update of FlashAttention for full 64-wide score rows s [rows, 64] (stride ls):
    /// m' = max(m, rowmax s); s ← exp(s − m'); l ← l·exp(m − m') + rowsum s; acc row ← acc row·exp(m − m').
    /// Rows with nothing visible so far (m' = −∞) are zeroed so they add nothing to acc.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void OnlineSoftmaxRows(int rows, float* s, int ls, float* acc, int ldacc, float* max, float* sum)
    {
        for (int i = 0; i < rows; i++)
        {
            float* row = s + (long)i * ls;
            var x0 = Vector512.Load(row);
            var x1 = Vector512.Load(row + 16);
            var x2 = Vector512.Load(row + 32);
            var x3 = Vector512.Load(row + 48);
            var m = Vector512.Max(Vector512.Max(x0, x1), Vector512.Max(x2, x3));
            var m256 = Vector256.Max(m.GetLower(), m.GetUpper());
            var m128 = Vector128.Max(m256.GetLower(), m256.GetUpper());
            float tileMax = MathF.Max(MathF.Max(m128[0], m128[1]), MathF.Max(m128[2], m128[3]));
            float newMax = MathF.Max(max[i], tileMax);
            if (float.IsNegativeInfinity(newMax))
            {
                Vector512<float>.Zero.Store(row);
                Vector512<float>.Zero.Store(row + 16);
                Vector512<float>.Zero.Store(row + 32);
                Vector512<float>.Zero.Store(row + 48);
                continue;
            }

            var shift = Vector512.Create(newMax);
            x0 = Vector512.Exp(x0 - shift);
            x1 = Vector512.Exp(x1 - shift);
            x2 = Vector512.Exp(x2 - shift);
            x3 = Vector512.Exp(x3 - shift);
            x0.Store(row);
            x1.Store(row + 16);
            x2.Store(row + 32);
            x3.Store(row + 48);
            float correction = MathF.Exp(max[i] - newMax);
            sum[i] = sum[i] * correction + Vector512.Sum((x0 + x1) + (x2 + x3));
            max[i] = newMax;
            if (correction != 1f)
            {
                float* a = acc + (long)i * ldacc;
                var c = Vector512.Create(correction);
                (Vector512.Load(a) * c).Store(a);
                (Vector512.Load(a + 16) * c).Store(a + 16);
                (Vector512.Load(a + 32) * c).Store(a + 32);
                (Vector512.Load(a + 48) * c).Store(a + 48);
            }
        }
    }
}
