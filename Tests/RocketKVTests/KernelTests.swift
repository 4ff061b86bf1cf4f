import CKernels
import Foundation
import RocketKV
import XCTest

/// Plain Swift references for the C kernels, written for clarity, not speed.
enum ReferenceKernels {
    /// Q8_0/Q8_1 quantization of one 32-block: scale amax/127, values rounded half to even.
    static func quantizeBlock(_ x: ArraySlice<Float>) -> (d: Float, q: [Int8]) {
        let amax = x.map(abs).max() ?? 0
        let id: Float = amax != 0 ? 127 / amax : 0
        return (amax / 127, x.map { Int8(($0 * id).rounded(.toNearestOrEven)) })
    }

    static func half(_ x: Float) -> Float { Float(Float16(x)) }

    /// Dot product of a Q4_1 row (bytes) with f32 activations quantized to Q8_1.
    static func dotQ4_1(_ w: [UInt8], _ x: [Float]) -> Float {
        var sum: Float = 0
        for b in 0..<(x.count / 32) {
            let block = Array(w[(b * 20)..<(b * 20 + 20)])
            let dw = Float(Float16(bitPattern: UInt16(block[0]) | UInt16(block[1]) << 8))
            let mw = Float(Float16(bitPattern: UInt16(block[2]) | UInt16(block[3]) << 8))
            let (dx, qx) = quantizeBlock(x[(b * 32)..<(b * 32 + 32)])
            var sumi = 0
            for j in 0..<16 {
                sumi += Int(block[4 + j] & 0x0f) * Int(qx[j]) + Int(block[4 + j] >> 4) * Int(qx[j + 16])
            }
            let s = half(dx * Float(qx.reduce(0) { $0 + Int($1) }))
            sum += mw * s + dw * half(dx) * Float(sumi)
        }
        return sum
    }

    /// Dot product of a Q8_0 row with f32 activations quantized to Q8_0.
    static func dotQ8_0(_ w: [UInt8], _ x: [Float]) -> Float {
        var sum: Float = 0
        for b in 0..<(x.count / 32) {
            let block = Array(w[(b * 34)..<(b * 34 + 34)])
            let dw = Float(Float16(bitPattern: UInt16(block[0]) | UInt16(block[1]) << 8))
            let (dx, qx) = quantizeBlock(x[(b * 32)..<(b * 32 + 32)])
            var sumi = 0
            for j in 0..<32 { sumi += Int(Int8(bitPattern: block[2 + j])) * Int(qx[j]) }
            sum += dw * half(dx) * Float(sumi)
        }
        return sum
    }
}

extension XCTestCase {
    /// Runs `body` once per kernel level the CPU has (AVX-512, AVX2, portable), best first.
    func forEachPath(_ body: (String) throws -> Void) rethrows {
        defer { rk_limit_simd(-1) }
        rk_limit_simd(-1)
        for level in stride(from: rk_simd_level(), through: 0, by: -1) {
            rk_limit_simd(level)
            try body(Ops.kernelLevel)
        }
    }
}

final class KernelTests: TwoThreadTestCase {
    var rng = SystemRandomNumberGenerator()

    func randomFloats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in Float.random(in: -scale...scale) } }

    func randomQ4_1Row(blocks: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<blocks {
            let d = Float16(Float.random(in: 0.001...0.1)), m = Float16(Float.random(in: -0.5...0))
            bytes += [UInt8(d.bitPattern & 0xff), UInt8(d.bitPattern >> 8), UInt8(m.bitPattern & 0xff), UInt8(m.bitPattern >> 8)]
            bytes += (0..<16).map { _ in UInt8.random(in: 0...255) }
        }
        return bytes
    }

    func randomQ8_0Row(blocks: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        for _ in 0..<blocks {
            let d = Float16(Float.random(in: 0.001...0.05))
            bytes += [UInt8(d.bitPattern & 0xff), UInt8(d.bitPattern >> 8)] + (0..<32).map { _ in UInt8.random(in: 0...255) }
        }
        return bytes
    }

    func testActivationQuantizationMatchesReference() {
        let x = randomFloats(32 * 8, scale: 3) + [Float](repeating: 0, count: 32)  // includes an all-zero block
        forEachPath { path in
            var q8_0 = [UInt8](repeating: 0, count: 34 * 9), q8_1 = [UInt8](repeating: 0, count: 36 * 9)
            rk_quantize_row_q8_0(x, &q8_0, Int32(x.count))
            rk_quantize_row_q8_1(x, &q8_1, Int32(x.count))
            for b in 0..<9 {
                let (d, q) = ReferenceKernels.quantizeBlock(x[(b * 32)..<(b * 32 + 32)])
                let d0 = Float16(bitPattern: UInt16(q8_0[b * 34]) | UInt16(q8_0[b * 34 + 1]) << 8)
                XCTAssertEqual(Float(d0), ReferenceKernels.half(d), "\(path) block \(b) scale")
                XCTAssertEqual(q8_0[(b * 34 + 2)..<(b * 34 + 34)].map { Int8(bitPattern: $0) }, q, "\(path) block \(b)")
                XCTAssertEqual(q8_1[(b * 36 + 4)..<(b * 36 + 36)].map { Int8(bitPattern: $0) }, q, "\(path) block \(b) q8_1")
                let s = Float16(bitPattern: UInt16(q8_1[b * 36 + 2]) | UInt16(q8_1[b * 36 + 3]) << 8)
                XCTAssertEqual(Float(s), ReferenceKernels.half(d * Float(q.reduce(0) { $0 + Int($1) })), "\(path) block \(b) sum")
            }
        }
    }

    func testQuantizedDotProductsMatchReference() {
        for blocks in [1, 3, 18, 48] {
            let x = randomFloats(32 * blocks, scale: 2)
            let w41 = randomQ4_1Row(blocks: blocks), w80 = randomQ8_0Row(blocks: blocks)
            let expected41 = ReferenceKernels.dotQ4_1(w41, x), expected80 = ReferenceKernels.dotQ8_0(w80, x)
            forEachPath { path in
                var q8_1 = [UInt8](repeating: 0, count: 36 * blocks), q8_0 = [UInt8](repeating: 0, count: 34 * blocks)
                rk_quantize_row_q8_1(x, &q8_1, Int32(x.count))
                rk_quantize_row_q8_0(x, &q8_0, Int32(x.count))
                let got41 = rk_vec_dot_q4_1_q8_1(Int32(x.count), w41, q8_1)
                let got80 = rk_vec_dot_q8_0_q8_0(Int32(x.count), w80, q8_0)
                XCTAssertEqual(got41, expected41, accuracy: 1e-4 * (abs(expected41) + 1), "\(path) q4_1 × \(blocks) blocks")
                XCTAssertEqual(got80, expected80, accuracy: 1e-4 * (abs(expected80) + 1), "\(path) q8_0 × \(blocks) blocks")
            }
        }
    }

    func testMatmulMatchesRowDotProducts() {
        let rows = 40, columns = 96, tokens = 3
        let w = randomQ4_1Row(blocks: rows * columns / 32)
        let x = randomFloats(tokens * columns)
        var y = [Float](repeating: .nan, count: tokens * rows)
        w.withUnsafeBytes { wp in
            let matrix = WeightMatrix(type: .q4_1, rows: rows, columns: columns, data: wp.baseAddress!)
            matmul(matrix, input: x, tokens: tokens, output: &y, scratch: MatmulScratch())
        }
        for t in 0..<tokens {
            for r in 0..<rows {
                let expected = ReferenceKernels.dotQ4_1(Array(w[(r * 60)..<(r * 60 + 60)]), Array(x[(t * columns)..<((t + 1) * columns)]))
                XCTAssertEqual(y[t * rows + r], expected, accuracy: 1e-4 * (abs(expected) + 1))
            }
        }
    }

    /// The register-tiled matrix kernels (every tile shape and ragged edge, AVX2 and AVX-512 tiles) give
    /// exactly the row-dot's bits.
    func testTiledMatmulIsBitExactWithRowDots() {
        forEachPath { path in
            for (type, blockBytes, activation) in [(3, 20, 36), (8, 34, 34), (2, 18, 34), (6, 22, 34)] {
                for (rows, tokens, blocks) in [(37, 1, 18), (16, 1, 48), (35, 70, 18), (130, 33, 20), (6, 5, 3), (3, 2, 2)] {   // 130 × 20: several unpacked chunks
                    var w: [UInt8] = []
                    for _ in 0..<(rows * blocks) {
                        switch type {
                        case 3: w += randomQ4_1Row(blocks: 1)
                        case 8: w += randomQ8_0Row(blocks: 1)
                        case 6: w += randomRow(.q5_0, blocks: 1)
                        default: w += Array(randomQ4_1Row(blocks: 1).dropFirst(2))
                        }
                    }
                    XCTAssertEqual(w.count, rows * blocks * blockBytes)
                    let n = blocks * 32, x = randomFloats(tokens * n, scale: 2)
                    var q = [UInt8](repeating: 0, count: tokens * blocks * activation)
                    for t in 0..<tokens {
                        q.withUnsafeMutableBytes { qp in
                            x.withUnsafeBufferPointer { xp in
                                if type == 3 { rk_quantize_row_q8_1(xp.baseAddress! + t * n, qp.baseAddress! + t * blocks * activation, Int32(n)) }
                                else { rk_quantize_row_q8_0(xp.baseAddress! + t * n, qp.baseAddress! + t * blocks * activation, Int32(n)) }
                            }
                        }
                    }
                    var expected = [Float](repeating: .nan, count: tokens * rows), got = expected
                    rk_matmul_quant_reference(Int32(type), w, blocks * blockBytes, 0, Int32(rows), q, blocks * activation, Int32(tokens), &expected, rows, Int32(n))
                    rk_matmul_quant(Int32(type), w, blocks * blockBytes, 0, Int32(rows), q, blocks * activation, Int32(tokens), &got, rows, Int32(n))
                    XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "\(path) type \(type) rows \(rows) tokens \(tokens) blocks \(blocks)")
                    // A row range that does not start at 0.
                    var part = [Float](repeating: .nan, count: tokens * rows)
                    rk_matmul_quant(Int32(type), w, blocks * blockBytes, 1, Int32(rows), q, blocks * activation, Int32(tokens), &part, rows, Int32(n))
                    for t in 0..<tokens { for r in 1..<rows { XCTAssertEqual(part[t * rows + r].bitPattern, expected[t * rows + r].bitPattern) } }
                }
            }
        }
    }

    /// The multi-query attention kernels (prefill blocks and the three-phase long decode) give exactly
    /// `Attention.dense`'s bits for every query.
    /// Query groups of 1–4 heads (the kernels take 3 or, with AVX-512, 4 queries at a time in decode, 12 in
    /// prefill), the head widths in use (Gemma 3's 256 with one KV head for 4 query heads, whose short decode
    /// splits the group's heads between threads; 96 for the 32-dim AVX-512 passes), KV groups whole on a thread
    /// or split between two (1 and 3 groups on 2 threads), every kernel path: the batched kernels agree bit for
    /// bit with one query at a time.
    /// Attention scores (both orders) are the same bits at every kernel level, for query group sizes around
    /// each kernel's (1, 4, 12) and key ranges that end mid-group.
    func testAttentionScoresAgreeAtEveryLevel() {
        for d in [64, 256] {
            for (nq, j0, j1) in [(1, 0, 9), (5, 3, 40), (13, 0, 17), (12, 8, 8 + 64)] {
                let keys = randomFloats(j1 * d, scale: 3).map { Float16($0).bitPattern }, q = randomFloats(nq * d, scale: 2)
                for batched in [Int32(0), 1] {
                    var outputs: [[UInt32]] = []
                    forEachPath { _ in
                        var scores = [Float](repeating: .nan, count: nq * j1)
                        rk_attn_scores(q, d, Int32(nq), keys, Int32(d), Int32(j0), Int32(j1), 0.0625, &scores, j1, batched)
                        outputs.append((0..<nq).flatMap { i in scores[(i * j1 + j0)..<(i * j1 + j1)].map(\.bitPattern) })
                    }
                    XCTAssertGreaterThan(outputs.count, 1)
                    for o in outputs { XCTAssertEqual(o, outputs.last!, "d \(d), \(nq) queries, keys \(j0)..<\(j1), batched \(batched)") }
                }
            }
        }
    }

    func testCausalAttentionIsBitExactWithPerQueryAttention() {
        let shapes = [AttentionShape(layers: 1, queryHeads: 6, kvHeads: 2, headDim: 64),
                      AttentionShape(layers: 1, queryHeads: 8, kvHeads: 2, headDim: 128),
                      AttentionShape(layers: 1, queryHeads: 2, kvHeads: 1, headDim: 64),
                      AttentionShape(layers: 1, queryHeads: 2, kvHeads: 2, headDim: 32),
                      AttentionShape(layers: 1, queryHeads: 9, kvHeads: 3, headDim: 64),
                      AttentionShape(layers: 1, queryHeads: 4, kvHeads: 1, headDim: 256),
                      AttentionShape(layers: 1, queryHeads: 8, kvHeads: 2, headDim: 96)]
        for shape in shapes {
            for kvType in KVCacheType.allCases {
                let typed = AttentionShape(layers: 1, queryHeads: shape.queryHeads, kvHeads: shape.kvHeads, headDim: shape.headDim, kvType: kvType)
                forEachPath { path in checkCausalAttention(shape: typed, path: path) }
            }
        }
    }

    private func checkCausalAttention(shape: AttentionShape, path: String) {
        let d = shape.headDim
        for (before, tokens) in [(0, 9), (37, 6), (1500, 1), (200, 1), (1030, 3), (777, 1)] {
            let streams = (0..<shape.kvHeads).map { _ in KVStream(headDim: d, kvType: shape.kvType) }
            let total = before + tokens
            let keys = randomFloats(total * shape.kvHeads * d, scale: 3), values = randomFloats(total * shape.kvHeads * d, scale: 2)
            let queries = randomFloats(tokens * shape.queryHeads * d, scale: 3)
            keys.withUnsafeBufferPointer { k in
                values.withUnsafeBufferPointer { v in
                    queries.withUnsafeBufferPointer { q in
                        for (h, stream) in streams.enumerated() {
                            for t in 0..<total {
                                let o = (t * shape.kvHeads + h) * d
                                stream.append(key: k.baseAddress! + o, value: v.baseAddress! + o, position: t)
                            }
                        }
                        let input = AttentionInput(queries: q.baseAddress!, keys: k.baseAddress!, values: v.baseAddress!,
                                                   tokens: tokens, firstPosition: before)
                        var got = [Float](repeating: .nan, count: tokens * shape.queryHeads * d), expected = got
                        Attention.causal(input, streams: streams, visibleBefore: before, shape: shape, output: &got)
                        expected.withUnsafeMutableBufferPointer { e in
                            for t in 0..<tokens {
                                for h in 0..<shape.queryHeads {
                                    let o = (t * shape.queryHeads + h) * d
                                    Attention.dense(query: q.baseAddress! + o, stream: streams[h / shape.groupSize], count: before + t + 1,
                                                    scale: shape.scale, output: e.baseAddress! + o, batched: tokens > 1)
                                }
                            }
                        }
                        XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "\(path) \(shape) before \(before) tokens \(tokens)")
                    }
                }
            }
        }
    }

    func testHalfPrecisionKernels() {
        let x = randomFloats(100, scale: 50) + [0, -0.0, 1e-7, 6e-5, 65504, -65519, 1e9]
        forEachPath { path in
            var h = [UInt16](repeating: 0, count: x.count), back = [Float](repeating: 0, count: x.count)
            rk_f32_to_f16(x, &h, Int32(x.count))
            rk_f16_to_f32(h, &back, Int32(x.count))
            for i in x.indices {
                XCTAssertEqual(h[i], Float16(x[i]).bitPattern, "\(path) f32→f16 of \(x[i])")
                XCTAssertEqual(back[i], Float(Float16(x[i])), "\(path) f16→f32 of \(x[i])")
            }
            let a = randomFloats(77), b = randomFloats(77)
            let ah = a.map { Float16($0).bitPattern }
            let expected = zip(a, b).reduce(Float(0)) { $0 + Float(Float16($1.0)) * $1.1 }
            XCTAssertEqual(rk_dot_f16_f32(ah, b, 77), expected, accuracy: 1e-4, path)
            XCTAssertEqual(rk_dot_f32(a, b, 77), zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }, accuracy: 1e-4, path)
            // Page scores: rows of y accumulate strip after strip, each step one fused multiply-add, over
            // columns [i0, 77) (the rest untouched); strips of f16 values, or of int8 values times a scale each.
            for (rows, i0) in [(1, 0), (3, 0), (5, 0), (3, 16), (2, 13)] {
                let strips = (0..<4).map { _ in randomFloats(77).map { Float16($0).bitPattern } }
                let byteStrips = (0..<4).map { s in (0..<77).map { Int8(truncatingIfNeeded: s * 37 + $0 * 11 - 128) } }
                let scales = randomFloats(4, scale: 0.1)
                let coefficients = randomFloats(4 * rows, scale: 2)
                var y = randomFloats(rows * 77), expected = y, yBytes = y, expectedBytes = y
                for s in 0..<4 {
                    for r in 0..<rows {
                        for i in i0..<77 {
                            expected[r * 77 + i].addProduct(coefficients[s * rows + r], Float(Float16(bitPattern: strips[s][i])))
                            expectedBytes[r * 77 + i].addProduct(coefficients[s * rows + r], Float(byteStrips[s][i]) * scales[s])
                        }
                    }
                }
                strips[0].withUnsafeBufferPointer { s0 in strips[1].withUnsafeBufferPointer { s1 in
                    strips[2].withUnsafeBufferPointer { s2 in strips[3].withUnsafeBufferPointer { s3 in
                        let pointers = [s0, s1, s2, s3].map { Optional(UnsafeRawPointer($0.baseAddress!)) }
                        rk_strip_scores(pointers, nil, 4, coefficients, Int32(rows), &y, 77, Int32(i0), 77)
                    } }
                } }
                byteStrips[0].withUnsafeBufferPointer { s0 in byteStrips[1].withUnsafeBufferPointer { s1 in
                    byteStrips[2].withUnsafeBufferPointer { s2 in byteStrips[3].withUnsafeBufferPointer { s3 in
                        let pointers = [s0, s1, s2, s3].map { Optional(UnsafeRawPointer($0.baseAddress!)) }
                        rk_strip_scores(pointers, scales, 4, coefficients, Int32(rows), &yBytes, 77, Int32(i0), 77)
                    } }
                } }
                XCTAssertEqual(yBytes.map(\.bitPattern), expectedBytes.map(\.bitPattern), "\(path) int8 rows \(rows) from \(i0)")
                XCTAssertEqual(y.map(\.bitPattern), expected.map(\.bitPattern), "\(path) rows \(rows) from \(i0)")
            }
        }
    }

    /// The vectorised expf (HSA's page softmax) gives libm's expf bit for bit: across the range softmax
    /// arguments take (x ≤ 0), near the thresholds where glibc changes path, and for inf and NaN.
    func testExpfArrayMatchesLibm() {
        var rng = Xoshiro256StarStar(seed: 41)
        var x = (0..<200_000).map { _ in -Float.random(in: 0...110, using: &rng) }
        x += (0..<20_000).map { _ in Float.random(in: -1...1, using: &rng) * Float.random(in: 0...1e-3, using: &rng) }
        x += (0..<20_000).map { _ in Float(bitPattern: UInt32.random(in: 0...UInt32.max, using: &rng)) }
        for edge: Float in [-87.33655, -88, -88.72283, -103.27893, -103.972084, -104, -79.99999, -80, -80.00001, 80, 88.7, 89,
                            0, -0.0, 1e-30, -Float.leastNonzeroMagnitude, .infinity, -.infinity, .nan, .greatestFiniteMagnitude] {
            x += [edge, edge.nextUp, edge.nextDown]
        }
        forEachPath { path in
            var y = [Float](repeating: 0, count: x.count)
            rk_expf_array(x, &y, Int32(x.count))
            var mismatches = 0
            for i in x.indices {
                let expected = expf(x[i])
                if !(y[i].bitPattern == expected.bitPattern || (y[i].isNaN && expected.isNaN)) {
                    mismatches += 1
                    if mismatches <= 5 { XCTFail("\(path): expf(\(x[i])) = \(y[i]), libm \(expected)") }
                }
            }
            XCTAssertEqual(mismatches, 0, path)
            // In place (HSA's softmax exponentiates its own buffer): the lanes that fall back to libm read the
            // arguments, not the results already stored over them.
            var z = x
            z.withUnsafeMutableBufferPointer { rk_expf_array($0.baseAddress!, $0.baseAddress!, Int32(x.count)) }
            XCTAssertEqual(z.map(\.bitPattern), y.map(\.bitPattern), "\(path) in place")
        }
    }

    /// The quickselect top-k (on every path: its keys are made 16 at a time with AVX-512) returns what the heap
    /// selection returns (same keys, best first), and a full sort's prefix: random values with ties and NaN, already
    /// sorted and reversed orders, all-equal values, every size class of k (a sampled pivot that passes too few
    /// keys for small k, the usual case for a tenth).
    func testTopIndicesQuickselectMatchesHeap() {
        var rng = Xoshiro256StarStar(seed: 47)
        var inputs: [[Float]] = []
        for n in [1, 2, 16, 17, 33, 64, 65, 200, 480, 2000, 40_000] {
            inputs.append((0..<n).map { _ in Float.random(in: -1...1, using: &rng) })
            inputs.append((0..<n).map { _ in Float(Int.random(in: -3...3, using: &rng)) })
            inputs.append((0..<n).map(Float.init))
            inputs.append((0..<n).map { Float(n - $0) })
            inputs.append(Array(repeating: 0.5, count: n))
        }
        inputs.append([.nan, -0.0, 0, .infinity, -.infinity, 1, .nan, 2] + (0..<40).map { _ in Float.random(in: -1...1, using: &rng) })
        forEachPath { path in
            for values in inputs {
                let n = values.count
                let key = { (i: Int) -> Float in values[i].isNaN ? -.infinity : values[i] }
                let order = n <= 2000 ? values.indices.sorted { key($0) > key($1) || (key($0) == key($1) && $0 < $1) } : nil
                for k in Set([1, 2, n / 10, n / 3, n / 2, n - 1, n, n + 3, 64, 65]) where k > 0 {
                    var fast = [Int32](repeating: -1, count: k), heap = fast
                    let count = rk_top_indices(values, Int32(n), Int32(k), &fast)
                    XCTAssertEqual(count, rk_top_indices_heap(values, Int32(n), Int32(k), &heap))
                    XCTAssertEqual(fast, heap, "\(path) n \(n) k \(k)")
                    if let order { XCTAssertEqual(fast.prefix(Int(count)).map(Int.init), Array(order.prefix(k)), "\(path) n \(n) k \(k)") }
                }
            }
        }
    }

    /// HSA's page softmax gives a plain Swift twin's bits on every path: page counts around the vector widths,
    /// a short last page, and logits with NaN, infinities and both zeros (the maximum's select skips NaN; of +0
    /// and −0 either may win without changing a result).
    func testPageProbabilitiesMatchReference() {
        var rng = Xoshiro256StarStar(seed: 43)
        func reference(_ s: [Float], inv: Float, pageSize: Int, last: Int, group: Int) -> [Float] {
            var m = -Float.infinity
            for x in s where x * inv >= m { m = x * inv }
            let e = s.map { expf($0 * inv - m) }
            var chains = [Double](repeating: 0, count: 8)   // page p in chain p mod 8, joined pairwise
            for p in e.indices { chains[p % 8] += Double(p + 1 == e.count ? last : pageSize) * Double(e[p]) }
            let z = ((chains[0] + chains[1]) + (chains[2] + chains[3])) + ((chains[4] + chains[5]) + (chains[6] + chains[7]))
            let scale = Float(1 / (z * Double(group)))
            return e.map { $0 * scale }
        }
        var cases: [[Float]] = [1, 3, 7, 8, 9, 15, 16, 17, 480, 735].map { n in (0..<n).map { _ in Float.random(in: -40...40, using: &rng) } }
        cases += [[0, -0.0, -1], [-0.0, 0, -0.0, -2, -3, -4, -5, -6, -7, -8], [.nan, 1, 2], [1, .nan, .infinity, 3, 4, 5, 6, 7, 8],
                  [-.infinity, -.infinity], Array(repeating: .nan, count: 9), [-.infinity, 2, -.infinity, 5, 5, 5, 5, 5, 5, 0]]
        forEachPath { path in
            for (c, s) in cases.enumerated() {
                for (inv, pageSize, group) in [(Float(0.3), 3, 3), (Float(1), 1, 1), (Float(0.125), 8, 4)] {
                    let last = max(1, pageSize - 1)
                    var out = [Float](repeating: 0, count: s.count)
                    rk_hsa_page_probabilities(s, Int32(s.count), inv, Int32(pageSize), Int32(last), Int32(group), &out)
                    let expected = reference(s, inv: inv, pageSize: pageSize, last: last, group: group)
                    XCTAssert(zip(out, expected).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) },
                              "\(path) case \(c): \(out.prefix(10)) vs \(expected.prefix(10))")
                }
            }
        }
    }

    /// The llama.cpp-order attention kernels give the same bits on the SIMD and the portable paths.
    func testAttentionKernelsAgreeAcrossPaths() {
        // Head dims the SIMD chunks do not divide (16 and 48 single-token, 12 batched) take the portable path, reading nothing past n.
        for (n, batched) in [(64, 1), (64, 0), (96, 0), (40, 1), (16, 0), (48, 0), (12, 1)] {
            let a = randomFloats(n, scale: 2).map { Float16($0).bitPattern }, b = randomFloats(n, scale: 2).map { Float16($0).bitPattern }
            var results: [Float] = []
            forEachPath { _ in results.append(rk_attn_dot(a, b, Int32(n), Int32(batched))) }
            XCTAssertEqual(results[0].bitPattern, results[1].bitPattern, "dot n=\(n) batched=\(batched)")
            let exact = zip(a, b).reduce(0.0) { $0 + Double(Float16(bitPattern: $1.0)) * Double(Float16(bitPattern: $1.1)) }
            XCTAssertEqual(Double(results[0]), exact, accuracy: 1e-3)
        }
        for n in [1, 7, 8, 29, 300] {
            let x = randomFloats(n, scale: 20) + [-.infinity]
            var outputs: [[Float]] = []
            forEachPath { _ in var y = x; rk_attn_softmax(&y, Int32(y.count)); outputs.append(y) }
            XCTAssertEqual(outputs[0].map(\.bitPattern), outputs[1].map(\.bitPattern), "softmax n=\(n)")
            let m = x.max()!, e = x.map { Foundation.exp(Double($0 - m)) }, total = e.reduce(0, +)
            for i in x.indices { XCTAssertEqual(Double(outputs[0][i]), e[i] / total, accuracy: 1e-6) }
        }
        let d = 64, count = 45
        let p = randomFloats(count).map { Float16(abs($0)).bitPattern }, v = randomFloats(count * d).map { Float16($0).bitPattern }
        let slots: [Int32] = (0..<Int32(count)).reversed()
        for batched: Int32 in [0, 1] {
            var outputs: [[Float]] = []
            forEachPath { _ in
                var out = [Float](repeating: 0, count: d), gathered = out
                rk_attn_values(p, v, nil, Int32(count), Int32(d), &out, batched)
                rk_attn_values(Array(p.reversed()), v, slots, Int32(count), Int32(d), &gathered, batched)
                outputs.append(out)
                for i in 0..<d { XCTAssertEqual(gathered[i], out[i], accuracy: 1e-4) }
            }
            XCTAssertEqual(outputs[0].map(\.bitPattern), outputs[1].map(\.bitPattern), "values batched=\(batched)")
        }
    }

    /// A group's heads over shared, gathered slots give each head's `sparse` result bit for bit.
    func testSparseGroupIsBitExactWithSparsePerHead() {
        for (d, heads, batched, kvType) in [(64, 3, false, KVCacheType.f16), (128, 4, false, .f16), (48, 2, true, .f16),
                                            (64, 3, false, .q8_0), (128, 4, false, .q4_0), (64, 3, false, KVCacheType(key: .q8_0, value: .q4_0))] {
            let stream = KVStream(headDim: d, kvType: kvType)
            for t in 0..<700 { stream.append(key: randomFloats(d, scale: 3), value: randomFloats(d), position: t) }
            let slots = (0..<150).map { _ in Int32.random(in: 0..<700) }
            let queries = randomFloats(heads * d, scale: 3)
            forEachPath { path in
                var group = [Float](repeating: .nan, count: heads * d), single = group
                slots.withUnsafeBufferPointer { s in
                    Attention.sparseGroup(queries: queries, heads: heads, stream: stream, slots: s, scale: 0.1, output: &group, batched: batched)
                    single.withUnsafeMutableBufferPointer { out in
                        for h in 0..<heads {
                            Attention.sparse(query: Array(queries[(h * d)..<((h + 1) * d)]), stream: stream, slots: s, scale: 0.1,
                                             output: out.baseAddress! + h * d, batched: batched)
                        }
                    }
                }
                XCTAssertEqual(group.map(\.bitPattern), single.map(\.bitPattern), "\(path) d \(d) heads \(heads) \(kvType)")
            }
        }
    }

    func testAttentionMatchesReference() {
        let d = 64, n = 37
        let stream = KVStream(headDim: d)
        let keys = (0..<n).map { _ in randomFloats(d) }, values = (0..<n).map { _ in randomFloats(d) }
        for j in 0..<n { stream.append(key: keys[j], value: values[j], position: 100 + j) }
        XCTAssertEqual(stream.count, n)
        XCTAssertEqual(stream.positions[5], 105)
        let q = randomFloats(d, scale: 3)
        var out = [Float](repeating: 0, count: d)
        Attention.dense(query: q, stream: stream, count: n, scale: 0.125, output: &out)
        let expected = Attention.denseReference(query: q, keys: keys, values: values, scale: 0.125)
        for i in 0..<d { XCTAssertEqual(out[i], expected[i], accuracy: 2e-3) }

        // Sparse over every slot equals dense; over one slot returns that value row.
        var sparse = [Float](repeating: 0, count: d)
        let all = (0..<Int32(n)).map { $0 }
        all.withUnsafeBufferPointer { Attention.sparse(query: q, stream: stream, slots: $0, scale: 0.125, output: &sparse) }
        XCTAssertEqual(sparse.map(\.bitPattern), out.map(\.bitPattern))
        [Int32(7)].withUnsafeBufferPointer { Attention.sparse(query: q, stream: stream, slots: $0, scale: 0.125, output: &sparse) }
        for i in 0..<d { XCTAssertEqual(sparse[i], Float(Float16(values[7][i]))) }

        // Eviction keeps the chosen slots in order with their positions and frees the rest.
        stream.retain(slots: [3, 30, 7])
        XCTAssertEqual(stream.count, 3)
        XCTAssertEqual([stream.positions[0], stream.positions[1], stream.positions[2]], [103, 130, 107])
        XCTAssertEqual(stream.capacity, 3)
        XCTAssertEqual(stream.halfKeys[2 * d + 5], Float16(keys[7][5]).bitPattern)
        // Removing a run of slots moves the later ones down in order and keeps the capacity.
        stream.remove(slots: 1..<2)
        XCTAssertEqual(stream.count, 2)
        XCTAssertEqual([stream.positions[0], stream.positions[1]], [103, 107])
        XCTAssertEqual((0..<d).map { stream.halfValues[d + $0] }, values[7].map { Float16($0).bitPattern })
        XCTAssertEqual((0..<d).map { stream.halfKeys[$0] }, keys[3].map { Float16($0).bitPattern })
        XCTAssertEqual(stream.capacity, 3)
        stream.removeAll()
        XCTAssertEqual(stream.allocatedBytes, 0)
    }
}
