using System.Runtime.Intrinsics;

namespace HeadLens.Kernels;

/// <summary>AdamW hyper-parameters (PyTorch's torch.optim.AdamW defaults except the learning rate).</summary>
public sealed record AdamWSettings(
    float LearningRate, float Beta1 = 0.9f, float Beta2 = 0.999f, float Epsilon = 1e-8f, float WeightDecay = 0.01f);

// AdamW (Loshchilov & Hutter), in the operation order of torch.optim.AdamW (single-tensor path), at step t ≥ 1:
//   p ← p·(1 − lr·λ)                          decoupled weight decay
//   m ← β1·m + (1 − β1)·g                     first moment
//   v ← β2·v + (1 − β2)·g²                    second moment
//   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε)
// Implementations: StepReference (scalar), Step (Vector512 / Vector256 / scalar, chunks in parallel for large
// tensors such as GPT-2's 124M parameters).
// At t = 1 the moments are zero (the bias corrections assume it), and Step writes them without reading them. Reading
// first made the first update of a fresh model the slowest step by far: a read of never-written memory maps the
// kernel's shared zero page, and the write after it must copy that page and shoot down the other cores' TLB entries.
// GPT-2 124M's first AdamW update took 2.7-3.3 s that way and takes 0.39-0.43 s now, with half the page faults (2
// vCPUs under KVM; the later updates take 0.05-0.09 s).
public static class AdamW
{
    private const int ParallelChunk = 1 << 16;

    public static void StepReference(
        Span<float> parameters, ReadOnlySpan<float> gradients, Span<float> firstMoment, Span<float> secondMoment,
        AdamWSettings settings, int step)
    {
        var c = Coefficients.For(settings, step);
        for (int i = 0; i < parameters.Length; i++)
        {
            float g = gradients[i];
            float p = parameters[i] * c.Decay;
            float m = settings.Beta1 * firstMoment[i] + (1f - settings.Beta1) * g;
            float v = settings.Beta2 * secondMoment[i] + (1f - settings.Beta2) * g * g;
            float denominator = MathF.Sqrt(v) / c.SqrtCorrection2 + settings.Epsilon;
            parameters[i] = p - c.StepSize * m / denominator;
            firstMoment[i] = m;
            secondMoment[i] = v;
        }
    }

    /// <summary>
    /// One update of every parameter at step <paramref name="step"/> (from 1). At step 1 the moments are taken as zero,
    /// whatever the buffers hold, and only written (see the comment above the class).
    /// </summary>
    public static unsafe void Step(
        Span<float> parameters, ReadOnlySpan<float> gradients, Span<float> firstMoment, Span<float> secondMoment,
        AdamWSettings settings, int step)
    {
        int n = parameters.Length;
        if (gradients.Length < n || firstMoment.Length < n || secondMoment.Length < n)
        {
            throw new ArgumentException("AdamW: gradients and moments must be as long as the parameters");
        }

        var c = Coefficients.For(settings, step);
        fixed (float* p = parameters)
        fixed (float* g = gradients)
        fixed (float* m = firstMoment)
        fixed (float* v = secondMoment)
        {
            var job = new Job(p, g, m, v, n, settings, c, MomentsAreZero: step == 1);
            int chunks = (n + ParallelChunk - 1) / ParallelChunk;
            if (chunks > 1)
            {
                ComputeThreads.Run(chunks, job.Chunk);
            }
            else if (n > 0)
            {
                job.Chunk(0);
            }
        }
    }

    private readonly record struct Coefficients(float Decay, float StepSize, float SqrtCorrection2)
    {
        public static Coefficients For(AdamWSettings s, int step)
        {
            if (step < 1)
            {
                throw new ArgumentOutOfRangeException(nameof(step), "AdamW steps count from 1");
            }

            // Bias corrections in double: β2ᵗ for large t is below float's resolution of 1 − β2ᵗ otherwise.
            double correction1 = 1 - Math.Pow(s.Beta1, step);
            double correction2 = 1 - Math.Pow(s.Beta2, step);
            return new Coefficients(
                1f - s.LearningRate * s.WeightDecay,
                (float)(s.LearningRate / correction1),
                (float)Math.Sqrt(correction2));
        }
    }

    private sealed unsafe class Job(float* p, float* g, float* m, float* v, int n, AdamWSettings s, Coefficients c, bool MomentsAreZero)
    {
        public void Chunk(int chunk)
        {
            int start = chunk * ParallelChunk;
            int end = Math.Min(n, start + ParallelChunk);
            int i = start;
            if (Vector512.IsHardwareAccelerated)
            {
                var decay = Vector512.Create(c.Decay);
                var beta1 = Vector512.Create(s.Beta1);
                var oneMinusBeta1 = Vector512.Create(1f - s.Beta1);
                var beta2 = Vector512.Create(s.Beta2);
                var oneMinusBeta2 = Vector512.Create(1f - s.Beta2);
                var correction = Vector512.Create(c.SqrtCorrection2);
                var epsilon = Vector512.Create(s.Epsilon);
                var stepSize = Vector512.Create(c.StepSize);
                for (; i + 16 <= end; i += 16)
                {
                    var gi = Vector512.Load(g + i);
                    var pi = Vector512.Load(p + i) * decay;
                    var mi = beta1 * (MomentsAreZero ? Vector512<float>.Zero : Vector512.Load(m + i)) + oneMinusBeta1 * gi;
                    var vi = beta2 * (MomentsAreZero ? Vector512<float>.Zero : Vector512.Load(v + i)) + oneMinusBeta2 * gi * gi;
                    var denominator = Vector512.Sqrt(vi) / correction + epsilon;
                    Vector512.Store(pi - stepSize * mi / denominator, p + i);
                    Vector512.Store(mi, m + i);
                    Vector512.Store(vi, v + i);
                }
            }
            else if (Vector256.IsHardwareAccelerated)
            {
                var decay = Vector256.Create(c.Decay);
                var beta1 = Vector256.Create(s.Beta1);
                var oneMinusBeta1 = Vector256.Create(1f - s.Beta1);
                var beta2 = Vector256.Create(s.Beta2);
                var oneMinusBeta2 = Vector256.Create(1f - s.Beta2);
                var correction = Vector256.Create(c.SqrtCorrection2);
                var epsilon = Vector256.Create(s.Epsilon);
                var stepSize = Vector256.Create(c.StepSize);
                for (; i + 8 <= end; i += 8)
                {
                    var gi = Vector256.Load(g + i);
                    var pi = Vector256.Load(p + i) * decay;
                    var mi = beta1 * (MomentsAreZero ? Vector256<float>.Zero : Vector256.Load(m + i)) + oneMinusBeta1 * gi;
                    var vi = beta2 * (MomentsAreZero ? Vector256<float>.Zero : Vector256.Load(v + i)) + oneMinusBeta2 * gi * gi;
                    var denominator = Vector256.Sqrt(vi) / correction + epsilon;
                    Vector256.Store(pi - stepSize * mi / denominator, p + i);
                    Vector256.Store(mi, m + i);
                    Vector256.Store(vi, v + i);
                }
            }

            for (; i < end; i++)
            {
                float gi = g[i];
                float pi = p[i] * c.Decay;
                float mi = s.Beta1 * (MomentsAreZero ? 0f : m[i]) + (1f - s.Beta1) * gi;
                float vi = s.Beta2 * (MomentsAreZero ? 0f : v[i]) + (1f - s.Beta2) * gi * gi;
                p[i] = pi - c.StepSize * mi / (MathF.Sqrt(vi) / c.SqrtCorrection2 + s.Epsilon);
                m[i] = mi;
                v[i] = vi;
            }
        }
    }
}
