using System.Numerics.Tensors;
using HeadLens.Kernels;
using HeadLens.Model;

namespace HeadLens.Analysis;

/// <summary>Q-, K- and V-composition of a later head (layer, head) with an earlier one (sourceLayer, sourceHead).</summary>
public sealed record Composition(int SourceLayer, int SourceHead, int Layer, int Head, double Query, double Key, double Value);

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
    public LowRank Transposed() => new(Transpose(Right, Rank, Channels), Transpose(Left, Channels, Rank), Channels, Rank);

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
    private double[]? leftGram, rightGram;

    private double[] LeftGram => leftGram ??= Gram(Left, Channels, Rank, columns: true);

    private double[] RightGram => rightGram ??= Gram(Right, Rank, Channels, columns: false);

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

    // LᵀL [D, D] for L [rows, D] (columns = true), or R Rᵀ [D, D] for R [D, cols].
    private static double[] Gram(double[] x, int rows, int cols, bool columns)
    {
        int size = columns ? cols : rows;
        var gram = new double[size * size];
        if (columns)
        {
            // Σ_p L_pᵀ L_p: each row of L added, scaled, into every row of the Gram matrix.
            for (int p = 0; p < rows; p++)
            {
                var row = x.AsSpan(p * cols, cols);
                for (int i = 0; i < size; i++)
                {
                    var target = gram.AsSpan(i * size, size);
                    TensorPrimitives.MultiplyAdd(row, row[i], target, target);
                }
            }
        }
        else
        {
            for (int i = 0; i < size; i++)
            {
                for (int j = 0; j < size; j++)
                {
                    gram[i * size + j] = TensorPrimitives.Dot<double>(x.AsSpan(i * cols, cols), x.AsSpan(j * cols, cols));
                }
            }
        }

        return gram;
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
        var (config, w) = (model.Config, model.Parameters.Layer(layer));
        int c = config.Channels, d = config.HeadDim, g = head / (config.Heads / config.KvHeads);
        var gamma = w.AttentionNorm.Span;
        var query = w.Query.ToFloat32();
        var key = w.Key.ToFloat32();
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
        var (config, w) = (model.Config, model.Parameters.Layer(layer));
        int c = config.Channels, d = config.HeadDim, g = head / (config.Heads / config.KvHeads);
        var gamma = w.AttentionNorm.Span;
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
    /// 1/√C (<see cref="RandomBaseline"/>; Elhage et al. subtract such a baseline, here it is left to the reader).
    /// </summary>
    public static List<Composition> Compositions(Transformer model)
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
    public static double RandomBaseline(ModelConfig config) => 1 / Math.Sqrt(config.Channels);

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
        static double Ratio(double value, double norm) => norm > 0 ? value / norm : 0;
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
            var gamma = w.AttentionNorm.Span;
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
