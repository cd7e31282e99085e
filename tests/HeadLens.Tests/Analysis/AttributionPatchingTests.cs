using System.Text.Json;
using HeadLens.Analysis;
using HeadLens.Checkpoints;

namespace HeadLens.Tests.Analysis;

/// <summary>Attribution patching: every head's and stream position's first-order estimate from one backward pass.</summary>
public class AttributionPatchingTests
{
    private static readonly string Fixtures = Path.Combine(AppContext.BaseDirectory, "Fixtures");

    private static readonly Lazy<List<JsonElement>> Golden = new(() =>
        [.. JsonDocument.Parse(File.ReadAllText(Path.Combine(Fixtures, "attribution-patching", "golden.json"))).RootElement.EnumerateArray()]);

    private static int[] Ids(JsonElement element) => [.. element.EnumerateArray().Select(value => value.GetInt32())];

    public static TheoryData<string, string, string> GoldenCases()
    {
        var cases = new TheoryData<string, string, string>();
        foreach (string model in new[] { "tiny-gpt2", "tiny-llama-gqa" })
        {
            foreach (string metric in new[] { "logit_difference", "log_probability" })
            {
                foreach (string site in new[] { "heads", "head_positions", "stream", "attention", "mlp" })
                {
                    cases.Add(model, metric, site);
                }
            }
        }

        return cases;
    }

    [Theory]
    [MemberData(nameof(GoldenCases))]
    public void EstimatesMatchPyTorchsAutograd(string name, string metric, string site)
    {
        // tests/reference/attribution_golden.py: (clean − corrupted) · ∂metric/∂activation by autograd in float64.
        var golden = Golden.Value.Single(c => c.GetProperty("model").GetString() == name);
        var expected = golden.GetProperty(metric);
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", name));
        int answer = golden.GetProperty("answer").GetInt32();
        int? wrong = metric == "logit_difference" ? golden.GetProperty("wrong").GetInt32() : null;
        var patchSite = site switch
        {
            "heads" => PatchSite.Heads,
            "head_positions" => PatchSite.HeadPositions,
            "stream" => PatchSite.Stream,
            "attention" => PatchSite.Attention,
            _ => PatchSite.Mlp,
        };
        var result = AttributionPatching.Run(model, Ids(golden.GetProperty("clean_ids")), Ids(golden.GetProperty("corrupted_ids")), patchSite, answer, wrong);
        Assert.Equal(metric == "logit_difference" ? PatchMetric.LogitDifference : PatchMetric.LogProbability, result.Metric);
        Assert.Equal(expected.GetProperty("clean").GetDouble(), result.Clean, 4);
        Assert.Equal(expected.GetProperty("corrupted").GetDouble(), result.Corrupted, 4);

        // The golden lists layer by layer: heads [L][H], head positions [L][H][T], stream [L][T]; the effects come in
        // the same layer-then-index(-then-position) order.
        var values = expected.GetProperty(site).EnumerateArray().SelectMany(layer => layer.ValueKind == JsonValueKind.Array
            ? layer.EnumerateArray().SelectMany(item => item.ValueKind == JsonValueKind.Array ? item.EnumerateArray().Select(v => v.GetDouble()) : [item.GetDouble()])
            : [layer.GetDouble()]).ToList();
        Assert.Equal(values.Count, result.Effects.Count);
        double gap = Math.Abs(result.Clean - result.Corrupted), scale = Math.Max(values.Max(Math.Abs), 1e-3);
        for (int i = 0; i < values.Count; i++)
        {
            double estimate = result.Effects[i].Value - result.Corrupted;
            // float32 forward and backward against float64 autograd.
            Assert.True(Math.Abs(estimate - values[i]) <= 2e-4 * scale, $"{site} {i}: {estimate} vs {values[i]} (largest {scale})");
            Assert.Equal(estimate / (result.Clean - result.Corrupted), result.Effects[i].Recovered, 9);
        }

        Assert.True(gap > 0);
    }

    [Fact]
    public void EstimatingLeavesTheWeightsAsTheyWereAndRefusesPackedOnes()
    {
        var golden = Golden.Value[0];
        var (model, _) = ModelFiles.Load(Path.Combine(Fixtures, "models", "tiny-gpt2"));
        var before = model.Parameters.Arena.All.ToArray();
        int[] clean = Ids(golden.GetProperty("clean_ids")), corrupted = Ids(golden.GetProperty("corrupted_ids"));
        var first = AttributionPatching.Run(model, clean, corrupted, PatchSite.Heads, 7, 9);
        Assert.Equal(before, model.Parameters.Arena.All.ToArray());
        // Again on the same model (its gradients from the first run left behind): the same estimates.
        var second = AttributionPatching.Run(model, clean, corrupted, PatchSite.Heads, 7, 9);
        Assert.Equal(first.Effects.Select(e => e.Value), second.Effects.Select(e => e.Value));
        // One layer's estimates are the whole run's entries for that layer.
        var one = AttributionPatching.Run(model, clean, corrupted, PatchSite.HeadPositions, 7, 9, layers: [1]);
        var all = AttributionPatching.Run(model, clean, corrupted, PatchSite.HeadPositions, 7, 9);
        Assert.Equal(all.Effects.Where(e => e.Layer == 1), one.Effects);

        model.PackForInference();
        var error = Assert.Throws<HeadLensException>(() => AttributionPatching.Run(model, clean, corrupted, PatchSite.Heads, 7, 9));
        Assert.Contains("unpacked", error.Message);
        Assert.Throws<ArgumentException>(() => AttributionPatching.Run(model, clean, corrupted, PatchSite.Keys, 7, 9));
    }
}
