using System.Buffers;
using System.Numerics.Tensors;

namespace HeadLens.Kernels;

// Next-token cross-entropy fused with softmax, over logits [rows, V] and targets [rows] (−1 = ignored row):
//   loss_r = log Σ_j exp(x_rj) − x_r,t  = (m_r + log Σ_j exp(x_rj − m_r)) − x_r,t   with m_r = max_j x_rj
//   mean loss = Σ_r loss_r / count,  count = number of rows whose target is not −1
//   d(mean loss)/dx_rj = (softmax(x_r)_j − [j = t]) / count      (0 for ignored rows; overwritten)
// The softmax is never stored: ForwardBackward writes the gradient directly, which is what training needs.
// Sums over the vocabulary are accumulated in float (as PyTorch does); the mean over rows in double.
// Implementations: ForwardReference (scalar), Forward/ForwardBackward (TensorPrimitives, rows in parallel when
// the logits are large, e.g. 256 × 50257 in a GPT-2 step).
public static class CrossEntropy
{
    private const long ParallelThreshold = 1 << 18;

    public static float ForwardReference(
        ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int rows, int vocab, Span<float> losses)
    {
        double total = 0;
        int count = 0;
        for (int r = 0; r < rows; r++)
        {
            int target = CheckTarget(targets[r], vocab, r);
            if (target < 0)
            {
                losses[r] = 0f;
                continue;
            }

            var x = logits.Slice(r * vocab, vocab);
            float max = float.NegativeInfinity;
            for (int j = 0; j < vocab; j++)
            {
                max = Math.Max(max, x[j]);
            }

            float sum = 0f;
            for (int j = 0; j < vocab; j++)
            {
                sum += MathF.Exp(x[j] - max);
            }

            losses[r] = max + MathF.Log(sum) - x[target];
            total += losses[r];
            count++;
        }

        return count == 0 ? 0f : (float)(total / count);
    }

    /// <summary>The gradient of <see cref="ForwardReference"/>'s mean loss, written as plainly as possible.</summary>
    public static float ForwardBackwardReference(
        ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int rows, int vocab, Span<float> losses, Span<float> logitsGrad)
    {
        float mean = ForwardReference(logits, targets, rows, vocab, losses);
        int count = CountTargets(targets, rows);
        for (int r = 0; r < rows; r++)
        {
            var dx = logitsGrad.Slice(r * vocab, vocab);
            if (targets[r] < 0)
            {
                dx.Clear();
                continue;
            }

            Softmax.ForwardReference(logits.Slice(r * vocab, vocab), 1, vocab, dx);
            dx[targets[r]] -= 1f;
            for (int j = 0; j < vocab; j++)
            {
                dx[j] /= count;
            }
        }

        return mean;
    }

    public static float Forward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int rows, int vocab, Span<float> losses) =>
        Run(logits, targets, rows, vocab, losses, []);

    public static float ForwardBackward(
        ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int rows, int vocab, Span<float> losses, Span<float> logitsGrad)
    {
        if (logitsGrad.Length < (long)rows * vocab)
        {
            throw new ArgumentException("cross-entropy: logitsGrad is smaller than the logits");
        }

        return Run(logits, targets, rows, vocab, losses, logitsGrad);
    }

    private static unsafe float Run(
        ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int rows, int vocab, Span<float> losses, Span<float> logitsGrad)
    {
        for (int r = 0; r < rows; r++)
        {
            CheckTarget(targets[r], vocab, r);
        }

        int count = CountTargets(targets, rows);
        bool withGrad = !logitsGrad.IsEmpty;
        fixed (float* x = logits)
        fixed (int* t = targets)
        fixed (float* l = losses)
        fixed (float* g = logitsGrad)
        {
            var job = new RowJob(x, t, l, g, vocab, count, withGrad);
            if ((long)rows * vocab >= ParallelThreshold)
            {
                ComputeThreads.Run(rows, job.Row);
            }
            else
            {
                for (int r = 0; r < rows; r++)
                {
                    job.Row(r);
                }
            }
        }

        double total = 0;
        for (int r = 0; r < rows; r++)
        {
            total += losses[r];
        }

        return count == 0 ? 0f : (float)(total / count);
    }

    private sealed unsafe class RowJob(float* logits, int* targets, float* losses, float* grads, int vocab, int count, bool withGrad)
    {
        public void Row(int r)
        {
            int target = targets[r];
            if (target < 0)
            {
                losses[r] = 0f;
                if (withGrad)
                {
                    new Span<float>(grads + (long)r * vocab, vocab).Clear();
                }

                return;
            }

            var x = new ReadOnlySpan<float>(logits + (long)r * vocab, vocab);
            float[]? rented = withGrad ? null : ArrayPool<float>.Shared.Rent(vocab);
            try
            {
                // e = exp(x − max), kept in the gradient row (or a scratch row) so the sum and softmax share it.
                var e = withGrad ? new Span<float>(grads + (long)r * vocab, vocab) : rented.AsSpan(0, vocab);
                float max = TensorPrimitives.Max(x);
                TensorPrimitives.Subtract(x, max, e);
                TensorPrimitives.Exp(e, e);
                float sum = TensorPrimitives.Sum(e);
                losses[r] = max + MathF.Log(sum) - x[target];
                if (withGrad)
                {
                    float scale = 1f / (sum * count);
                    TensorPrimitives.Multiply(e, scale, e);
                    e[target] -= 1f / count;
                }
            }
            finally
            {
                if (rented is not null)
                {
                    ArrayPool<float>.Shared.Return(rented);
                }
            }
        }
    }

    private static int CountTargets(ReadOnlySpan<int> targets, int rows)
    {
        int count = 0;
        for (int r = 0; r < rows; r++)
        {
            count += targets[r] >= 0 ? 1 : 0;
        }

        return count;
    }

    private static int CheckTarget(int target, int vocab, int row) =>
        target >= -1 && target < vocab
            ? target
            : throw new HeadLensException($"target token id {target} at row {row} is outside the vocabulary [0, {vocab})");
}
