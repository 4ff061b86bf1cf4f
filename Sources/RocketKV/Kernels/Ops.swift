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

    /// Rotary position embedding, GGML "normal" mode (adjacent pairs), on `heads` heads of `headDim`
    /// values at absolute `position`; only the first `ropeDims` dimensions of each head rotate.
    public static func rope(_ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, ropeDims: Int,
                            position: Int, base: Float) {
        // ggml builds the angles by repeated multiplication in Float; do the same for identical rounding.
        let thetaScale = powf(base, -2 / Float(ropeDims))
        var theta = Float(position)
        for i in stride(from: 0, to: ropeDims, by: 2) {
            let c = cosf(theta), s = sinf(theta)
            for h in 0..<heads {
                let p = x + h * headDim + i
                let x0 = p[0], x1 = p[1]
                // Fused as GCC fuses llama.cpp's `x0*c - x1*s` and `x0*s + x1*c` (bit-for-bit parity).
                p[0] = (-(x1 * s)).addingProduct(x0, c)
                p[1] = (x1 * c).addingProduct(x0, s)
            }
            theta *= thetaScale
        }
    }

    /// `x[i] += y[i]`.
    @inline(__always)
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { x[i] += y[i] }
    }
}
