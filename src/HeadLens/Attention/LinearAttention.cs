using System.Numerics.Tensors;

namespace HeadLens.Attention;

// Causal linear attention (Katharopoulos et al. 2020) with feature map φ(x) = elu(x) + 1 (positive, so the
// normaliser never vanishes). Per head, over tokens i:
//   out_i = φ(q_i)ᵀ·S_i / (φ(q_i)·z_i),   S_i = Σ_{j≤i} φ(k_j)·v_jᵀ  [D, Dv],   z_i = Σ_{j≤i} φ(k_j)  [D]
// It is a different function from softmax attention (the kernel φ(q)·φ(k) replaces exp(q·k)), so it has its own
// reference: the quadratic form out_i = Σ_{j≤i} a_ij·v_j / Σ_{j≤i} a_ij with a_ij = φ(q_i)·φ(k_j).
// Backward (from the quadratic form, with n_i = Σ_j a_ij):
//   dv_j = Σ_{i≥j} (a_ij/n_i)·dout_i;  da_ij = dout_i·(v_j − out_i)/n_i;
//   dφq_i = Σ_j da_ij·φ(k_j);  dφk_j = Σ_i da_ij·φ(q_i);  dx = dφx·φ'(x), φ'(x) = 1 for x > 0, eˣ otherwise.
// Layouts: q, k [T, H, D], v and out [T, H, Dv] (no GQA). Implementations: ForwardReference (quadratic),
// Forward (prefix-sum form: O(T·D·Dv) time and O(D·Dv) state per head), Backward (quadratic; T ≤ a few thousand).
public static class LinearAttention
{
    public static void ForwardReference(int heads, int dqk, int dv, int tokens, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output)
    {
        var phiQ = FeatureMap(q);
        var phiK = FeatureMap(k);
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < tokens; i++)
            {
                var o = output.Slice((i * heads + h) * dv, dv);
                o.Clear();
                float normaliser = 0f;
                for (int j = 0; j <= i; j++)
                {
                    float a = Dot(phiQ.AsSpan((i * heads + h) * dqk, dqk), phiK.AsSpan((j * heads + h) * dqk, dqk));
                    normaliser += a;
                    var vj = v.Slice((j * heads + h) * dv, dv);
                    for (int d = 0; d < dv; d++)
                    {
                        o[d] += a * vj[d];
                    }
                }

                for (int d = 0; d < dv; d++)
                {
                    o[d] /= normaliser;
                }
            }
        }
    }

    public static void Forward(int heads, int dqk, int dv, int tokens, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, Span<float> output)
    {
        Span<float> phiQ = stackalloc float[dqk];
        Span<float> phiK = stackalloc float[dqk];
        var state = new float[dqk * dv]; // S [D, Dv]
        var normaliser = new float[dqk]; // z [D]
        for (int h = 0; h < heads; h++)
        {
            Array.Clear(state);
            Array.Clear(normaliser);
            for (int i = 0; i < tokens; i++)
            {
                FeatureMap(k.Slice((i * heads + h) * dqk, dqk), phiK);
                FeatureMap(q.Slice((i * heads + h) * dqk, dqk), phiQ);
                var vi = v.Slice((i * heads + h) * dv, dv);
                // S += φ(k_i)·v_iᵀ;  z += φ(k_i)
                for (int d = 0; d < dqk; d++)
                {
                    var row = state.AsSpan(d * dv, dv);
                    TensorPrimitives.MultiplyAdd(vi, phiK[d], row, row);
                }

                TensorPrimitives.Add(normaliser, phiK, normaliser);
                // out_i = φ(q_i)ᵀ·S / φ(q_i)·z
                var o = output.Slice((i * heads + h) * dv, dv);
                o.Clear();
                for (int d = 0; d < dqk; d++)
                {
                    TensorPrimitives.MultiplyAdd(state.AsSpan(d * dv, dv), phiQ[d], o, o);
                }

                TensorPrimitives.Multiply(o, 1f / TensorPrimitives.Dot(phiQ, normaliser), o);
            }
        }
    }

    public static void Backward(
        int heads, int dqk, int dv, int tokens, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> outputGrad, Span<float> qGrad, Span<float> kGrad, Span<float> vGrad)
    {
        var phiQ = FeatureMap(q);
        var phiK = FeatureMap(k);
        var output = new float[tokens * heads * dv];
        ForwardReference(heads, dqk, dv, tokens, q, k, v, output);
        qGrad[..(tokens * heads * dqk)].Clear();
        kGrad[..(tokens * heads * dqk)].Clear();
        vGrad[..(tokens * heads * dv)].Clear();
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < tokens; i++)
            {
                var pq = phiQ.AsSpan((i * heads + h) * dqk, dqk);
                var dOut = outputGrad.Slice((i * heads + h) * dv, dv);
                var oi = output.AsSpan((i * heads + h) * dv, dv);
                float n = 0f;
                for (int j = 0; j <= i; j++)
                {
                    n += Dot(pq, phiK.AsSpan((j * heads + h) * dqk, dqk));
                }

                float dOutDotOut = Dot(dOut, oi);
                for (int j = 0; j <= i; j++)
                {
                    var pk = phiK.AsSpan((j * heads + h) * dqk, dqk);
                    float a = Dot(pq, pk);
                    var dvj = vGrad.Slice((j * heads + h) * dv, dv);
                    for (int d = 0; d < dv; d++)
                    {
                        dvj[d] += a / n * dOut[d];
                    }

                    float da = (Dot(dOut, v.Slice((j * heads + h) * dv, dv)) - dOutDotOut) / n;
                    var dq = qGrad.Slice((i * heads + h) * dqk, dqk);
                    var dk = kGrad.Slice((j * heads + h) * dqk, dqk);
                    for (int d = 0; d < dqk; d++)
                    {
                        dq[d] += da * pk[d];
                        dk[d] += da * pq[d];
                    }
                }
            }
        }

        // Chain through φ: dx = dφ·φ'(x).
        ApplyFeatureSlope(q, qGrad);
        ApplyFeatureSlope(k, kGrad);
    }

    private static float[] FeatureMap(ReadOnlySpan<float> x)
    {
        var result = new float[x.Length];
        FeatureMap(x, result);
        return result;
    }

    // φ(x) = elu(x) + 1 = x + 1 for x > 0, eˣ otherwise.
    private static void FeatureMap(ReadOnlySpan<float> x, Span<float> result)
    {
        for (int i = 0; i < x.Length; i++)
        {
            result[i] = x[i] > 0 ? x[i] + 1f : MathF.Exp(x[i]);
        }
    }

    private static void ApplyFeatureSlope(ReadOnlySpan<float> x, Span<float> grad)
    {
        for (int i = 0; i < x.Length; i++)
        {
            grad[i] *= x[i] > 0 ? 1f : MathF.Exp(x[i]);
        }
    }

    private static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float sum = 0f;
        for (int d = 0; d < a.Length; d++)
        {
            sum += a[d] * b[d];
        }

        return sum;
    }
}
