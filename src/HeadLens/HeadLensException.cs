namespace HeadLens;

/// <summary>
/// An error caused by the user's input (a file, a tensor, a field, a token), worded as one line that names what
/// is wrong. The CLI prints its message and exits non-zero; anything else that escapes is a bug.
/// </summary>
public class HeadLensException : Exception
{
    public HeadLensException() { }

    public HeadLensException(string message) : base(message) { }

    public HeadLensException(string message, Exception inner) : base(message, inner) { }
}
