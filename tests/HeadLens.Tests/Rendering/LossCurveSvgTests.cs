using System.Globalization;
using System.Xml.Linq;
using HeadLens.Rendering;

namespace HeadLens.Tests.Rendering;

public class LossCurveSvgTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    [Fact]
    public void EveryFiniteLossIsAPointAndEveryValidationLossADot()
    {
        float[] losses = [5.5f, 4f, float.NaN, 3f, 2.5f, float.PositiveInfinity, 2f];
        (int, float)[] validation = [(3, 3.5f), (7, 2.2f)];
        var document = XDocument.Parse(LossCurveSvg.Render(losses, validation));
        var points = document.Descendants(Svg + "polyline").Single().Attribute("points")!.Value
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(p => p.Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToList();
        Assert.Equal(5, points.Count);
        Assert.Equal(2, document.Descendants(Svg + "circle").Count());
        // x grows with the step; a lower loss is drawn lower down (larger y in SVG); everything stays inside the picture.
        Assert.True(points.Zip(points.Skip(1), (a, b) => b[0] > a[0]).All(x => x));
        Assert.True(points[^1][1] > points[0][1]);
        Assert.All(points, p => Assert.InRange(p[1], 0, 340));
        Assert.Contains(document.Descendants(Svg + "text"), t => t.Value == "validation 2.200");
        Assert.Contains(document.Descendants(Svg + "text"), t => t.Value == "train 2.000");
    }

    [Fact]
    public void AnEmptyOrFlatCurveStillGivesValidSvg()
    {
        Assert.NotNull(XDocument.Parse(LossCurveSvg.Render([], [])));
        var flat = XDocument.Parse(LossCurveSvg.Render([1f, 1f, 1f], []));
        Assert.DoesNotContain("NaN", flat.ToString(), StringComparison.Ordinal);
    }
}
