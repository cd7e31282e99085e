namespace HeadLens.Kernels;

// The linear layer and its three backward products (the products of training):
//   forward:  y[M,N]  = x[M,K] · W[N,K]ᵀ + b[N]
//   backward: dx[M,K] = dy[M,N] · W[N,K]        (activation gradient: overwritten)
//             dW[N,K] += dy[M,N]ᵀ · x[M,K]      (parameter gradient: accumulated)
//             db[N]   += Σ_m dy[m,:]            (parameter gradient: accumulated)
// M = rows (tokens), N = output features, K = input features. W is stored [out, in] as in PyTorch's nn.Linear.
// Implementations: Reference (Gemm.Reference) and Forward/Backward (Gemm.Multiply, the fast path); for a few rows
// (decoding one token at a time) Forward runs as matrix–vector dot products over W's rows instead, because packing
// W for the blocked product would cost more than the product itself; one row (a decode step) goes to Gemv.
public static class MatMul
{
    // Up to this many rows, y = x·Wᵀ is computed as dot products: each row of W is read once for all rows of x.
    internal const int MatrixVectorRows = 4;

    public static void Forward(
        ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int m, int n, int k, Span<float> y)
    {
        if (m == 1 && k > 0)
        {
            Gemv.Forward(weight, x, n, k, y);
        }
        else if (m <= MatrixVectorRows && k > 0)
        {
            MatrixVector(x, weight, m, n, k, y);
        }
        else
        {
            Gemm.Multiply(false, true, m, n, k, x, k, weight, k, y, n, accumulate: false);
        }

        AddBias(bias, m, n, y);
    }

    /// <summary>The forward product with W packed once by Gemm.Pack (inference): y[M,N] = x[M,K] · Wᵀ + b.</summary>
    public static void Forward(ReadOnlySpan<float> x, PackedWeights weight, ReadOnlySpan<float> bias, int m, Span<float> y)
    {
        int n = weight.Rows, k = weight.Columns;
        if (m <= MatrixVectorRows)
        {
            // Dot products over W's rows read it once, packed or not; the panels would only add a copy's traffic.
            Forward(x, weight.Source.Span, bias, m, n, k, y);
            return;
        }

        Gemm.MultiplyPacked(m, x, k, weight, y, n, accumulate: false);
        AddBias(bias, m, n, y);
    }

    // y[i, j] = x[i, :]·W[j, :] for a few rows i; output features split between the cores when W is large
    // (decoding streams every weight once per token: memory-bound, so both cores' bandwidth helps).
    private static unsafe void MatrixVector(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int m, int n, int k, Span<float> y)
    {
        if (weight.Length < (long)n * k || x.Length < (long)m * k || y.Length < (long)m * n)
        {
            throw new ArgumentException($"matmul: buffers too small for [{m}, {k}]·[{n}, {k}]ᵀ");
        }

        fixed (float* xp = x, wp = weight, yp = y)
        {
            nint xa = (nint)xp, wa = (nint)wp, ya = (nint)yp;
            void Columns(int first, int end)
            {
                for (int j = first; j < end; j++)
                {
                    var row = new ReadOnlySpan<float>((float*)wa + (long)j * k, k);
                    for (int i = 0; i < m; i++)
                    {
                        ((float*)ya)[(long)i * n + j] = System.Numerics.Tensors.TensorPrimitives.Dot(new ReadOnlySpan<float>((float*)xa + (long)i * k, k), row);
                    }
                }
            }

            if ((long)n * k < 1 << 18)
            {
                Columns(0, n);
                return;
            }

            // Chunks of 256 output features, handed out dynamically: a core that is interrupted takes fewer.
            const int chunk = 256;
            ComputeThreads.Run((n + chunk - 1) / chunk, c => Columns(c * chunk, Math.Min(n, (c + 1) * chunk)));
        }
    }

    /// <summary>
    /// Backward of the unpacked forward; pass an empty span to skip a gradient. <paramref name="accumulateWeightGrad"/>
    /// false overwrites dW instead of adding to it (the first backward after the gradients were zeroed: no read of the
    /// old gradient, and no pass to zero it). <paramref name="accumulateInputGrad"/> adds dy·W to dx instead of
    /// overwriting it: for an input that feeds several products (x into Q, K and V), the product adds its share
    /// itself, with no separate buffer and addition pass.
    /// </summary>
    public static void Backward(
        ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int m, int n, int k,
        Span<float> xGrad, Span<float> weightGrad, Span<float> biasGrad, bool accumulateWeightGrad = true,
        bool accumulateInputGrad = false)
    {
        if (!xGrad.IsEmpty)
        {
            if (SplitsDepth(m, n, k))
            {
                InputGradInHalves(yGrad, weight, m, n, k, xGrad, accumulateInputGrad);
            }
            else
            {
                Gemm.Multiply(false, false, m, k, n, yGrad, n, weight, k, xGrad, k, accumulate: accumulateInputGrad);
            }
        }

        if (!weightGrad.IsEmpty)
        {
            Gemm.Multiply(true, false, n, k, m, yGrad, n, x, k, weightGrad, k, accumulate: accumulateWeightGrad);
        }

        BiasBackward(yGrad, m, n, biasGrad);
    }

    // dx[M,K] = dy[M,N]·W[N,K] with a long depth N and a small output (the vocabulary head: N = 50257 against
    // M·K = 256·768). The product split between the cores by output columns (or rows) makes every core pack all of
    // dy (or all of W) for its share: at B·T = 256 that is dy's 12.9M floats transposed twice, at 1024 all of W's
    // 38.6M copied twice. Split by depth instead, each core packs only its half of both and computes a whole
    // partial dx; the second half's partial is added at the end (M·K floats, small beside the packing saved).
    internal static bool SplitsDepth(int m, int n, int k) =>
        n >= 8 * ((long)m + k) && (long)m * n * k >= 1L << 24;

    // The second half's partial dx, kept by the calling thread (the helper core writes it while the caller waits).
    [ThreadStatic]
    private static float[]? secondPartial;

    // Always the same two halves, whatever the thread count, so that dx does not depend on it: the halves run side
    // by side on two cores (one thread each, which by itself gives the same sums as the product on any count), or
    // one after the other.
    private static unsafe void InputGradInHalves(ReadOnlySpan<float> yGrad, ReadOnlySpan<float> weight, int m, int n, int k, Span<float> xGrad,
        bool accumulate)
    {
        if (yGrad.Length < (long)m * n || weight.Length < (long)n * k || xGrad.Length < (long)m * k)
        {
            throw new ArgumentException($"matmul: buffers too small for [{m}, {n}]·[{n}, {k}]");
        }

        int half = n / 2;
        int size = m * k;
        var second = secondPartial is { } cached && cached.Length >= size ? cached : (secondPartial = GC.AllocateUninitializedArray<float>(size, pinned: true));
        fixed (float* dy = yGrad, w = weight, dx = xGrad, rest = second)
        {
            nint dyAddress = (nint)dy, wAddress = (nint)w, dxAddress = (nint)dx, restAddress = (nint)rest;
            void Half(int part, int threads)
            {
                int first = part == 0 ? 0 : half, depth = part == 0 ? half : n - half;
                var a = new ReadOnlySpan<float>((float*)dyAddress + first, ((m - 1) * n) + depth);
                var b = new ReadOnlySpan<float>((float*)wAddress + ((long)first * k), depth * k);
                var c = new Span<float>(part == 0 ? (float*)dxAddress : (float*)restAddress, size);
                Gemm.Multiply(false, false, m, k, depth, a, n, b, k, c, k, accumulate: accumulate && part == 0, threads);
            }

            if (ComputeThreads.Count == 2)
            {
                ComputeThreads.Run(2, part => Half(part, 1));
            }
            else
            {
                Half(0, 0);
                Half(1, 0);
            }

            System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<float>(dx, size), new ReadOnlySpan<float>(rest, size), new Span<float>(dx, size));
        }
    }

    public static void ForwardReference(
        ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, int m, int n, int k, Span<float> y)
    {
        Gemm.Reference(false, true, m, n, k, x, k, weight, k, y, n, accumulate: false);
        AddBias(bias, m, n, y);
    }

    public static void BackwardReference(
        ReadOnlySpan<float> yGrad, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, int m, int n, int k,
        Span<float> xGrad, Span<float> weightGrad, Span<float> biasGrad)
    {
        if (!xGrad.IsEmpty)
        {
            Gemm.Reference(false, false, m, k, n, yGrad, n, weight, k, xGrad, k, accumulate: false);
        }

        if (!weightGrad.IsEmpty)
        {
            Gemm.Reference(true, false, n, k, m, yGrad, n, x, k, weightGrad, k, accumulate: true);
        }

        BiasBackward(yGrad, m, n, biasGrad);
    }

    internal static void AddBias(ReadOnlySpan<float> bias, int m, int n, Span<float> y)
    {
        if (bias.IsEmpty)
        {
            return;
        }

        for (int row = 0; row < m; row++)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(y.Slice(row * n, n), bias[..n], y.Slice(row * n, n));
        }
    }

    private static void BiasBackward(ReadOnlySpan<float> yGrad, int m, int n, Span<float> biasGrad)
    {
        if (biasGrad.IsEmpty)
        {
            return;
        }

        for (int row = 0; row < m; row++)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(biasGrad[..n], yGrad.Slice(row * n, n), biasGrad[..n]);
        }
    }
}
