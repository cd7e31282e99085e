using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using HeadLens.Kernels;
using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>Q-, K- and V-composition of a later head (layer, head) with an earlier one (sourceLayer, sourceHead).</summary>
public sealed record Composition(int SourceLayer, int SourceHead, int Layer, int Head, double Query, double Key, double Value)
{
    /// <summary>The score of one input of the later head: <see cref="Query"/>, <see cref="Key"/> or <see cref="Value"/>.</summary>
    public double Of(HeadInput input) => input switch
    {
        HeadInput.Query => Query,
        HeadInput.Key => Key,
        _ => Value,
    };
}

/// <summary>
/// A [C, C] matrix kept as the product of its two thin factors, Left [C, D] · Right [D, C] (rank ≤ D), so that norms
/// and products of head circuits cost O(C·D²) instead of O(C³).
/// </summary>
public sealed class LowRank(double[] left, double[] right, int channels, int rank)
{
    public int Channels { get; } = channels;

    public int Rank { get; } = rank;

    public double[] Left { get; } = left;     // [C, D]

    public double[] Right { get; } = right;   // [D, C]

    /// <summary>The transpose: (L R)ᵀ = Rᵀ Lᵀ.</summary>
    public LowRank Transposed() => new(Transpose(Right, Rank, Channels), Transpose(Left, Channels, Rank), Channels, Rank)
    {
        // (Rᵀ)ᵀ Rᵀ = R Rᵀ and Lᵀ (Lᵀ)ᵀ = LᵀL: the transpose's Gram matrices are this one's, swapped.
        leftGram = rightGram,
        rightGram = leftGram,
        leftTransposed = Right,
    };

    /// <summary>The dense matrix L·R [C, C].</summary>
    public double[] Dense()
    {
        int c = Channels, d = Rank;
        var result = new double[c * c];
        for (int i = 0; i < c; i++)
        {
            for (int p = 0; p < d; p++)
            {
                double l = Left[i * d + p];
                for (int j = 0; j < c; j++)
                {
                    result[i * c + j] += l * Right[p * c + j];
                }
            }
        }

        return result;
    }

    /// <summary>‖L R‖_F = sqrt(tr((LᵀL)(R Rᵀ))).</summary>
    public double FrobeniusNorm() => Math.Sqrt(Math.Max(0, TraceOfProduct(LeftGram, RightGram, Rank)));

    // LᵀL and R Rᵀ [D, D], computed once per matrix: every norm and product norm that involves it reads them.
    private double[]? leftGram, rightGram, leftTransposed;

    private double[] LeftGram => leftGram ??= Gram(LeftTransposed, Rank, Channels);

    private double[] RightGram => rightGram ??= Gram(Right, Rank, Channels);

    // Lᵀ [D, C]: L's columns as rows, so that LᵀL and U·Lᵀ run over contiguous rows of C.
    private double[] LeftTransposed => leftTransposed ??= Transpose(Left, Channels, Rank);

    /// <summary>
    /// ‖A·B‖_F for A = La Ra, B = Lb Rb: A·B = La (Ra Lb) Rb, and with M = Ra Lb [D, D],
    /// ‖La M Rb‖²_F = tr(Mᵀ (LaᵀLa) M (Rb Rbᵀ)) = Σ_ij (Ga · (M Gb))_ij M_ij: O(C·D²) for M, O(D³) for the rest.
    /// </summary>
    public static double ProductNorm(LowRank a, LowRank b)
    {
        int c = a.Channels, da = a.Rank, db = b.Rank;
        var m = new double[da * db];   // [Da, Db] = Ra [Da, C] · Lb [C, Db], row by row
        for (int i = 0; i < da; i++)
        {
            var row = m.AsSpan(i * db, db);
            for (int p = 0; p < c; p++)
            {
                TensorPrimitives.MultiplyAdd(b.Left.AsSpan(p * db, db), a.Right[i * c + p], row, row);
            }
        }

        var gramLeft = a.LeftGram;     // [Da, Da]
        var gramRight = b.RightGram;   // [Db, Db]
        var n = new double[da * db];   // M Gb [Da, Db]
        for (int i = 0; i < da; i++)
        {
            var row = n.AsSpan(i * db, db);
            for (int q = 0; q < db; q++)
            {
                TensorPrimitives.MultiplyAdd(gramRight.AsSpan(q * db, db), m[i * db + q], row, row);
            }
        }

        double sum = 0;
        for (int i = 0; i < da; i++)
        {
            for (int p = 0; p < da; p++)
            {
                // Σ_j (Ga)_ip N_pj M_ij
                sum += gramLeft[i * da + p] * TensorPrimitives.Dot<double>(n.AsSpan(p * db, db), m.AsSpan(i * db, db));
            }
        }

        return Math.Sqrt(Math.Max(0, sum));
    }

    // The left whitening as its two factors: U [D, D] with UᵀU = LᵀL (the Cholesky factor) and the rows R [D, C] it
    // multiplies. U·R carries the left factor's geometry: ‖(L R)·B‖_F = ‖U R B‖_F for any B (Bᵀ Rᵀ LᵀL R B =
    // Bᵀ Rᵀ UᵀU R B). Circuits.Compositions forms the product in float, with the fast Gemm.
    internal (double[] Factor, double[] Rows) LeftWhitening() => (CholeskyUpper(LeftGram, Rank), Right);

    // The right whitening likewise: U with UᵀU = R Rᵀ and the rows Lᵀ [D, C]; U·Lᵀ = (L·Uᵀ)ᵀ, and ‖A·(L R)‖_F =
    // ‖A L Uᵀ‖_F for any A. With both, ‖A·B‖_F = ‖X_A · Y_Bᵀ‖_F for X_A = U_A R_A and Y_Bᵀ = U_B L_Bᵀ: a [D, C]·[C, D]
    // product per pair, which for many pairs is one large one.
    internal (double[] Factor, double[] Rows) RightWhitening() => (CholeskyUpper(RightGram, Rank), LeftTransposed);

    // U [n, n], upper triangular, with UᵀU = G for a symmetric positive semi-definite G. A pivot at rounding level (a
    // rank-deficient G: a head whose weights are zero, or fewer channels than its size) leaves its row of U zero.
    private static double[] CholeskyUpper(double[] g, int n)
    {
        var u = new double[n * n];
        double largest = 0;
        for (int i = 0; i < n; i++)
        {
            largest = Math.Max(largest, g[i * n + i]);
        }

        double floor = largest * 1e-14;
        for (int j = 0; j < n; j++)
        {
            double pivot = g[j * n + j];
            for (int k = 0; k < j; k++)
            {
                pivot -= u[k * n + j] * u[k * n + j];
            }

            if (pivot <= floor)
            {
                continue;
            }

            double root = Math.Sqrt(pivot);
            u[j * n + j] = root;
            for (int i = j + 1; i < n; i++)
            {
                double sum = g[j * n + i];
                for (int k = 0; k < j; k++)
                {
                    sum -= u[k * n + j] * u[k * n + i];
                }

                u[j * n + i] = sum / root;
            }
        }

        return u;
    }

    // X Xᵀ [n, n] for the rows of X [n, width]: the upper half, mirrored. With 512-bit vectors, 4 × 4 entries at a time
    // (16 running sums in registers: each chunk of 8 loaded once per block instead of once per entry); the entries
    // of rows past a multiple of 4, and without such vectors all of them, as one dot product each (GramReference).
    internal static unsafe double[] Gram(double[] x, int n, int width)
    {
        var gram = new double[n * n];
        int blocked = Vector512.IsHardwareAccelerated && width >= Vector512<double>.Count ? n / 4 * 4 : 0;
        fixed (double* rows = x)
        {
            for (int i = 0; i < blocked; i += 4)
            {
                for (int j = i; j < blocked; j += 4)
                {
                    GramBlock(rows, width, i, j, gram, n);
                }
            }
        }

        for (int i = 0; i < n; i++)
        {
            for (int j = Math.Max(i, blocked); j < n; j++)
            {
                gram[i * n + j] = gram[j * n + i] = TensorPrimitives.Dot<double>(x.AsSpan(i * width, width), x.AsSpan(j * width, width));
            }
        }

        return gram;
    }

    // Gram's plain form: one dot product per entry of the upper half, mirrored (the tests hold Gram to it).
    internal static double[] GramReference(double[] x, int n, int width)
    {
        var gram = new double[n * n];
        for (int i = 0; i < n; i++)
        {
            for (int j = i; j < n; j++)
            {
                gram[i * n + j] = gram[j * n + i] = TensorPrimitives.Dot<double>(x.AsSpan(i * width, width), x.AsSpan(j * width, width));
            }
        }

        return gram;
    }

    // Entries [i .. i + 4) × [j .. j + 4) of X Xᵀ (and their mirror images) for rows of `width` (≥ 8) at x.
    private static unsafe void GramBlock(double* x, int width, int i, int j, double[] gram, int n)
    {
        // Two moving pointers and one stride: with a pointer per row the loop ran out of general registers and the JIT
        // kept the 16 sums in memory.
        long w = width;
        double* a = x + (i * w), b = x + (j * w);
        Vector512<double> s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33;
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = Vector512<double>.Zero;
        s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = Vector512<double>.Zero;
        int k = 0;
        for (; k + 8 <= width; k += 8, a += 8, b += 8)
        {
            var c0 = Vector512.Load(b);
            var c1 = Vector512.Load(b + w);
            var c2 = Vector512.Load(b + (2 * w));
            var c3 = Vector512.Load(b + (3 * w));
            var r = Vector512.Load(a);
            s00 = Vector512.FusedMultiplyAdd(r, c0, s00); s01 = Vector512.FusedMultiplyAdd(r, c1, s01);
            s02 = Vector512.FusedMultiplyAdd(r, c2, s02); s03 = Vector512.FusedMultiplyAdd(r, c3, s03);
            r = Vector512.Load(a + w);
            s10 = Vector512.FusedMultiplyAdd(r, c0, s10); s11 = Vector512.FusedMultiplyAdd(r, c1, s11);
            s12 = Vector512.FusedMultiplyAdd(r, c2, s12); s13 = Vector512.FusedMultiplyAdd(r, c3, s13);
            r = Vector512.Load(a + (2 * w));
            s20 = Vector512.FusedMultiplyAdd(r, c0, s20); s21 = Vector512.FusedMultiplyAdd(r, c1, s21);
            s22 = Vector512.FusedMultiplyAdd(r, c2, s22); s23 = Vector512.FusedMultiplyAdd(r, c3, s23);
            r = Vector512.Load(a + (3 * w));
            s30 = Vector512.FusedMultiplyAdd(r, c0, s30); s31 = Vector512.FusedMultiplyAdd(r, c1, s31);
            s32 = Vector512.FusedMultiplyAdd(r, c2, s32); s33 = Vector512.FusedMultiplyAdd(r, c3, s33);
        }

        // The 16 sums reduced before any call: a vector live across a call is spilled where it is defined, which
        // here is inside the loop (all 16 went through memory on every step, slower than one dot product at a time).
        double t00 = Vector512.Sum(s00), t01 = Vector512.Sum(s01), t02 = Vector512.Sum(s02), t03 = Vector512.Sum(s03);
        double t10 = Vector512.Sum(s10), t11 = Vector512.Sum(s11), t12 = Vector512.Sum(s12), t13 = Vector512.Sum(s13);
        double t20 = Vector512.Sum(s20), t21 = Vector512.Sum(s21), t22 = Vector512.Sum(s22), t23 = Vector512.Sum(s23);
        double t30 = Vector512.Sum(s30), t31 = Vector512.Sum(s31), t32 = Vector512.Sum(s32), t33 = Vector512.Sum(s33);
        Entry(t00, x, w, k, i, j, gram, n); Entry(t01, x, w, k, i, j + 1, gram, n); Entry(t02, x, w, k, i, j + 2, gram, n); Entry(t03, x, w, k, i, j + 3, gram, n);
        Entry(t10, x, w, k, i + 1, j, gram, n); Entry(t11, x, w, k, i + 1, j + 1, gram, n); Entry(t12, x, w, k, i + 1, j + 2, gram, n); Entry(t13, x, w, k, i + 1, j + 3, gram, n);
        Entry(t20, x, w, k, i + 2, j, gram, n); Entry(t21, x, w, k, i + 2, j + 1, gram, n); Entry(t22, x, w, k, i + 2, j + 2, gram, n); Entry(t23, x, w, k, i + 2, j + 3, gram, n);
        Entry(t30, x, w, k, i + 3, j, gram, n); Entry(t31, x, w, k, i + 3, j + 1, gram, n); Entry(t32, x, w, k, i + 3, j + 2, gram, n); Entry(t33, x, w, k, i + 3, j + 3, gram, n);
    }

    // Entry (row, col) of a Gram matrix: `sum` over the first `tail` columns, plus the rest.
    private static unsafe void Entry(double sum, double* x, long width, int tail, int row, int col, double[] gram, int n)
    {
        for (long t = tail; t < width; t++)
        {
            sum += x[row * width + t] * x[col * width + t];
        }

        gram[row * n + col] = gram[col * n + row] = sum;
    }

    private static double TraceOfProduct(double[] a, double[] b, int size)
    {
        // tr(A B) for symmetric B = Σ_ij A_ij B_ij.
        double sum = 0;
        for (int i = 0; i < size * size; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }

    private static double[] Transpose(double[] x, int rows, int cols)
    {
        var result = new double[x.Length];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < cols; j++)
            {
                result[j * rows + i] = x[i * cols + j];
            }
        }

        return result;
    }
}

/// <summary>
/// Circuits read from the weights alone (Elhage et al. 2021, "A Mathematical Framework for Transformer Circuits").
/// With x a residual-stream vector [C], head h of a layer computes
///   score(x_q, x_k) = x_qᵀ · W_QK · x_k,   W_QK = diag(γ) W_Qᵀ W_K diag(γ)    [C, C]   (which tokens it looks at)
///   output(x_k)     = W_OV · x_k,           W_OV = W_O W_V diag(γ)            [C, C]   (what it writes when it looks)
/// where W_Q, W_K, W_V are the head's [D, C] rows of the projections, W_O its [C, D] columns of the output
/// projection, and γ the layer's attention-norm weight (the norm's centring, scaling and bias are left out, as in the
/// paper; queries read kv head h / (H/G) under grouped-query attention).
/// </summary>
public static class Circuits
{
    /// <summary>W_QK of a head as thin factors: Left = diag(γ) W_Qᵀ [C, D], Right = W_K diag(γ) [D, C].</summary>
    public static LowRank QueryKey(Transformer model, int layer, int head)
    {
        var w = model.Parameters.Layer(layer);
        return QueryKey(model, layer, head, w.Query.ToFloat32(), w.Key.ToFloat32());
    }

    // query [H·D, C] and key [G·D, C] as fp32 (see the OutputValue overload below).
    private static LowRank QueryKey(Transformer model, int layer, int head, ReadOnlySpan<float> query, ReadOnlySpan<float> key)
    {
        var config = model.Config;
        int c = config.Channels, d = config.HeadDim, g = head / (config.Heads / config.KvHeads);
        var gamma = InputNorm(model, layer).Span;
        var left = new double[c * d];
        var right = new double[d * c];
        for (int p = 0; p < d; p++)
        {
            for (int i = 0; i < c; i++)
            {
                left[i * d + p] = gamma[i] * (double)query[(head * d + p) * c + i];
                right[p * c + i] = key[(g * d + p) * c + i] * (double)gamma[i];
            }
        }

        return new LowRank(left, right, c, d);
    }

    /// <summary>W_OV of a head as thin factors: Left = W_O [C, D], Right = W_V diag(γ) [D, C].</summary>
    public static LowRank OutputValue(Transformer model, int layer, int head)
    {
        var w = model.Parameters.Layer(layer);
        return OutputValue(model, layer, head, w.Value.ToFloat32(), w.Output.ToFloat32());
    }

    // value [G·D, C] and output [C, H·D] as fp32: the layer's own (or, for matrices kept quantized, decoded once per layer).
    private static LowRank OutputValue(Transformer model, int layer, int head, ReadOnlySpan<float> value, ReadOnlySpan<float> output)
    {
        var config = model.Config;
        int c = config.Channels, d = config.HeadDim, g = head / (config.Heads / config.KvHeads);
        var gamma = InputNorm(model, layer).Span;
        int outputWidth = config.Heads * d;
        var left = new double[c * d];
        var right = new double[d * c];
        for (int p = 0; p < d; p++)
        {
            for (int i = 0; i < c; i++)
            {
                left[i * d + p] = output[i * outputWidth + head * d + p];
                right[p * c + i] = value[(g * d + p) * c + i] * (double)gamma[i];
            }
        }

        return new LowRank(left, right, c, d);
    }

    /// <summary>
    /// Composition scores of every head with every head of an earlier layer:
    ///   Q: ‖W_QK^{h2}ᵀ W_OV^{h1}‖_F / (‖W_QK^{h2}‖_F ‖W_OV^{h1}‖_F)   (h2's queries read what h1 wrote)
    ///   K: ‖W_QK^{h2}  W_OV^{h1}‖_F / (‖W_QK^{h2}‖_F ‖W_OV^{h1}‖_F)   (h2's keys read what h1 wrote: induction)
    ///   V: ‖W_OV^{h2}  W_OV^{h1}‖_F / (‖W_OV^{h2}‖_F ‖W_OV^{h1}‖_F)   (h2 moves on what h1 wrote)
    /// Each lies in [0, 1] (submultiplicativity of the Frobenius norm). Two independent random matrices score about
    /// 1/√C (<see cref="RandomBaseline(ModelConfig)"/>; Elhage et al. subtract such a baseline, here it is left to the reader).
    /// </summary>
    public static List<Composition> Compositions(Transformer model, Action<int, int>? progress = null)
    {
        var config = model.Config;
        int layers = config.Layers, heads = config.Heads, c = config.Channels, d = config.HeadDim, block = heads * d;
        // Every head's circuits whitened (LowRank.LeftWhitening, RightWhitening) into float rows for the fast product:
        //   readers[l] [3, H, D, C]: per input (Q, K, V) and head, X with ‖A·B‖_F = ‖X·Y‖_F for its A (W_QKᵀ, W_QK,
        //                            W_OV) and any writer's Y;
        //   writers    [L, H, D, C]: per head Yᵀ, its W_OV's right-whitened factor transposed.
        var readers = new float[layers][];
        var writers = new float[(long)layers * block * c];
        var queryKeyNorms = new double[layers, heads];
        var outputValueNorms = new double[layers, heads];
        int steps = 2 * layers - 1, done = 0;
        for (int l = 0; l < layers; l++)
        {
            var w = model.Parameters.Layer(l);
            float[] query = w.Query.ToFloat32().ToArray(), key = w.Key.ToFloat32().ToArray();
            float[] value = w.Value.ToFloat32().ToArray(), output = w.Output.ToFloat32().ToArray();
            var rows = readers[l] = new float[3L * block * c];
            int layer = l;
            ComputeThreads.Run(heads, h =>
            {
                var qk = QueryKey(model, layer, h, query, key);
                var ov = OutputValue(model, layer, h, value, output);
                (queryKeyNorms[layer, h], outputValueNorms[layer, h]) = (qk.FrobeniusNorm(), ov.FrobeniusNorm());
                long head = (long)h * d * c;
                Whiten(qk.Transposed().LeftWhitening(), rows.AsSpan((int)head, d * c));
                Whiten(qk.LeftWhitening(), rows.AsSpan((int)((block * c) + head), d * c));
                Whiten(ov.LeftWhitening(), rows.AsSpan((int)((2L * block * c) + head), d * c));
                Whiten(ov.RightWhitening(), writers.AsSpan((int)(((long)layer * block * c) + head), d * c));
            });
            progress?.Invoke(++done, steps);
        }

        var result = new List<Composition>();
        var products = new float[3L * block * (layers - 1) * block];
        var squares = new double[3, heads, layers * heads];   // ‖X·Y‖² per input, receiving head, sending head
        for (int l2 = 1; l2 < layers; l2++)
        {
            // [3·H·D, l2·H·D] = readers[l2] · writersᵀ over the layers before l2: every pair into layer l2 at once.
            int width = l2 * block;
            Gemm.Multiply(false, true, 3 * block, width, c, readers[l2], c, writers, c, products, width, accumulate: false);
            Array.Clear(squares);
            for (int row = 0; row < 3 * block; row++)
            {
                var productRow = products.AsSpan(row * width, width);
                for (int sender = 0; sender < l2 * heads; sender++)
                {
                    var part = productRow.Slice(sender * d, d);
                    squares[row / block, row % block / d, sender] += TensorPrimitives.Dot(part, part);
                }
            }

            for (int h2 = 0; h2 < heads; h2++)
            {
                for (int sender = 0; sender < l2 * heads; sender++)
                {
                    int l1 = sender / heads, h1 = sender % heads;
                    double qkov = queryKeyNorms[l2, h2] * outputValueNorms[l1, h1];
                    result.Add(new Composition(l1, h1, l2, h2,
                        Ratio(Math.Sqrt(squares[0, h2, sender]), qkov),
                        Ratio(Math.Sqrt(squares[1, h2, sender]), qkov),
                        Ratio(Math.Sqrt(squares[2, h2, sender]), outputValueNorms[l2, h2] * outputValueNorms[l1, h1])));
                }
            }

            progress?.Invoke(++done, steps);
        }

        return result;

        // U · rows [D, C] in float: the Cholesky factor U is what needs float64 (it comes from a Gram matrix); the
        // product of the two, rounded to float anyway for the pairs' product, sums only D terms. One thread: this runs
        // on each compute thread, a head at a time.
        void Whiten((double[] Factor, double[] Rows) whitening, Span<float> destination)
        {
            var factor = ToFloat(whitening.Factor);
            var whitened = ToFloat(whitening.Rows);
            Gemm.Multiply(false, false, d, c, d, factor, d, whitened, c, destination, c, accumulate: false, threads: 1);
        }

        static float[] ToFloat(double[] values)
        {
            var result = GC.AllocateUninitializedArray<float>(values.Length);
            for (int i = 0; i < values.Length; i++)
            {
                result[i] = (float)values[i];
            }

            return result;
        }
    }

    /// <summary>
    /// <see cref="Compositions"/> computed pair by pair in float64 (<see cref="LowRank.ProductNorm"/>, no whitening,
    /// no float product): the plain path the fast one is held to.
    /// </summary>
    internal static List<Composition> CompositionsPairwise(Transformer model)
    {
        var config = model.Config;
        var circuits = new HeadCircuit[config.Layers, config.Heads];
        for (int l = 0; l < config.Layers; l++)
        {
            for (int h = 0; h < config.Heads; h++)
            {
                circuits[l, h] = HeadCircuit.Of(model, l, h);
            }
        }

        var result = new List<Composition>();
        for (int l2 = 1; l2 < config.Layers; l2++)
        {
            for (int h2 = 0; h2 < config.Heads; h2++)
            {
                for (int l1 = 0; l1 < l2; l1++)
                {
                    for (int h1 = 0; h1 < config.Heads; h1++)
                    {
                        result.Add(Compose(l1, h1, circuits[l1, h1], l2, h2, circuits[l2, h2]));
                    }
                }
            }
        }

        return result;
    }

    /// <summary>
    /// The entries of <see cref="Compositions"/> whose later head is (<paramref name="layer"/>, <paramref name="head"/>):
    /// how much each head of the layers before it can write into its queries, keys and values, in layer-then-head
    /// order — the weights' side of path patching into that head, for one head's cost instead of every pair's.
    /// </summary>
    public static List<Composition> CompositionsInto(Transformer model, int layer, int head)
    {
        var receiver = HeadCircuit.Of(model, layer, head);
        var result = new List<Composition>();
        for (int l1 = 0; l1 < layer; l1++)
        {
            for (int h1 = 0; h1 < model.Config.Heads; h1++)
            {
                result.Add(Compose(l1, h1, HeadCircuit.Of(model, l1, h1), layer, head, receiver));
            }
        }

        return result;
    }

    /// <summary>
    /// The entries of <see cref="Compositions"/> whose earlier head is (<paramref name="layer"/>, <paramref name="head"/>):
    /// how much it can write into the queries, keys and values of every head of the layers after it, in layer-then-head
    /// order (the weights' side of path patching from that head).
    /// </summary>
    public static List<Composition> CompositionsFrom(Transformer model, int layer, int head)
    {
        var sender = HeadCircuit.Of(model, layer, head);
        var result = new List<Composition>();
        for (int l2 = layer + 1; l2 < model.Config.Layers; l2++)
        {
            for (int h2 = 0; h2 < model.Config.Heads; h2++)
            {
                result.Add(Compose(layer, head, sender, l2, h2, HeadCircuit.Of(model, l2, h2)));
            }
        }

        return result;
    }

    /// <summary>What two independent random matrices score on average: 1/√C (E‖AB‖²_F = ‖A‖²_F ‖B‖²_F / C).</summary>
    public static double RandomBaseline(ModelConfig config) => RandomBaseline(config.Channels);

    /// <summary><see cref="RandomBaseline(ModelConfig)"/> for a stream of <paramref name="channels"/> channels.</summary>
    public static double RandomBaseline(int channels) => 1 / Math.Sqrt(channels);

    /// <summary>
    /// The norm whose scale γ the circuits of block <paramref name="layer"/> fold in: the one that made the block's
    /// input. Before a pre-norm block (GPT-2, Llama) that is the block's own attention norm; before a post-norm block
    /// (BERT) the norm that ended the block before it (its MLP's, or its attention's where it has no MLP), or the
    /// embeddings' norm before the first. (A post-norm block's own attention norm comes after its heads have written.)
    /// </summary>
    public static HeadLens.Tensors.Tensor InputNorm(Transformer model, int layer)
    {
        if (model.Config.NormPlacement == NormPlacement.Pre)
        {
            return model.Parameters.Layer(layer).AttentionNorm;
        }

        if (layer == 0)
        {
            return model.Parameters.EmbeddingNorm!;
        }

        var previous = model.Parameters.Layer(layer - 1);
        return previous.MlpNorm ?? previous.AttentionNorm;
    }

    // A composition score: a product's norm over its factors' norms (0 where a head's circuit is zero).
    private static double Ratio(double value, double norm) => norm > 0 ? value / norm : 0;

    // A head's two circuits, the transposed W_QK and their norms: what its compositions are computed from.
    private sealed record HeadCircuit(LowRank QueryKey, LowRank QueryKeyTransposed, LowRank OutputValue, double QueryKeyNorm, double OutputValueNorm)
    {
        public static HeadCircuit Of(Transformer model, int layer, int head)
        {
            var qk = Circuits.QueryKey(model, layer, head);
            var ov = Circuits.OutputValue(model, layer, head);
            return new HeadCircuit(qk, qk.Transposed(), ov, qk.FrobeniusNorm(), ov.FrobeniusNorm());
        }
    }

    // The Q-, K- and V-composition of a later head (l2, h2) with an earlier one (l1, h1).
    private static Composition Compose(int l1, int h1, HeadCircuit source, int l2, int h2, HeadCircuit target)
    {
        double qkov = target.QueryKeyNorm * source.OutputValueNorm;
        return new Composition(l1, h1, l2, h2,
            Ratio(LowRank.ProductNorm(target.QueryKeyTransposed, source.OutputValue), qkov),
            Ratio(LowRank.ProductNorm(target.QueryKey, source.OutputValue), qkov),
            Ratio(LowRank.ProductNorm(target.OutputValue, source.OutputValue), target.OutputValueNorm * source.OutputValueNorm));
    }

    /// <summary>
    /// The [D, D] matrix M = W_V diag(γ) · W_Eᵀ · W_U diag(γ_f) · W_O whose eigenvalues are the nonzero eigenvalues of
    /// the head's full OV circuit W_U diag(γ_f) · W_O · W_V diag(γ) · W_Eᵀ [V, V] (token in → logits out). Why they
    /// agree: for any A [m, n] and B [n, m], AB and BA have the same nonzero eigenvalues (if ABx = λx with λ ≠ 0,
    /// then y = Bx ≠ 0 and BAy = λy); applied twice, A = W_U diag(γ_f) W_O and B = W_V diag(γ) W_Eᵀ. The [V, V]
    /// matrix has rank ≤ D, so nothing is lost, and D = 32..128 instead of V = 50257.
    /// <paramref name="embedUnembed"/> is W_Eᵀ W_U diag(γ_f) [C, C] from <see cref="EmbedUnembed"/> (shared by all heads).
    /// </summary>
    public static double[] OvEigenvalueMatrix(Transformer model, int layer, int head, double[] embedUnembed) =>
        OvMatrix(OutputValue(model, layer, head), model.Config, embedUnembed);

    private static double[] OvMatrix(LowRank ov, ModelConfig config, double[] embedUnembed)
    {
        int c = config.Channels, d = config.HeadDim;
        var right = new double[d * c];   // [D, C] = (W_V diag(γ)) · (W_Eᵀ W_U diag(γ_f))
        for (int p = 0; p < d; p++)
        {
            for (int k = 0; k < c; k++)
            {
                double v = ov.Right[p * c + k];
                for (int j = 0; j < c; j++)
                {
                    right[p * c + j] += v * embedUnembed[k * c + j];
                }
            }
        }

        var m = new double[d * d];       // [D, D] = right · W_O
        for (int p = 0; p < d; p++)
        {
            for (int k = 0; k < c; k++)
            {
                double r = right[p * c + k];
                for (int q = 0; q < d; q++)
                {
                    m[p * d + q] += r * ov.Left[k * d + q];
                }
            }
        }

        return m;
    }

    /// <summary>W_Eᵀ · W_U · diag(γ_f) [C, C]: token embedding in, unembedding (after the final norm's weight) out.</summary>
    public static double[] EmbedUnembed(Transformer model)
    {
        int c = model.Config.Channels;
        var product = EmbedTimesUnembed(model);
        var gamma = model.Parameters.FinalNorm.Span;
        var result = new double[c * c];
        for (int i = 0; i < c; i++)
        {
            for (int j = 0; j < c; j++)
            {
                result[i * c + j] = product[i * c + j] * (double)gamma[j];
            }
        }

        return result;
    }

    // W_Eᵀ · W_U [C, C] (without the final norm's weight).
    private static float[] EmbedTimesUnembed(Transformer model)
    {
        var config = model.Config;
        int c = config.Channels, v = config.VocabSize;
        var product = new float[c * c];
        var (embedding, unembedding) = (model.Parameters.TokenEmbedding, model.Parameters.OutputHead);
        if (embedding.Dense is { } e && unembedding.Dense is { } u)
        {
            // [C, C] = E [V, C]ᵀ · U [V, C]: one product over the vocabulary, with the fast Gemm.
            Gemm.Multiply(true, false, c, c, v, e.Span, c, u.Span, c, product, c, false);
        }
        else
        {
            // Tables kept quantized: the same sum over the vocabulary, 1024 rows of each decoded at a time (two fp32
            // copies of a 32000 × 2048 table would be half a gigabyte).
            const int rows = 1024;
            var eRows = new float[rows * c];
            var uRows = new float[rows * c];
            for (int start = 0; start < v; start += rows)
            {
                int count = Math.Min(rows, v - start);
                for (int r = 0; r < count; r++)
                {
                    embedding.Row(start + r, eRows.AsSpan(r * c, c));
                    unembedding.Row(start + r, uRows.AsSpan(r * c, c));
                }

                Gemm.Multiply(true, false, c, c, count, eRows, c, uRows, c, product, c, accumulate: start > 0);
            }
        }

        return product;
    }

    /// <summary>
    /// Copying score of every head [L, H] (see <see cref="HeadScores.Copying"/>) from the matrices of
    /// <see cref="OvEigenvalueMatrix"/>, built with the fast products: per layer W_V diag(γ) · (W_Eᵀ W_U diag(γ_f))
    /// [G·D, C] once for all heads, then per head that group's rows times its columns of W_O [D, D]. The per-head
    /// float64 loops of <see cref="OvEigenvalueMatrix"/> (the reference) cost D·C² each: minutes on a 2048-channel model.
    /// </summary>
    public static double[,] CopyingScores(Transformer model)
    {
        var config = model.Config;
        int c = config.Channels, d = config.HeadDim, groupRows = config.KvHeads * d, outputWidth = config.Heads * d;
        var embedUnembed = EmbedTimesUnembed(model);      // [C, C], then · diag(γ_f)
        var finalGamma = model.Parameters.FinalNorm.Span;
        for (int i = 0; i < c; i++)
        {
            TensorPrimitives.Multiply(embedUnembed.AsSpan(i * c, c), finalGamma, embedUnembed.AsSpan(i * c, c));
        }

        var scaledValue = new float[groupRows * c];     // [G·D, C] = W_V diag(γ)
        var valueThrough = new float[groupRows * c];    // [G·D, C] = W_V diag(γ) · W_Eᵀ W_U diag(γ_f)
        var headMatrices = new double[config.Heads][];   // [D, D] per head of the layer, in float64 for the eigenvalues
        var headMatrix = new float[d * d];
        var scores = new double[config.Layers, config.Heads];
        for (int l = 0; l < config.Layers; l++)
        {
            var w = model.Parameters.Layer(l);
            var value = w.Value.ToFloat32();
            var output = w.Output.ToFloat32();
            var gamma = InputNorm(model, l).Span;
            for (int row = 0; row < groupRows; row++)
            {
                TensorPrimitives.Multiply(value.Slice(row * c, c), gamma, scaledValue.AsSpan(row * c, c));
            }

            Gemm.Multiply(false, false, groupRows, c, c, scaledValue, c, embedUnembed, c, valueThrough, c, accumulate: false);
            for (int h = 0; h < config.Heads; h++)
            {
                int g = h / (config.Heads / config.KvHeads);
                // [D, D] = valueThrough[g·D .. g·D + D, :] · W_O[:, h·D .. h·D + D]
                Gemm.Multiply(false, false, d, d, c, valueThrough.AsSpan(g * d * c), c, output[(h * d)..], outputWidth, headMatrix, d, accumulate: false);
                headMatrices[h] = [.. headMatrix.Select(value => (double)value)];
            }

            // The eigenvalues (D³ each, about half of this function's time on GPT-2) one head per compute thread.
            int layer = l;
            ComputeThreads.Run(config.Heads, h => scores[layer, h] = HeadScores.Copying(headMatrices[h], d));
        }

        return scores;
    }
}
