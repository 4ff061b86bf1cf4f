import CKernels
import Foundation
import RocketKV
import XCTest

/// Plain Swift references for the K-quant and Q5_0 kernels. The weights' integers come from the library's
/// `dequantize` (checked against gguf-py's vectors) of each block with its float scales set to 1 or 0, the
/// activations from a plain transcription of ggml's quantize_row_q8_K_ref; the float steps are those of ggml's AVX2
/// ggml_vec_dot_* kernels: 8 lanes (lane l holds the elements e with e % 32 / 4 == l), each step spelled out.
extension ReferenceKernels {
    static func half(_ bytes: [UInt8], _ offset: Int) -> Float {
        Float(Float16(bitPattern: UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8))
    }

    static func setHalf(_ bytes: inout [UInt8], _ offset: Int, _ value: Float16) {
        bytes[offset] = UInt8(value.bitPattern & 0xff)
        bytes[offset + 1] = UInt8(value.bitPattern >> 8)
    }

    static func dequantized(_ type: GGMLType, _ block: [UInt8], count: Int) -> [Float] {
        block.withUnsafeBytes { dequantize(type, from: $0.baseAddress!, count: count) }
    }

    /// ggml's hsum_float_8: high half plus low half, then movehl, then movehdup.
    static func hsum8(_ a: [Float]) -> Float { ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])) }

    /// quantize_row_q8_K_ref on one 256-block: the scale from the first element of the largest magnitude, with its
    /// sign (iscale = −127/max), values rounded half to even and capped at 127, d = 1/iscale, sums of 16 values.
    static func quantizeQ8_K(_ x: ArraySlice<Float>) -> (d: Float, q: [Int8], sums: [Int16]) {
        var max: Float = 0, amax: Float = 0
        for v in x where abs(v) > amax { amax = abs(v); max = v }
        if amax == 0 { return (0, [Int8](repeating: 0, count: 256), [Int16](repeating: 0, count: 16)) }
        let iscale = -127 / max
        let q = x.map { Int8(Swift.min(127, (iscale * $0).rounded(.toNearestOrEven))) }
        let sums = (0..<16).map { g in Int16(q[(16 * g)..<(16 * g + 16)].reduce(0) { $0 + Int($1) }) }
        return (1 / iscale, q, sums)
    }

    /// A Q4_K, Q5_K or Q6_K row with f32 activations quantized to Q8_K (ggml_vec_dot_q{4,5,6}_K_q8_K on AVX2).
    static func dotK(_ type: GGMLType, _ w: [UInt8], _ x: [Float]) -> Float {
        let size = type.bytesPerBlock, dOffset = type == .q6_K ? 208 : 0
        var acc = [Float](repeating: 0, count: 8), accm = [Float](repeating: 0, count: 4), summs: Float = 0
        for b in 0..<(x.count / 256) {
            var block = Array(w[(b * size)..<((b + 1) * size)])
            let (dx, q8, sums) = quantizeQ8_K(x[(256 * b)..<(256 * b + 256)])
            // scale·q (Q6_K: scale·(q − 32)) with d = 1, dmin = 0.
            let d = half(block, dOffset)
            setHalf(&block, dOffset, 1)
            if type != .q6_K { setHalf(&block, 2, 0) }
            let products = dequantized(type, block, count: 256)
            var lanes = [Int](repeating: 0, count: 8)
            for e in 0..<256 { lanes[e % 32 / 4] += Int(products[e]) * Int(q8[e]) }
            if type == .q6_K {
                // The lanes hold scale·q with q unsigned (q − 32, plus 32); the offset comes off lane m as
                // 32·(Σx(2m)·scale[2m] + Σx(2m+1)·scale[2m+1]) from the activations' sums of 16.
                let scales = (0..<16).map { Int(Int8(bitPattern: block[192 + $0])) }
                for e in 0..<256 { lanes[e % 32 / 4] += 32 * scales[e / 16] * Int(q8[e]) }
                for m in 0..<8 { lanes[m] -= 32 * (Int(sums[2 * m]) * scales[2 * m] + Int(sums[2 * m + 1]) * scales[2 * m + 1]) }
            }
            for l in 0..<8 { acc[l].addProduct(dx * d, Float(lanes[l])) }
            guard type != .q6_K else { continue }
            // −min per element with d = 0, dmin = 1; term s = min of sub-block s times its activations' sum.
            let dmin = half(Array(w[(b * size)..<((b + 1) * size)]), 2)
            setHalf(&block, 0, 0)
            setHalf(&block, 2, 1)
            let negativeMins = dequantized(type, block, count: 256)
            let terms = (0..<8).map { s in -Int(negativeMins[32 * s]) * q8[(32 * s)..<(32 * s + 32)].reduce(0) { $0 + Int($1) } }
            if type == .q4_K {
                for k in 0..<4 { accm[k].addProduct(-dx * dmin, Float(terms[2 * k] + terms[2 * k + 1])) }
            } else {
                summs.addProduct(-dx * dmin, Float(terms.reduce(0, +)))
            }
        }
        switch type {
        case .q4_K: return hsum8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]))
        case .q5_K: return hsum8(acc) + summs
        default: return hsum8(acc)
        }
    }

    /// The same row in the order of llama.cpp's tiled K-quant matmul (batches of ≥ 8 rows): per super-block the
    /// exact S = Σ (scale·q) · q8 (Q6_K: scale·(q − 32)) and M = Σ_s min_s · Σx(s), res = d·S, then res − dmin·M
    /// fused, then acc + res·d_x fused, from 0.
    static func dotKTiled(_ type: GGMLType, _ w: [UInt8], _ x: [Float]) -> Float {
        let size = type.bytesPerBlock, dOffset = type == .q6_K ? 208 : 0
        var acc: Float = 0
        for b in 0..<(x.count / 256) {
            var block = Array(w[(b * size)..<((b + 1) * size)])
            let (dx, q8, _) = quantizeQ8_K(x[(256 * b)..<(256 * b + 256)])
            let d = half(block, dOffset), dmin = type == .q6_K ? 0 : half(block, 2)
            setHalf(&block, dOffset, 1)
            if type != .q6_K { setHalf(&block, 2, 0) }
            let products = dequantized(type, block, count: 256)
            var res = d * Float((0..<256).reduce(0) { $0 + Int(products[$1]) * Int(q8[$1]) })
            if type != .q6_K {
                setHalf(&block, 0, 0)
                setHalf(&block, 2, 1)
                let negativeMins = dequantized(type, block, count: 256)
                let M = (0..<256).reduce(0) { $0 - Int(negativeMins[$1]) * Int(q8[$1]) }
                res.addProduct(-dmin, Float(M))
            }
            acc.addProduct(res, dx)
        }
        return acc
    }

    /// A Q5_0 row with f32 activations quantized to Q8_0 (ggml_vec_dot_q5_0_q8_0 on AVX2).
    static func dotQ5_0(_ w: [UInt8], _ x: [Float]) -> Float {
        var acc = [Float](repeating: 0, count: 8)
        for b in 0..<(x.count / 32) {
            var block = Array(w[(b * 22)..<(b * 22 + 22)])
            let dw = half(block, 0)
            setHalf(&block, 0, 1)
            let q = dequantized(.q5_0, block, count: 32)   // q − 16
            let (dx, qx) = quantizeBlock(x[(b * 32)..<(b * 32 + 32)])
            var lanes = [Int](repeating: 0, count: 8)
            for e in 0..<32 { lanes[e / 4] += Int(q[e]) * Int(qx[e]) }
            for l in 0..<8 { acc[l].addProduct(dw * half(dx), Float(lanes[l])) }
        }
        return hsum8(acc)
    }
}

extension KernelTests {
    static let kQuantTypes: [GGMLType] = [.q4_K, .q5_K, .q6_K]

    /// Random blocks of `type` (K-quants or Q5_0) with finite scales of either sign.
    func randomRow(_ type: GGMLType, blocks: Int) -> [UInt8] {
        let halves = type == .q6_K ? [208] : type == .q5_0 ? [0] : [0, 2]
        var bytes: [UInt8] = []
        for _ in 0..<blocks {
            var block = (0..<type.bytesPerBlock).map { _ in UInt8.random(in: 0...255) }
            for offset in halves { ReferenceKernels.setHalf(&block, offset, Float16(Float.random(in: -0.1...0.1))) }
            bytes += block
        }
        return bytes
    }

    /// `x` quantized by the C kernel to the weight type's activation format (Q8_K or Q8_0).
    func quantizedActivations(_ type: GGMLType, _ x: [Float]) -> [UInt8] {
        let activation: GGMLType = type == .q5_0 ? .q8_0 : .q8_K
        var q = [UInt8](repeating: 0, count: activation.byteCount(elements: x.count))
        if activation == .q8_K { rk_quantize_row_q8_K(x, &q, Int32(x.count)) } else { rk_quantize_row_q8_0(x, &q, Int32(x.count)) }
        return q
    }

    /// The row-dot llama.cpp takes for a batch of `tokens` rows: the K-quants' tiled order from 8 rows on.
    func vecDot(_ type: GGMLType, _ w: [UInt8], _ q: [UInt8], n: Int, tokens: Int) -> Float {
        guard tokens >= 8 else { return vecDot(type, w, q, n: n) }
        switch type {
        case .q4_K: return rk_vec_dot_q4_K_q8_K_tiled(Int32(n), w, q)
        case .q5_K: return rk_vec_dot_q5_K_q8_K_tiled(Int32(n), w, q)
        case .q6_K: return rk_vec_dot_q6_K_q8_K_tiled(Int32(n), w, q)
        default: return vecDot(type, w, q, n: n)
        }
    }

    func vecDot(_ type: GGMLType, _ w: [UInt8], _ q: [UInt8], n: Int) -> Float {
        switch type {
        case .q4_K: return rk_vec_dot_q4_K_q8_K(Int32(n), w, q)
        case .q5_K: return rk_vec_dot_q5_K_q8_K(Int32(n), w, q)
        case .q6_K: return rk_vec_dot_q6_K_q8_K(Int32(n), w, q)
        default: return rk_vec_dot_q5_0_q8_0(Int32(n), w, q)
        }
    }

    func testQ8KQuantizationMatchesReference() {
        var x = randomFloats(256 * 5, scale: 3) + [Float](repeating: 0, count: 256)   // an all-zero block
        x[256 + 9] = -7; x[256 + 200] = 7                                               // a tie: the first sets the sign
        for i in 512..<768 { x[i] *= 1e-30 }                                            // a tiny scale
        for i in 768..<1024 { x[i] = Float(i % 254) - 126.5 }                           // iscale 1: ties to even
        x[800] = -127
        forEachPath { path in
            var q = [UInt8](repeating: 0xEE, count: 292 * 6)
            rk_quantize_row_q8_K(x, &q, Int32(x.count))
            for b in 0..<6 {
                let (d, values, sums) = ReferenceKernels.quantizeQ8_K(x[(256 * b)..<(256 * b + 256)])
                var expected = withUnsafeBytes(of: d.bitPattern.littleEndian) { Array($0) }
                expected += values.map { UInt8(bitPattern: $0) }
                for s in sums { expected += [UInt8(UInt16(bitPattern: s) & 0xff), UInt8(UInt16(bitPattern: s) >> 8)] }
                XCTAssertEqual(Array(q[(292 * b)..<(292 * b + 292)]), expected, "\(path) block \(b)")
            }
        }
    }

    /// The gemm's activations (`_x4`: a positive maximum wins a tie of magnitudes, as llama.cpp's x86 quantizer)
    /// are the same bytes at every level, and differ from the plain ones only on the tied block.
    func testQ8KGemmQuantizationAgreesAtEveryLevel() {
        var x = randomFloats(256 * 3, scale: 3)
        x[9] = -7; x[200] = 7        // a tie of magnitudes, the negative first
        x[256 + 5] = -9              // a negative maximum without a tie
        var outputs: [[UInt8]] = []
        var plain = [UInt8](repeating: 0, count: 292 * 3)
        forEachPath { _ in
            var q = [UInt8](repeating: 0xEE, count: 292 * 3)
            rk_quantize_row_q8_K_x4(x, &q, Int32(x.count))
            outputs.append(q)
            rk_quantize_row_q8_K(x, &plain, Int32(x.count))
        }
        XCTAssertGreaterThan(outputs.count, 1)
        for q in outputs { XCTAssertEqual(q, outputs[0]) }
        func scale(_ q: [UInt8], _ b: Int) -> Float { q.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 292 * b, as: Float.self) } }
        XCTAssertEqual(scale(outputs[0], 0), -scale(plain, 0))   // the tie: max +7 instead of −7
        XCTAssertEqual(Array(outputs[0][292...]), Array(plain[292...]))
    }

    /// Kernels against the plain references, bit for bit, at every level.
    func testKQuantAndQ5_0DotsAreBitExactWithReference() {
        for type in Self.kQuantTypes + [.q5_0] {
            for blocks in [1, 3, 8] {
                for _ in 0..<10 {
                    let n = blocks * type.blockSize
                    let w = randomRow(type, blocks: blocks), x = randomFloats(n, scale: 2)
                    let expected = type == .q5_0 ? ReferenceKernels.dotQ5_0(w, x) : ReferenceKernels.dotK(type, w, x)
                    forEachPath { path in
                        let got = vecDot(type, w, quantizedActivations(type, x), n: n)
                        XCTAssertEqual(got.bitPattern, expected.bitPattern, "\(path) \(type) × \(blocks) blocks: \(got) vs \(expected)")
                    }
                }
            }
        }
    }

    func testTiledKQuantDotsAreBitExactWithReference() {
        var differs = 0
        for type in Self.kQuantTypes {
            for blocks in [1, 3, 8] {
                for _ in 0..<10 {
                    let n = blocks * 256
                    let w = randomRow(type, blocks: blocks), x = randomFloats(n, scale: 2)
                    let expected = ReferenceKernels.dotKTiled(type, w, x)
                    if expected != ReferenceKernels.dotK(type, w, x) { differs += 1 }
                    forEachPath { path in
                        let got = vecDot(type, w, quantizedActivations(type, x), n: n, tokens: 8)
                        XCTAssertEqual(got.bitPattern, expected.bitPattern, "\(path) \(type) × \(blocks) blocks: \(got) vs \(expected)")
                    }
                }
            }
        }
        XCTAssertGreaterThan(differs, 0, "the tiled order never rounded differently from ggml_vec_dot's")
    }

    /// The kernels read gguf-py's blocks (ReferenceVectors.known) as gguf-py's dequantizer does: the dot with
    /// quantized activations equals Σ dequantized weight · dequantized activation up to float rounding.
    func testKQuantKernelsAgreeWithGGUFPyDequantization() {
        for vector in ReferenceVectors.known where (Self.kQuantTypes + [.q5_0]).contains(vector.type) {
            let w = bytes(hex: vector.blocks), weights = floats(hex: vector.expected)
            let x = randomFloats(vector.count, scale: 2), q = quantizedActivations(vector.type, x)
            var exact = 0.0, magnitude = 0.0
            for i in 0..<vector.count {
                let activation: Double
                if vector.type == .q5_0 {
                    let block = i / 32
                    activation = Double(ReferenceKernels.half(q, 34 * block)) * Double(Int8(bitPattern: q[34 * block + 2 + i % 32]))
                } else {
                    let block = i / 256
                    let d = Float(bitPattern: UInt32(q[292 * block]) | UInt32(q[292 * block + 1]) << 8 | UInt32(q[292 * block + 2]) << 16 | UInt32(q[292 * block + 3]) << 24)
                    activation = Double(d) * Double(Int8(bitPattern: q[292 * block + 4 + i % 256]))
                }
                exact += Double(weights[i]) * activation
                magnitude += abs(Double(weights[i]) * activation)
            }
            forEachPath { path in
                let got = Double(vecDot(vector.type, w, q, n: vector.count))
                XCTAssertEqual(got, exact, accuracy: 1e-5 * magnitude + 1e-6, "\(path) \(vector.type)")
            }
        }
    }

    /// `matmul` quantizes activations to the weight's format and takes the integer kernels: its outputs are the
    /// row dots' bits (the K-quants' tiled order from 8 tokens), for one matrix, matrices sharing Q8_K activations, and a mix of Q8_K and Q8_0 ones.
    func testMatmulTakesKQuantAndQ5_0Kernels() {
        let types: [GGMLType] = Self.kQuantTypes + [.q5_0]
        XCTAssertTrue(Set(types).isSubset(of: WeightMatrix.integerKernelTypes))
        let rows = 11, columns = 512
        let weights = types.map { randomRow($0, blocks: rows * columns / $0.blockSize) }
        for tokens in [1, 3, 7, 8, 37] {
            let x = randomFloats(tokens * columns, scale: 2)
            var expected: [[Float]] = []
            for (type, w) in zip(types, weights) {
                var y = [Float](repeating: .nan, count: tokens * rows)
                for t in 0..<tokens {
                    let q = quantizedActivations(type, Array(x[(t * columns)..<((t + 1) * columns)]))
                    for r in 0..<rows {
                        let row = Array(w[(r * type.byteCount(elements: columns))..<((r + 1) * type.byteCount(elements: columns))])
                        y[t * rows + r] = vecDot(type, row, q, n: columns, tokens: tokens)
                    }
                }
                expected.append(y)
            }
            for group in [[0], [1], [2], [3], [0, 1, 2], [0, 3, 2]] {
                let data = group.map { i in UnsafeMutableRawBufferPointer.allocate(byteCount: weights[i].count, alignment: 64) }
                let outputs = group.map { _ in UnsafeMutableBufferPointer<Float>.allocate(capacity: tokens * rows) }
                defer { data.forEach { $0.deallocate() }; outputs.forEach { $0.deallocate() } }
                for (k, i) in group.enumerated() { data[k].copyBytes(from: weights[i]); outputs[k].initialize(repeating: .nan) }
                let matrices = group.enumerated().map { k, i in WeightMatrix(type: types[i], rows: rows, columns: columns, data: data[k].baseAddress!) }
                matmul(matrices, input: x, tokens: tokens, outputs: outputs.map { $0.baseAddress! }, scratch: MatmulScratch())
                for (k, i) in group.enumerated() {
                    XCTAssertEqual(outputs[k].map(\.bitPattern), expected[i].map(\.bitPattern), "\(types[i]) in \(group.map { types[$0] }), \(tokens) tokens")
                }
            }
        }
    }
}

/// llama.cpp's repacked Q4_K kernels (block_q4_Kx8; x86 ggml_gemv/gemm_q4_K_8x8_q8_K), reproduced in their float order.
extension ReferenceKernels {
    /// quantize_row_q8_K_ref, but + sets the sign when +max and −max tie in magnitude (ggml_quantize_mat_q8_K_4x8).
    static func quantizeQ8_Kx4(_ x: ArraySlice<Float>) -> (d: Float, q: [Int8], sums: [Int16]) {
        let amax = x.map(abs).max() ?? 0
        guard amax > 0, x.contains(amax), x.contains(-amax) else { return quantizeQ8_K(x) }
        let iscale = -127 / amax
        let q = x.map { Int8(Swift.min(127, (iscale * $0).rounded(.toNearestOrEven))) }
        let sums = (0..<16).map { g in Int16(q[(16 * g)..<(16 * g + 16)].reduce(0) { $0 + Int($1) }) }
        return (1 / iscale, q, sums)
    }

    /// A Q4_K row in the repacked order: per pair p of sub-blocks the exact integers I_p = Σ scale·q·q8 and
    /// M_p = Σ min·Σx; gemv fmas their per-super-block sums into acc and accm, gemm each pair; result acc − accm.
    static func dotQ4_KRepacked(_ w: [UInt8], _ x: [Float], gemm: Bool) -> Float {
        var acc: Float = 0, accm: Float = 0
        for b in 0..<(x.count / 256) {
            var block = Array(w[(b * 144)..<((b + 1) * 144)])
            let slice = x[(256 * b)..<(256 * b + 256)]
            let (dx, q8, _) = gemm ? quantizeQ8_Kx4(slice) : quantizeQ8_K(slice)
            let d = half(block, 0), dmin = half(block, 2)
            setHalf(&block, 0, 1); setHalf(&block, 2, 0)
            let products = dequantized(.q4_K, block, count: 256)
            setHalf(&block, 0, 0); setHalf(&block, 2, 1)
            let negativeMins = dequantized(.q4_K, block, count: 256)
            let I = (0..<4).map { p in (64 * p..<64 * p + 64).reduce(0) { $0 + Int(products[$1]) * Int(q8[$1]) } }
            let M = (0..<4).map { p in (64 * p..<64 * p + 64).reduce(0) { $0 - Int(negativeMins[$1]) * Int(q8[$1]) } }
            let groups = gemm ? (0..<4).map { [$0] } : [[0, 1, 2, 3]]
            for g in groups {
                acc.addProduct(Float(g.reduce(0) { $0 + I[$1] }), d * dx)
                accm.addProduct(Float(g.reduce(0) { $0 + M[$1] }), dmin * dx)
            }
        }
        return acc - accm
    }
}

extension KernelTests {
    func testRepackedQ4_KOrdersAreBitExactWithReference() {
        for blocks in [1, 3, 8] {
            for trial in 0..<10 {
                let n = blocks * 256
                let w = randomRow(.q4_K, blocks: blocks)
                var x = randomFloats(n, scale: 2)
                if trial == 0 { x[5] = -3; x[77] = 3 }   // a tie of magnitudes: the two quantizers differ
                for gemm in [false, true] {
                    let expected = ReferenceKernels.dotQ4_KRepacked(w, x, gemm: gemm)
                    forEachPath { path in
                        var q = [UInt8](repeating: 0, count: GGMLType.q8_K.byteCount(elements: n))
                        if gemm { rk_quantize_row_q8_K_x4(x, &q, Int32(n)) } else { rk_quantize_row_q8_K(x, &q, Int32(n)) }
                        let got = rk_vec_dot_q4_K_q8_K_repacked(Int32(n), w, q, gemm ? 1 : 0)
                        XCTAssertEqual(got.bitPattern, expected.bitPattern, "\(path) gemm \(gemm) × \(blocks) blocks: \(got) vs \(expected)")
                    }
                }
            }
        }
    }

    /// `matmul` takes the repacked order exactly where llama.cpp repacks (Q4_K, rows % 8 == 0): tokens below
    /// tokens − tokens % 4 in the gemm order, the rest in the gemv order; other row counts take
    /// ggml_vec_dot's order below 8 tokens and the tiled matmul's from 8.
    func testMatmulTakesRepackedQ4_KWhereLlamaCppRepacks() {
        let columns = 512
        for rows in [16, 11] {
            let w = randomRow(.q4_K, blocks: rows * columns / 256), rowBytes = GGMLType.q4_K.byteCount(elements: columns)
            for tokens in [1, 6, 37] {
                let x = randomFloats(tokens * columns, scale: 2)
                var y = [Float](repeating: .nan, count: tokens * rows)
                w.withUnsafeBytes { data in
                    matmul(WeightMatrix(type: .q4_K, rows: rows, columns: columns, data: data.baseAddress!), input: x, tokens: tokens,
                           output: &y, scratch: MatmulScratch())
                }
                for t in 0..<tokens {
                    let xt = Array(x[(t * columns)..<((t + 1) * columns)])
                    for r in 0..<rows {
                        let row = Array(w[(r * rowBytes)..<((r + 1) * rowBytes)])
                        let expected = rows % 8 == 0 ? ReferenceKernels.dotQ4_KRepacked(row, xt, gemm: t < tokens - tokens % 4)
                                     : tokens >= 8 ? ReferenceKernels.dotKTiled(.q4_K, row, xt) : ReferenceKernels.dotK(.q4_K, row, xt)
                        XCTAssertEqual(y[t * rows + r].bitPattern, expected.bitPattern, "rows \(rows) token \(t) of \(tokens) row \(r)")
                    }
                }
            }
        }
    }
}
