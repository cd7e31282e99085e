using System.Runtime.Intrinsics.X86;

namespace HeadLens.Kernels;

/// <summary>
/// Facts about this CPU's microarchitecture that the kernels cannot read from its caches or instruction sets, and that
/// were measured to change which code is fastest: from the x86 CPUID vendor string and family.
/// </summary>
internal static class CpuModel
{
    /// <summary>
    /// Whether this is AMD family 19h: Zen 3 (AVX2) or Zen 4 (AVX-512, which issues a 512-bit FMA once per cycle as
    /// two 256-bit halves, and whose hardware prefetchers follow a matrix-vector product's weight rows by themselves).
    /// </summary>
    public static bool AmdFamily19h { get; } = X86Base.IsSupported && IsAmdFamily19h(X86Base.CpuId(0, 0), X86Base.CpuId(1, 0).Eax);

    /// <summary>
    /// Whether a CPU, from CPUID leaf 0 (its vendor string in EBX, EDX, ECX) and leaf 1's EAX (its family: bits 11:8,
    /// plus bits 27:20 when those read 0xF), is AMD family 19h.
    /// </summary>
    public static bool IsAmdFamily19h((int Eax, int Ebx, int Ecx, int Edx) vendor, int signature)
    {
        int family = (signature >> 8) & 0xF;
        if (family == 0xF)
        {
            family += (signature >> 20) & 0xFF;
        }

        return IsAmd(vendor) && family == 0x19;
    }

    /// <summary>Whether this is an Intel CPU (CPUID's vendor string "GenuineIntel").</summary>
    public static bool Intel { get; } = X86Base.IsSupported && IsIntel(X86Base.CpuId(0, 0));

    /// <summary>Whether CPUID leaf 0's vendor string (EBX, EDX, ECX) reads "GenuineIntel".</summary>
    public static bool IsIntel((int Eax, int Ebx, int Ecx, int Edx) vendor) =>
        vendor.Ebx == 0x756e6547 && vendor.Edx == 0x49656e69 && vendor.Ecx == 0x6c65746e;

    /// <summary>Whether CPUID leaf 0's vendor string (EBX, EDX, ECX) reads "AuthenticAMD".</summary>
    public static bool IsAmd((int Eax, int Ebx, int Ecx, int Edx) vendor) =>
        vendor.Ebx == 0x68747541 && vendor.Edx == 0x69746e65 && vendor.Ecx == 0x444d4163;
}
