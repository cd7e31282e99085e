using System.Buffers.Binary;
using System.Text;

namespace HeadLens.Checkpoints.Onnx;

/// <summary>
/// A validating reader of the protobuf wire format over one message's bytes: varints, fixed32/fixed64 and
/// length-delimited fields. Every length is checked against the bytes left in the message before anything is sliced
/// or allocated, so a lying length is refused, never trusted; groups (wire types 3 and 4, unused by ONNX) are
/// refused. Errors are one line: "<c>file</c>: <c>what</c>: problem".
/// </summary>
internal ref struct ProtoReader
{
    private readonly ReadOnlySpan<byte> bytes;
    private readonly int baseOffset;
    private readonly string what;
    private int position;

    /// <param name="bytes">The message's bytes.</param>
    /// <param name="baseOffset">Where those bytes start in the file (for error messages).</param>
    /// <param name="what">The message being read, e.g. "graph.node[12]" (for error messages).</param>
    public ProtoReader(ReadOnlySpan<byte> bytes, int baseOffset, string what)
    {
        this.bytes = bytes;
        this.baseOffset = baseOffset;
        this.what = what;
    }

    public readonly bool AtEnd => position >= bytes.Length;

    /// <summary>The file offset of the next byte to read.</summary>
    public readonly int FileOffset => baseOffset + position;

    /// <summary>Reads the next field's key: its number and wire type.</summary>
    public (int Field, int WireType) ReadKey()
    {
        ulong key = ReadVarint();
        int wireType = (int)(key & 7);
        ulong field = key >> 3;
        if (field == 0 || field > (1u << 29) - 1)
        {
            throw Fail($"invalid field number {field}");
        }

        if (wireType is 3 or 4 or 6 or 7)
        {
            throw Fail($"field {field} has wire type {wireType}, which ONNX never uses");
        }

        return ((int)field, wireType);
    }

    public ulong ReadVarint()
    {
        ulong value = 0;
        for (int shift = 0; shift < 70; shift += 7)
        {
            if (position >= bytes.Length)
            {
                throw Fail("truncated varint");
            }

            byte b = bytes[position++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }

        throw Fail("varint longer than 10 bytes");
    }

    public long ReadInt64() => (long)ReadVarint();

    /// <summary>An int32/enum field: protobuf writes negative values as 10-byte varints; anything outside int32 is refused.</summary>
    public int ReadInt32()
    {
        long value = ReadInt64();
        if (value is < int.MinValue or > int.MaxValue)
        {
            throw Fail($"int32 field holds {value}");
        }

        return (int)value;
    }

    public float ReadFixed32Float() => BitConverter.Int32BitsToSingle((int)BinaryPrimitives.ReadUInt32LittleEndian(Take(4, "fixed32 value")));

    /// <summary>Reads a length-delimited field's bytes, after checking that its length fits in what is left.</summary>
    public ReadOnlySpan<byte> ReadBytes(out int fileOffset)
    {
        ulong length = ReadVarint();
        if (length > (ulong)(bytes.Length - position))
        {
            throw Fail($"a field claims {length} bytes but only {bytes.Length - position} remain");
        }

        fileOffset = FileOffset;
        return Take((int)length, "bytes");
    }

    public string ReadString()
    {
        var raw = ReadBytes(out _);
        try
        {
            return Strict.GetString(raw);
        }
        catch (DecoderFallbackException)
        {
            throw Fail("a string field is not valid UTF-8");
        }
    }

    /// <summary>Skips one field of the given wire type (the fields HeadLens does not need).</summary>
    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0:
                ReadVarint();
                break;
            case 1:
                Take(8, "fixed64 value");
                break;
            case 2:
                ReadBytes(out _);
                break;
            default:
                Take(4, "fixed32 value");
                break;
        }
    }

    /// <summary>Throws unless the field just keyed has the wire type its schema gives it.</summary>
    public readonly void Expect(int field, int wireType, int expected)
    {
        if (wireType != expected)
        {
            throw Fail($"field {field} has wire type {wireType}, expected {expected}");
        }
    }

    /// <summary>Reads a repeated int64 field, packed (one length-delimited run) or not (one varint per key).</summary>
    public void ReadRepeatedInt64(int wireType, List<long> into, int limit)
    {
        if (wireType == 0)
        {
            into.Add(ReadInt64());
        }
        else if (wireType == 2)
        {
            var packed = new ProtoReader(ReadBytes(out int offset), offset, what);
            while (!packed.AtEnd)
            {
                into.Add(packed.ReadInt64());
            }
        }
        else
        {
            throw Fail($"repeated int64 field has wire type {wireType}");
        }

        if (into.Count > limit)
        {
            throw Fail($"more than {limit} values in a repeated field");
        }
    }

    /// <summary>Reads a repeated float field, packed or not.</summary>
    public void ReadRepeatedFloat(int wireType, List<float> into)
    {
        if (wireType == 5)
        {
            into.Add(ReadFixed32Float());
        }
        else if (wireType == 2)
        {
            var packed = ReadBytes(out _);
            if (packed.Length % 4 != 0)
            {
                throw Fail($"packed floats take {packed.Length} bytes, not a multiple of 4");
            }

            for (int i = 0; i < packed.Length; i += 4)
            {
                into.Add(BinaryPrimitives.ReadSingleLittleEndian(packed[i..]));
            }
        }
        else
        {
            throw Fail($"repeated float field has wire type {wireType}");
        }
    }

    public readonly HeadLensException Fail(string problem) =>
        new($"{what}: {problem} (at byte {FileOffset})");

    private ReadOnlySpan<byte> Take(int count, string item)
    {
        if (count > bytes.Length - position)
        {
            throw Fail($"truncated {item}");
        }

        var slice = bytes.Slice(position, count);
        position += count;
        return slice;
    }

    private static readonly UTF8Encoding Strict = new(false, throwOnInvalidBytes: true);
}
