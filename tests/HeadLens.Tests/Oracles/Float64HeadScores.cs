namespace HeadLens.Tests.Oracles;

/// <summary>
/// Head scores recomputed in float64 straight from their definitions in docs/head-scores.md, written independently
/// of HeadLens.Analysis.HeadScores (sets of positions first, then sums), as the oracle for the library's scores.
/// </summary>
internal static class Float64HeadScores
{
    public static Dictionary<string, double> All(double[,] p, int[] ids, bool[] delimiter)
    {
        int t = p.GetLength(0);
        var queries = Enumerable.Range(1, t - 1).ToArray();
        double Mean(IEnumerable<double> values)
        {
            var list = values.ToList();
            return list.Count == 0 ? 0 : list.Sum() / list.Count;
        }

        // Earlier occurrences of the query's token, and the positions right after them (excluding the query itself).
        List<int> Earlier(int i) => Enumerable.Range(0, i).Where(j => ids[j] == ids[i]).ToList();
        List<int> Successors(int i) => Enumerable.Range(0, Math.Max(0, i - 1)).Where(j => ids[j] == ids[i]).Select(j => j + 1).ToList();
        double Entropy(int i) => -Enumerable.Range(0, i + 1).Where(j => p[i, j] > 0).Sum(j => p[i, j] * Math.Log(p[i, j]));
        double Distance(int i) => Enumerable.Range(0, i + 1).Sum(j => p[i, j] * (i - j));

        return new Dictionary<string, double>
        {
            ["previous_token"] = Mean(queries.Select(i => p[i, i - 1])),
            ["sink"] = Mean(queries.Select(i => p[i, 0])),
            ["local"] = Mean(queries.Select(i => 1 - (Distance(i) / i))),
            ["broad"] = Mean(queries.Select(i => Entropy(i) / Math.Log(i + 1))),
            ["duplicate_token"] = Mean(queries.Where(i => Earlier(i).Count > 0).Select(i => Earlier(i).Sum(j => p[i, j]))),
            ["induction"] = Mean(queries.Where(i => Successors(i).Count > 0).Select(i => Successors(i).Sum(j => p[i, j]))),
            ["delimiter"] = Mean(queries.Select(i => Enumerable.Range(1, i).Where(j => delimiter[j]).Sum(j => p[i, j]))),
            ["mean_distance"] = Mean(queries.Select(Distance)),
        };
    }
}
