using System.Text.Json;
using HeadLens.Attention;
using HeadLens.Tests.Oracles;

namespace HeadLens.Tests.Attention;

/// <summary>
/// Outputs and gradients of PyTorch's naive attention on the same inputs (tests/reference/attention_golden.py, in
/// float64 from fp32-rounded inputs). HeadLens computes in fp32: within 1e-5 relative (floor 1 for outputs, which are
/// convex combinations of values in [−1, 1]; the gradients are measured against their largest entry).
/// </summary>
public class TorchGoldenTests
{
    public static TheoryData<string> Cases() => new("causal", "padding", "gqa");

    [Theory]
    [MemberData(nameof(Cases))]
    public void FusedAndReferenceMatchTorch(string name)
    {
        using var document = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "attention", "golden.json")));
        var golden = document.RootElement.GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);
        int t = golden.GetProperty("T").GetInt32(), heads = golden.GetProperty("heads").GetInt32();
        int kvHeads = golden.GetProperty("kv_heads").GetInt32(), d = golden.GetProperty("head_dim").GetInt32();
        var padding = new bool[t];
        foreach (var j in golden.GetProperty("padded").EnumerateArray())
        {
            padding[j.GetInt32()] = true;
        }

        var options = new AttentionOptions(heads, kvHeads, d, d) { KeyPadding = name == "padding" ? padding : null };
        float[] q = Floats(golden, "q"), k = Floats(golden, "k"), v = Floats(golden, "v"), r = Floats(golden, "r");
        foreach (bool fused in new[] { true, false })
        {
            float[] output = new float[t * heads * d], lse = new float[heads * t];
            float[] dq = new float[q.Length], dk = new float[k.Length], dv = new float[v.Length];
            if (fused)
            {
                ScaledDotProductAttention.Forward(options, t, t, 0, q, k, v, output, lse);
                ScaledDotProductAttention.Backward(options, t, t, 0, q, k, v, output, r, lse, dq, dk, dv);
            }
            else
            {
                ScaledDotProductAttention.ForwardReference(options, t, t, 0, q, k, v, output, lse);
                ScaledDotProductAttention.BackwardReference(options, t, t, 0, q, k, v, output, r, lse, dq, dk, dv);
            }

            Assert.True(Float64.MaxRelativeError(output, Doubles(golden, "out")) <= 1e-5, $"{name} fused={fused} out");
            foreach (var (actual, key) in new[] { (dq, "q_grad"), (dk, "k_grad"), (dv, "v_grad") })
            {
                double[] expected = Doubles(golden, key);
                double floor = expected.Max(Math.Abs);
                Assert.True(Float64.MaxRelativeError(actual, expected, floor) <= 1e-5, $"{name} fused={fused} {key}");
            }
        }
    }

    private static double[] Doubles(JsonElement element, string key) =>
        element.GetProperty(key).EnumerateArray().Select(value => value.GetDouble()).ToArray();

    private static float[] Floats(JsonElement element, string key) =>
        element.GetProperty(key).EnumerateArray().Select(value => (float)value.GetDouble()).ToArray();
}
