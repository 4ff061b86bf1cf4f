import Foundation

/// Elementwise and normalisation operators of the transformer, written to follow llama.cpp's arithmetic.
public enum Ops {
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
                p[0] = x0 * c - x1 * s
                p[1] = x0 * s + x1 * c
            }
            theta *= thetaScale
        }
    }

    /// `gate[i] = silu(gate[i]) * up[i]`.
    @inline(__always)
    public static func swiglu(_ gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// In-place softmax of `n` values; returns nothing, leaves probabilities summing to 1.
    @inline(__always)
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        var maxValue = -Float.infinity
        for i in 0..<n where x[i] > maxValue { maxValue = x[i] }
        var sum = 0.0  // Double, as ggml accumulates it
        for i in 0..<n {
            let e = expf(x[i] - maxValue)
            x[i] = e
            sum += Double(e)
        }
        let inverse = Float(1 / sum)
        for i in 0..<n { x[i] *= inverse }
    }

    /// `x[i] += y[i]`.
    @inline(__always)
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { x[i] += y[i] }
    }
}
