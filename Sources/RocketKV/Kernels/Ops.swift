import Foundation
import CKernels

/// Elementwise and normalisation operators of the transformer, written to follow llama.cpp's arithmetic.
public enum Ops {
    /// The kernel set chosen for this CPU at run time ("avx512", "avx2" or "portable"; `ROCKETKV_SIMD` caps it).
    public static var kernelLevel: String { ["portable", "avx2", "avx512"][Int(rk_simd_level())] }

    /// `out = x / sqrt(mean(x²) + eps) * weight` for one row of `n` (the sum of squares in Double, as ggml).
    @inline(__always)
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, epsilon: Float,
                               count n: Int, output: UnsafeMutablePointer<Float>) {
        var sum = 0.0
        for i in 0..<n { sum += Double(x[i] * x[i]) }
        let scale = 1 / (Float(sum / Double(n)) + epsilon).squareRoot()
        for i in 0..<n { output[i] = (x[i] * scale) * weight[i] }
    }

    /// Rotary position embedding on `heads` heads of `headDim` values at absolute `position`, as ggml's
    /// `rope_ext`: only the first `ropeDims` dimensions of each head rotate, in adjacent pairs (`.normal`) or
    /// pairs `i, i + ropeDims/2` (`.neox`). Angle `i` is `position·base^(−2i/ropeDims)`, divided by
    /// `frequencyFactors[i]` when given (Llama 3's `rope_freqs`) and multiplied by `frequencyScale` (linear scaling).
    public static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, ropeDims: Int, position: Int, base: Float,
                            style: ModelConfig.RopeStyle = .normal, frequencyScale: Float = 1,
                            frequencyFactors: UnsafePointer<Float>? = nil) {
        // ggml builds the angles by repeated multiplication in Float; do the same for identical rounding.
        let thetaScale = powf(base, -2 / Float(ropeDims))
        let half = ropeDims / 2
        var theta = Float(position)
        for i in stride(from: 0, to: ropeDims, by: 2) {
            let angle = frequencyScale * (frequencyFactors.map { theta / $0[i / 2] } ?? theta)
            let c = cosf(angle), s = sinf(angle)
            let (first, second) = style == .normal ? (i, i + 1) : (i / 2, i / 2 + half)
            for h in 0..<heads {
                let p = x + h * headDim
                let x0 = p[first], x1 = p[second]
                // Fused as GCC fuses llama.cpp's `x0*c - x1*s` and `x0*s + x1*c` (bit-for-bit parity).
                p[first] = (-(x1 * s)).addingProduct(x0, c)
                p[second] = (x1 * c).addingProduct(x0, s)
            }
            theta *= thetaScale
        }
    }

    /// `rmsNorm` of each of `rows` consecutive rows of `count` values into `output` (which may be `x`), several
    /// rows' sums at a time (`rk_rms_norm_rows`; the same bits as `rmsNorm` row by row).
    public static func rmsNormRows(_ x: UnsafePointer<Float>, rows: Int, weight: UnsafePointer<Float>, epsilon: Float, count n: Int,
                                   output: UnsafeMutablePointer<Float>) {
        rk_rms_norm_rows(x, n, Int32(rows), weight, epsilon, Int32(n), output, n)
    }

    /// `x[i] *= s` (ggml_scale).
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, by s: Float, count n: Int) {
        for i in 0..<n { x[i] *= s }
    }

    /// `x[i] += y[i]`.
    @inline(__always)
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { x[i] += y[i] }
    }
}
