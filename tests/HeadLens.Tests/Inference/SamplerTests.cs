using HeadLens.Inference;

namespace HeadLens.Tests.Inference;

public class SamplerTests
{
    private static readonly float[] Logits = [1f, 3f, 2f, 0.5f, 2.5f, -1f];

    [Fact]
    public void TopKKeepsExactlyK()
    {
        var candidates = new Sampler(new SamplingSettings { Temperature = 1f, TopK = 3 }).Candidates(Logits);
        Assert.Equal([1, 4, 2], candidates.Select(c => c.Id));
        Assert.Equal(1.0, candidates.Sum(c => c.Probability), 9);
    }

    [Fact]
    public void TopPKeepsTheSmallestSetReachingP()
    {
        double[] p = Logits.Select(l => Math.Exp(l)).ToArray();
        double total = p.Sum();
        var sorted = p.Select((value, id) => (id, value / total)).OrderByDescending(x => x.Item2).ToList();
        var candidates = new Sampler(new SamplingSettings { Temperature = 1f, TopP = 0.7f }).Candidates(Logits);
        double keptMass = sorted.Take(candidates.Count).Sum(x => x.Item2);
        double lessMass = sorted.Take(candidates.Count - 1).Sum(x => x.Item2);
        Assert.True(keptMass >= 0.7 && lessMass < 0.7, $"kept {candidates.Count} with mass {keptMass}");
    }

    [Fact]
    public void ZeroTemperatureIsGreedyAndSeedsReproduce()
    {
        Assert.Equal(1, new Sampler(new SamplingSettings { Temperature = 0f }).Next(Logits));
        var a = new Sampler(new SamplingSettings { Temperature = 1f, Seed = 5 });
        var b = new Sampler(new SamplingSettings { Temperature = 1f, Seed = 5 });
        var draws = Enumerable.Range(0, 50).Select(_ => a.Next(Logits)).ToList();
        Assert.Equal(draws, Enumerable.Range(0, 50).Select(_ => b.Next(Logits)));
        Assert.True(draws.Distinct().Count() > 1, "temperature 1 should not always pick the same token");
    }

    [Fact]
    public void VeryLowTemperatureConvergesToGreedy()
    {
        var sampler = new Sampler(new SamplingSettings { Temperature = 1e-3f, Seed = 1 });
        Assert.All(Enumerable.Range(0, 20), _ => Assert.Equal(1, sampler.Next(Logits)));
    }
}
