namespace HeadLens.Rendering;

/// <summary>Where the parts of a labelled heat map lie, in pixels (for tests and for anyone drawing over it).</summary>
/// <param name="MapLeft">Left edge of the cell grid.</param>
/// <param name="MapTop">Top edge of the cell grid.</param>
/// <param name="Cell">Side of one cell.</param>
/// <param name="Labels">Whether the row and column labels were drawn (only when a cell is at least a glyph tall).</param>
/// <param name="BarLeft">Left edge of the colour bar, which is as tall as the grid: value 1 at the top, 0 at the bottom.</param>
public sealed record HeatMapLayout(int Width, int Height, int MapLeft, int MapTop, int Cell, bool Labels, int BarLeft, int BarWidth);

/// <summary>
/// An attention pattern as a PNG a reader can read without the viewer: a title, a line saying what rows and columns
/// are, the token of every row (left) and column (top, written upwards) where a cell is tall enough for a glyph, and a
/// colour bar with its ticks. Cells use <see cref="PngEncoder.HeatColour"/>, as the plain heat map does. Text is
/// drawn with <see cref="BitmapFont"/>; characters it lacks show as '?', newlines and tabs as \n and \t.
/// </summary>
public static class LabelledHeatMap
{
    /// <summary>The grid is about this many pixels wide at most (cells are whole pixels, at least one).</summary>
    public const int MapPixels = 512;

    /// <summary>Longest label drawn; longer tokens are cut.</summary>
    public const int MaxLabel = 12;

    public const string Caption = "rows: queries, columns: keys; colour: attention weight";

    private const int Margin = 8;
    private const int TitleScale = 2;
    private static readonly float[] Ticks = [1f, 0.75f, 0.5f, 0.25f, 0f];

    /// <summary>values [rows, columns] in [0, 1]; one label per row and per column.</summary>
    public static byte[] Render(ReadOnlySpan<float> values, int rows, int columns, string title,
        IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels, out HeatMapLayout layout)
    {
        if (rows <= 0 || columns <= 0 || values.Length != rows * columns || rowLabels.Count != rows || columnLabels.Count != columns)
        {
            throw new ArgumentException($"heat map: {values.Length} values, {rowLabels.Count} row and {columnLabels.Count} column labels do not make {rows}×{columns}");
        }

        layout = Layout(rows, columns, title, rowLabels, columnLabels);
        var image = new Canvas(layout.Width, layout.Height);
        int cell = layout.Cell;
        image.Text(title, Margin, Margin, TitleScale);
        image.Text(Caption, Margin, Margin + (BitmapFont.Height * TitleScale) + 4, 1);
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < columns; j++)
            {
                image.Fill(layout.MapLeft + (j * cell), layout.MapTop + (i * cell), cell, cell, PngEncoder.HeatColour(values[(i * columns) + j]));
            }
        }

        if (layout.Labels)
        {
            // Glyphs centred on their cell; row labels end just left of the grid, column labels start just above it.
            int inset = (cell - BitmapFont.Height) / 2;
            for (int i = 0; i < rows; i++)
            {
                string label = Printable(rowLabels[i]);
                image.Text(label, layout.MapLeft - 3 - BitmapFont.Measure(label), layout.MapTop + (i * cell) + inset, 1);
            }

            for (int j = 0; j < columns; j++)
            {
                image.TextUp(Printable(columnLabels[j]), layout.MapLeft + (j * cell) + inset, layout.MapTop - 3);
            }
        }

        int mapHeight = rows * cell;
        for (int y = 0; y < mapHeight; y++)
        {
            // Linear in the value, top (1) to bottom (0), so a reader can put a number on a colour.
            float value = 1f - (y / (float)Math.Max(1, mapHeight - 1));
            image.Fill(layout.BarLeft, layout.MapTop + y, layout.BarWidth, 1, PngEncoder.HeatColour(value));
        }

        foreach (float tick in Ticks)
        {
            int y = layout.MapTop + (int)MathF.Round((1f - tick) * (mapHeight - 1));
            image.Fill(layout.BarLeft + layout.BarWidth, y, 3, 1, (0, 0, 0));
            image.Text(TickText(tick), layout.BarLeft + layout.BarWidth + 5, Math.Clamp(y - (BitmapFont.Height / 2), 0, layout.Height - BitmapFont.Height), 1);
        }

        return PngEncoder.EncodeRgb(layout.Width, layout.Height, image.Rgb);
    }

    /// <summary>A token as the font can draw it: newlines and tabs spelled out, ␣ as _, other characters outside ASCII as '?', cut to <see cref="MaxLabel"/>.</summary>
    public static string Printable(string token)
    {
        var text = token.Replace("\n", "\\n", StringComparison.Ordinal).Replace("\t", "\\t", StringComparison.Ordinal)
            .Replace("\r", "\\r", StringComparison.Ordinal);
        // The open box a tokenizer shows for a space token is drawn as the font's underscore.
        var chars = text.Select(c => c == '\u2423' ? '_' : BitmapFont.Has(c) ? c : '?').ToArray();
        return new string(chars, 0, Math.Min(chars.Length, MaxLabel));
    }

    private static string TickText(float tick) => tick.ToString("0.##", System.Globalization.CultureInfo.InvariantCulture);

    private static HeatMapLayout Layout(int rows, int columns, string title, IReadOnlyList<string> rowLabels, IReadOnlyList<string> columnLabels)
    {
        int cell = Math.Max(1, MapPixels / Math.Max(rows, columns));
        bool labels = cell >= BitmapFont.Height + 1;
        int rowLabelWidth = labels ? rowLabels.Max(label => BitmapFont.Measure(Printable(label))) + 4 : 0;
        int columnLabelHeight = labels ? columnLabels.Max(label => BitmapFont.Measure(Printable(label))) + 4 : 0;
        int textTop = Margin + (BitmapFont.Height * TitleScale) + 4 + BitmapFont.Height + 6;
        int mapLeft = Margin + rowLabelWidth;
        int mapTop = textTop + columnLabelHeight;
        int barLeft = mapLeft + (columns * cell) + 12;
        const int barWidth = 12;
        int tickWidth = 5 + BitmapFont.Measure("0.75");
        int width = Math.Max(barLeft + barWidth + tickWidth + Margin,
            Margin + Math.Max(BitmapFont.Measure(title, TitleScale), BitmapFont.Measure(Caption)) + Margin);
        int height = mapTop + (rows * cell) + Margin;
        return new HeatMapLayout(width, height, mapLeft, mapTop, cell, labels, barLeft, barWidth);
    }

    /// <summary>A white RGB image that text and rectangles are drawn on; whatever falls outside is clipped.</summary>
    private sealed class Canvas(int width, int height)
    {
        public byte[] Rgb { get; } = Enumerable.Repeat((byte)255, width * height * 3).ToArray();

        public void Fill(int left, int top, int w, int h, (byte R, byte G, byte B) colour)
        {
            for (int y = Math.Max(0, top); y < Math.Min(height, top + h); y++)
            {
                for (int x = Math.Max(0, left); x < Math.Min(width, left + w); x++)
                {
                    int at = ((y * width) + x) * 3;
                    (Rgb[at], Rgb[at + 1], Rgb[at + 2]) = colour;
                }
            }
        }

        /// <summary>Left to right, top-left corner at (left, top), each font pixel scale × scale.</summary>
        public void Text(string text, int left, int top, int scale)
        {
            for (int k = 0; k < text.Length; k++)
            {
                for (int gy = 0; gy < BitmapFont.Height; gy++)
                {
                    for (int gx = 0; gx < BitmapFont.Width; gx++)
                    {
                        if (BitmapFont.Ink(text[k], gx, gy))
                        {
                            Fill(left + (((k * BitmapFont.Advance) + gx) * scale), top + (gy * scale), scale, scale, (0, 0, 0));
                        }
                    }
                }
            }
        }

        /// <summary>Bottom to top (turned a quarter left), the first character's baseline side at x = left, starting at y = bottom.</summary>
        public void TextUp(string text, int left, int bottom)
        {
            for (int k = 0; k < text.Length; k++)
            {
                for (int gy = 0; gy < BitmapFont.Height; gy++)
                {
                    for (int gx = 0; gx < BitmapFont.Width; gx++)
                    {
                        if (BitmapFont.Ink(text[k], gx, gy))
                        {
                            Fill(left + gy, bottom - ((k * BitmapFont.Advance) + gx), 1, 1, (0, 0, 0));
                        }
                    }
                }
            }
        }
    }
}
