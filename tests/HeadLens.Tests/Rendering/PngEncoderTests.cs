using System.Buffers.Binary;
using System.IO.Compression;
using HeadLens.Rendering;

namespace HeadLens.Tests.Rendering;

public class PngEncoderTests
{
    [Fact]
    public void OutputDecodesBackToThePixelsWithValidChecksums()
    {
        int width = 5, height = 3;
        byte[] rgb = Enumerable.Range(0, width * height * 3).Select(i => (byte)(i * 7)).ToArray();
        byte[] png = PngEncoder.EncodeRgb(width, height, rgb);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A], png[..8]);
        var idat = new MemoryStream();
        int at = 8;
        var types = new List<string>();
        while (at < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            string type = System.Text.Encoding.ASCII.GetString(png, at + 4, 4);
            types.Add(type);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length));
            Assert.Equal(crc, PngEncoder.Crc32(png.AsSpan(at + 4, 4 + length)) ^ 0xFFFFFFFFu);
            if (type == "IHDR")
            {
                Assert.Equal(width, BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at + 8)));
                Assert.Equal(height, BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at + 12)));
            }

            if (type == "IDAT")
            {
                idat.Write(png, at + 8, length);
            }

            at += 12 + length;
        }

        Assert.Equal(["IHDR", "IDAT", "IEND"], types);
        idat.Position = 0;
        using var inflated = new MemoryStream();
        using (var zlib = new ZLibStream(idat, CompressionMode.Decompress))
        {
            zlib.CopyTo(inflated);
        }

        byte[] raw = inflated.ToArray();
        Assert.Equal(height * (1 + width * 3), raw.Length);
        for (int y = 0; y < height; y++)
        {
            Assert.Equal(0, raw[y * (1 + width * 3)]);
            Assert.Equal(rgb.AsSpan(y * width * 3, width * 3).ToArray(), raw.AsSpan(y * (1 + width * 3) + 1, width * 3).ToArray());
        }
    }

    /// <summary>Reads back an 8-bit RGB PNG with filter 0 rows (what the encoder writes), checking every chunk's CRC.</summary>
    internal static (int Width, int Height, byte[] Rgb) Decode(byte[] png)
    {
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A], png[..8]);
        int width = 0, height = 0, at = 8;
        var idat = new MemoryStream();
        while (at < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            string type = System.Text.Encoding.ASCII.GetString(png, at + 4, 4);
            Assert.Equal(BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length)), PngEncoder.Crc32(png.AsSpan(at + 4, 4 + length)) ^ 0xFFFFFFFFu);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at + 8));
                height = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at + 12));
                Assert.Equal(8, png[at + 16]); // bit depth
                Assert.Equal(2, png[at + 17]); // truecolour
            }
            else if (type == "IDAT")
            {
                idat.Write(png, at + 8, length);
            }

            at += 12 + length;
        }

        idat.Position = 0;
        using var inflated = new MemoryStream();
        using (var zlib = new ZLibStream(idat, CompressionMode.Decompress))
        {
            zlib.CopyTo(inflated);
        }

        byte[] raw = inflated.ToArray();
        Assert.Equal(height * (1 + width * 3), raw.Length);
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            Assert.Equal(0, raw[y * (1 + width * 3)]);
            raw.AsSpan(y * (1 + width * 3) + 1, width * 3).CopyTo(rgb.AsSpan(y * width * 3));
        }

        return (width, height, rgb);
    }

    [Fact]
    public void HeatMapScalesCellsAndKeepsZeroWhite()
    {
        // 2 × 3 values, each cell 4 pixels square: 12 × 8 pixels.
        float[] values = [0f, 0.25f, 1f, 0.5f, 0f, 0.01f];
        var (width, height, rgb) = Decode(PngEncoder.HeatMap(values, rows: 2, columns: 3, scale: 4));
        Assert.Equal((12, 8), (width, height));
        byte[] Pixel(int x, int y) => rgb.AsSpan((y * width + x) * 3, 3).ToArray();
        Assert.Equal([255, 255, 255], Pixel(0, 0));
        Assert.Equal([255, 255, 255], Pixel(3, 3));        // the same cell throughout
        Assert.Equal(Pixel(8, 0), Pixel(11, 3));           // value 1, both corners of its cell
        Assert.Equal(Pixel(4, 4), Pixel(7, 7));
        // Darker with more attention, in every channel; values are clamped to [0, 1].
        Assert.True(Pixel(8, 0)[0] < Pixel(4, 0)[0] && Pixel(4, 0)[0] < Pixel(0, 0)[0]);
        Assert.True(Pixel(8, 4)[0] < 255);                 // 0.01 still shows
        Assert.Equal(Pixel(8, 0), Decode(PngEncoder.HeatMap([7f], 1, 1)).Rgb);
    }

    [Fact]
    public void KnownCrcOfTheIendChunk() =>
        Assert.Equal(0xAE426082u, PngEncoder.Crc32("IEND"u8) ^ 0xFFFFFFFFu);
}
