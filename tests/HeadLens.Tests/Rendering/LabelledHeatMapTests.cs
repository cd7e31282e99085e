using HeadLens.Rendering;

namespace HeadLens.Tests.Rendering;

/// <summary>The bitmap font and the labelled heat map: text where the layout says, cells and colour bar in the heat colours.</summary>
public class LabelledHeatMapTests
{
    /// <summary>Every pixel of every glyph of text, drawn left to right from (left, top): ink black, the rest white.</summary>
    internal static void AssertText(byte[] rgb, int width, string text, int left, int top, int scale)
    {
        for (int k = 0; k < text.Length; k++)
        {
            for (int gy = 0; gy < BitmapFont.Height * scale; gy++)
            {
                for (int gx = 0; gx < BitmapFont.Width * scale; gx++)
                {
                    int x = left + (k * BitmapFont.Advance * scale) + gx, y = top + gy;
                    byte expected = BitmapFont.Ink(text[k], gx / scale, gy / scale) ? (byte)0 : (byte)255;
                    Assert.True(rgb[((y * width) + x) * 3] == expected, $"'{text}': character {k} '{text[k]}' at ({x}, {y})");
                }
            }
        }
    }

    private static (float[] Values, string[] Tokens) Previous(int t)
    {
        var values = new float[t * t];
        values[0] = 1;
        for (int i = 1; i < t; i++)
        {
            values[(i * t) + i - 1] = 0.75f;
            values[(i * t) + i] = 0.25f;
        }

        return (values, Enumerable.Range(0, t).Select(i => " tok" + i).ToArray());
    }

    [Fact]
    public void EveryPrintableCharacterHasItsOwnGlyphAndOthersAreAQuestionMark()
    {
        var seen = new Dictionary<string, char>(StringComparer.Ordinal);
        for (char c = ' '; c <= '~'; c++)
        {
            Assert.True(BitmapFont.Has(c));
            string bits = string.Concat(Enumerable.Range(0, BitmapFont.Height * BitmapFont.Width)
                .Select(p => BitmapFont.Ink(c, p % BitmapFont.Width, p / BitmapFont.Width) ? '1' : '0'));
            Assert.True(seen.TryAdd(bits, c), $"'{c}' draws the same as '{(seen.TryGetValue(bits, out char other) ? other : c)}'");
            Assert.Equal(c == ' ', !bits.Contains('1', StringComparison.Ordinal));
        }

        foreach (char c in "é\u0120\n\u00a0")
        {
            Assert.False(BitmapFont.Has(c));
            for (int p = 0; p < BitmapFont.Height * BitmapFont.Width; p++)
            {
                Assert.Equal(BitmapFont.Ink('?', p % BitmapFont.Width, p / BitmapFont.Width), BitmapFont.Ink(c, p % BitmapFont.Width, p / BitmapFont.Width));
            }
        }
    }

    [Fact]
    public void LabelsAreTheTokensTheFontCanDraw()
    {
        Assert.Equal("a\\nb\\tc", LabelledHeatMap.Printable("a\nb\tc"));
        Assert.Equal("caf? ?x", LabelledHeatMap.Printable("café \u0120x"));
        Assert.Equal("_the", LabelledHeatMap.Printable("\u2423the"));
        Assert.Equal(LabelledHeatMap.MaxLabel, LabelledHeatMap.Printable(new string('w', 40)).Length);
    }

    [Fact]
    public void ASmallPatternHasTitleRowAndColumnLabelsCellsAndAColourBar()
    {
        const int t = 6;
        var (values, tokens) = Previous(t);
        byte[] png = LabelledHeatMap.Render(values, t, t, "layer 2, head 5", tokens, tokens, out var layout);
        var (width, height, rgb) = PngEncoderTests.Decode(png);
        Assert.Equal((layout.Width, layout.Height), (width, height));
        Assert.True(layout.Labels);
        Assert.Equal(LabelledHeatMap.MapPixels / t, layout.Cell);
        byte[] Pixel(int x, int y) => rgb.AsSpan(((y * width) + x) * 3, 3).ToArray();
        byte[] Colour(float v)
        {
            var (r, g, b) = PngEncoder.HeatColour(v);
            return [r, g, b];
        }

        AssertText(rgb, width, "layer 2, head 5", 8, 8, 2);
        AssertText(rgb, width, LabelledHeatMap.Caption, 8, 8 + 14 + 4, 1);
        int cell = layout.Cell, inset = (cell - BitmapFont.Height) / 2;
        for (int i = 0; i < t; i++)
        {
            // Row labels end three pixels left of the grid, centred on their row.
            AssertText(rgb, width, tokens[i], layout.MapLeft - 3 - BitmapFont.Measure(tokens[i]), layout.MapTop + (i * cell) + inset, 1);
            for (int j = 0; j < t; j++)
            {
                Assert.Equal(Colour(values[(i * t) + j]), Pixel(layout.MapLeft + (j * cell) + (cell / 2), layout.MapTop + (i * cell) + (cell / 2)));
            }
        }

        // Column labels run upwards from three pixels above the grid: glyph row gy is pixel column x + gy, glyph
        // column gx is gx pixels up.
        for (int j = 0; j < t; j++)
        {
            for (int k = 0; k < tokens[j].Length; k++)
            {
                for (int gy = 0; gy < BitmapFont.Height; gy++)
                {
                    for (int gx = 0; gx < BitmapFont.Width; gx++)
                    {
                        int x = layout.MapLeft + (j * cell) + inset + gy, y = layout.MapTop - 3 - ((k * BitmapFont.Advance) + gx);
                        Assert.Equal(BitmapFont.Ink(tokens[j][k], gx, gy) ? 0 : 255, Pixel(x, y)[0]);
                    }
                }
            }
        }

        // The bar: 1 at the top, 0 at the bottom, darkening upwards.
        int barX = layout.BarLeft + (layout.BarWidth / 2), mapHeight = t * cell;
        Assert.Equal(Colour(1), Pixel(barX, layout.MapTop));
        Assert.Equal(Colour(0), Pixel(barX, layout.MapTop + mapHeight - 1));
        for (int y = 1; y < mapHeight; y++)
        {
            Assert.True(Pixel(barX, layout.MapTop + y)[0] >= Pixel(barX, layout.MapTop + y - 1)[0], $"bar row {y}");
        }

        AssertText(rgb, width, "1", layout.BarLeft + layout.BarWidth + 5, layout.MapTop - (BitmapFont.Height / 2), 1);
        AssertText(rgb, width, "0.5", layout.BarLeft + layout.BarWidth + 5, layout.MapTop + (int)MathF.Round(0.5f * (mapHeight - 1)) - (BitmapFont.Height / 2), 1);
    }

    [Fact]
    public void CellsTooSmallForAGlyphGetNoLabelsButKeepTitleAndBar()
    {
        const int t = 100; // 5 px a cell: a 7 px glyph does not fit
        var (values, tokens) = Previous(t);
        byte[] png = LabelledHeatMap.Render(values, t, t, "long", tokens, tokens, out var layout);
        var (width, _, rgb) = PngEncoderTests.Decode(png);
        Assert.False(layout.Labels);
        Assert.Equal(5, layout.Cell);
        AssertText(rgb, width, "long", 8, 8, 2);
        // Nothing drawn between the caption and the grid (the colour bar's top tick may reach up there), nor left of it.
        for (int y = 8 + 14 + 4 + BitmapFont.Height + 1; y < layout.MapTop; y++)
        {
            for (int x = 0; x < layout.BarLeft; x++)
            {
                Assert.Equal(255, rgb[((y * width) + x) * 3]);
            }
        }

        for (int y = layout.MapTop; y < layout.MapTop + (t * layout.Cell); y++)
        {
            for (int x = 0; x < layout.MapLeft; x++)
            {
                Assert.Equal(255, rgb[((y * width) + x) * 3]);
            }
        }
    }

    [Fact]
    public void MismatchedLabelsAreRefused()
    {
        Assert.Throws<ArgumentException>(() => LabelledHeatMap.Render(new float[4], 2, 2, "x", ["a"], ["a", "b"], out _));
        Assert.Throws<ArgumentException>(() => LabelledHeatMap.Render(new float[3], 2, 2, "x", ["a", "b"], ["a", "b"], out _));
    }
}
