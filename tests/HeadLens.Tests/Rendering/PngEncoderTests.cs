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

    [Fact]
    public void KnownCrcOfTheIendChunk() =>
        Assert.Equal(0xAE426082u, PngEncoder.Crc32("IEND"u8) ^ 0xFFFFFFFFu);
}
