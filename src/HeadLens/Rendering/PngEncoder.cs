using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace HeadLens.Rendering;

/// <summary>
/// A minimal PNG writer (no image library is available here): 8-bit RGB, filter type 0 on every row, the image
/// data deflated by ZLibStream, each chunk closed by its CRC-32 (ISO 3309 polynomial, as the PNG spec requires).
/// </summary>
public static class PngEncoder
{
    private static readonly uint[] CrcTable = BuildCrcTable();

    /// <summary>rgb holds width·height·3 bytes, row by row.</summary>
    public static byte[] EncodeRgb(int width, int height, ReadOnlySpan<byte> rgb)
    {
        if (width <= 0 || height <= 0 || rgb.Length != width * height * 3)
        {
            throw new ArgumentException($"PNG: {rgb.Length} bytes do not make a {width}×{height} RGB image");
        }

        using var output = new MemoryStream();
        output.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8;  // bit depth
        header[9] = 2;  // colour type: truecolour
        WriteChunk(output, "IHDR", header);
        using (var raw = new MemoryStream())
        {
            using (var zlib = new ZLibStream(raw, CompressionLevel.Optimal, leaveOpen: true))
            {
                for (int y = 0; y < height; y++)
                {
                    zlib.WriteByte(0); // filter: none
                    zlib.Write(rgb.Slice(y * width * 3, width * 3));
                }
            }

            WriteChunk(output, "IDAT", raw.ToArray());
        }

        WriteChunk(output, "IEND", []);
        return output.ToArray();
    }

    /// <summary>A heat map of values in [0, 1] (white → dark blue), each cell <paramref name="scale"/> pixels square.</summary>
    public static byte[] HeatMap(ReadOnlySpan<float> values, int rows, int columns, int scale = 1)
    {
        int width = columns * scale, height = rows * scale;
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                var (r, g, b) = HeatColour(values[(y / scale) * columns + (x / scale)]);
                int at = (y * width + x) * 3;
                rgb[at] = r;
                rgb[at + 1] = g;
                rgb[at + 2] = b;
            }
        }

        return EncodeRgb(width, height, rgb);
    }

    /// <summary>The heat maps' colour of a value in [0, 1] (clamped): white at 0, dark blue at 1.</summary>
    public static (byte R, byte G, byte B) HeatColour(float value)
    {
        // sqrt stretches small probabilities so that weak attention is still visible.
        float s = MathF.Sqrt(Math.Clamp(value, 0f, 1f));
        return ((byte)(255 - 230 * s), (byte)(255 - 200 * s), (byte)(255 - 90 * s));
    }

    public static uint Crc32(ReadOnlySpan<byte> data, uint crc = 0xFFFFFFFFu)
    {
        foreach (byte b in data)
        {
            crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return crc;
    }

    private static void WriteChunk(Stream output, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> number = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(number, data.Length);
        output.Write(number);
        byte[] typeBytes = Encoding.ASCII.GetBytes(type);
        output.Write(typeBytes);
        output.Write(data);
        BinaryPrimitives.WriteUInt32BigEndian(number, Crc32(data, Crc32(typeBytes)) ^ 0xFFFFFFFFu);
        output.Write(number);
    }

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }

            table[n] = c;
        }

        return table;
    }
}
