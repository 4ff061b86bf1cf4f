import CKernels
import Foundation
import RocketKV
import XCTest

/// The blocks the architectures share (GELU-gated FFN, RoPE variants, per-head norms) against plain references.
final class ModelBlockTests: XCTestCase {
    /// ggml's GELU: the input rounded to f16, the formula's value rounded to f16 (the table), times the gate.
    func testGegluMatchesTheTableDefinitionForEveryHalf() {
        func gelu(_ x: Float) -> Float {
            let inner = Float(1).addingProduct(0.044715 * x, x)
            return (0.5 * x) * (1 + tanhf((0.79788456080286535587989211986876 * x) * inner))
        }
        var inputs = (0..<(1 << 16)).map { Float(Float16(bitPattern: UInt16($0))) }.filter { !$0.isNaN }
        inputs += [-10, 10, -10.5, 10.5, 1e6, -1e6, 3.14159, -0.001234]   // edges and values between halves
        let up = inputs.indices.map { Float($0 % 7) - 3 }
        forEachPath { level in
            var gate = inputs
            rk_geglu(&gate, up, Int32(gate.count))
            for (i, x) in inputs.enumerated() {
                let expected: Float = x <= -10 ? 0 : x >= 10 ? x * up[i] : Float(Float16(gelu(Float(Float16(x))))) * up[i]
                XCTAssertEqual(gate[i].bitPattern, expected.bitPattern, "\(level): x = \(x)")
                if gate[i].bitPattern != expected.bitPattern { return }
            }
        }
        XCTAssertEqual(rk_gelu_formula(1.5), gelu(1.5))
    }

    /// NeoX RoPE rotates dimension i with i + d/2 by the same angles normal RoPE gives the pair (2i, 2i+1);
    /// frequency factors divide each angle and the linear scale multiplies it.
    func testRopeStylesAgainstReference() {
        let headDim = 16, ropeDims = 12, heads = 2, base: Float = 10_000, position = 37
        var state: UInt64 = 3
        let x = (0..<(heads * headDim)).map { _ -> Float in state = state &* 6364136223846793005 &+ 1; return Float(Int64(state >> 40) % 1000) / 500 - 1 }
        let factors: [Float] = [1, 1, 2, 4, 8, 8]
        for (style, scale, useFactors) in [(ModelConfig.RopeStyle.normal, Float(1), false), (.neox, 1, false), (.neox, 0.25, true), (.normal, 1, true)] {
            var y = x
            factors.withUnsafeBufferPointer { f in
                Ops.rope(&y, heads: heads, headDim: headDim, ropeDims: ropeDims, position: position, base: base, style: style,
                         frequencyScale: scale, frequencyFactors: useFactors ? f.baseAddress : nil)
            }
            for h in 0..<heads {
                for i in 0..<(ropeDims / 2) {
                    let angle = Double(scale) * Double(position) * pow(Double(base), -2 * Double(i) / Double(ropeDims)) / Double(useFactors ? factors[i] : 1)
                    let (a, b) = style == .normal ? (2 * i, 2 * i + 1) : (i, i + ropeDims / 2)
                    let x0 = Double(x[h * headDim + a]), x1 = Double(x[h * headDim + b])
                    XCTAssertEqual(Double(y[h * headDim + a]), x0 * cos(angle) - x1 * sin(angle), accuracy: 2e-4, "\(style) head \(h) pair \(i)")
                    XCTAssertEqual(Double(y[h * headDim + b]), x0 * sin(angle) + x1 * cos(angle), accuracy: 2e-4, "\(style) head \(h) pair \(i)")
                }
                for i in ropeDims..<headDim { XCTAssertEqual(y[h * headDim + i], x[h * headDim + i]) }   // not rotated
            }
        }
    }

    func testPerHeadNormalisesEachRow() {
        var x: [Float] = [1, 2, 3, 4, -4, 0, 0, 0]
        let w: [Float] = [1, 1, 2, 0.5]
        x.withUnsafeMutableBufferPointer { Ops.rmsNormRows($0.baseAddress!, rows: 2, weight: w, epsilon: 1e-6, count: 4, output: $0.baseAddress!) }
        let r0 = (30.0 / 4).squareRoot(), r1 = (16.0 / 4).squareRoot()
        let expected = [1 / r0, 2 / r0, 2 * 3 / r0, 0.5 * 4 / r0, -4 / r1, 0, 0, 0]
        for (a, b) in zip(x, expected) { XCTAssertEqual(Double(a), b, accuracy: 1e-5) }
    }

    /// The several-rows kernel against its twin, one row at a time, bit for bit: every group size (8, 4, 1)
    /// and row lengths of heads and embeddings, with rows of very different magnitudes side by side.
    func testNormRowsMatchesOneRowAtATime() {
        var state: UInt64 = 11
        func next() -> Float { state = state &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(state >> 33) % 20001) / 10000 - 1 }
        for (rows, n) in [(1, 64), (3, 256), (4, 640), (13, 256), (21, 96)] {
            let x = (0..<(rows * n)).map { i in next() * (i / n % 3 == 0 ? 1e3 : 1e-3) }
            let w = (0..<n).map { _ in next() + 1 }
            var got = [Float](repeating: .nan, count: rows * n), expected = got
            got.withUnsafeMutableBufferPointer { Ops.rmsNormRows(x, rows: rows, weight: w, epsilon: 1e-6, count: n, output: $0.baseAddress!) }
            expected.withUnsafeMutableBufferPointer { out in
                x.withUnsafeBufferPointer { xp in
                    for r in 0..<rows { Ops.rmsNorm(xp.baseAddress! + r * n, weight: w, epsilon: 1e-6, count: n, output: out.baseAddress! + r * n) }
                }
            }
            XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "\(rows) rows of \(n)")
        }
    }
}
