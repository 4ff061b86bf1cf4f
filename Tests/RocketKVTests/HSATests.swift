import CKernels
import Foundation
import RocketKV
import XCTest

final class HSATests: XCTestCase {
    typealias V = ConformanceVector
    /// Cache after stage 1 of §4.5 plus the decode token at position 48 (slot 21).
    let positions = Array(17...29) + Array(40...48)

    func metadata(pageSize: Int = 3) -> PageMetadata {
        let meta = PageMetadata(headDim: V.d, pageSize: pageSize)
        for p in positions { V.key(p).withUnsafeBufferPointer { meta.append(key: $0.baseAddress!) } }
        return meta
    }

    var decodeQueries: [Float] { V.query(0, 48) + V.query(1, 48) }

    func select(k2: Int, k1: Int = 4) -> HSASelection {
        let meta = metadata()
        return decodeQueries.withUnsafeBufferPointer { HSA.select(queries: $0.baseAddress!, groupSize: 2, metadata: meta, k1: k1, k2: k2) }
    }

    /// F32-input exact attention in Double (the §4.5 outputs are F64 of F32-representable inputs).
    func referenceOutput(head h: Int, slots: [Int32]) -> [Float] {
        let q = V.query(h, 48).map(Double.init)
        let z = slots.map { s in zip(q, V.key(positions[Int(s)])).reduce(0.0) { $0 + $1.0 * Double($1.1) } / Double(V.d).squareRoot() }
        let m = z.max()!
        let e = z.map { exp($0 - m) }, total = e.reduce(0, +)
        var o = [Double](repeating: 0, count: V.d)
        for (w, s) in zip(e, slots) { for i in 0..<V.d { o[i] += w / total * Double(V.value(positions[Int(s)])[i]) } }
        return o.map(Float.init)
    }

    /// Through the engine's f16 cache and `Attention.sparse` (q and probabilities rounded to f16 like llama.cpp).
    func engineOutput(slots: [Int32]) -> [Float] {
        let stream = KVStream(headDim: V.d)
        for p in positions { stream.append(key: V.key(p), value: V.value(p), position: p) }
        var out = [Float](repeating: 0, count: 2 * V.d)
        decodeQueries.withUnsafeBufferPointer { q in
            out.withUnsafeMutableBufferPointer { o in
                HSA.attend(queries: q.baseAddress!, groupSize: 2, stream: stream, slots: slots, scale: V.scale, output: o.baseAddress!)
            }
        }
        return out
    }

    func assertOutputs(_ slots: [Int32], _ o0: [Float], _ o1: [Float], file: StaticString = #filePath, line: UInt = #line) {
        let engine = engineOutput(slots: slots)
        for (h, expected) in [o0, o1].enumerated() {
            let reference = referenceOutput(head: h, slots: slots)
            for i in 0..<V.d {
                XCTAssertEqual(reference[i], expected[i], accuracy: 1e-5, "f32 path o[\(h)][\(i)]", file: file, line: line)
                XCTAssertEqual(engine[h * V.d + i], expected[i], accuracy: 2e-3, "engine o[\(h)][\(i)]", file: file, line: line)
            }
        }
    }

    func testConformanceVector() {
        let meta = metadata()
        XCTAssertEqual(meta.tokens, 22)
        XCTAssertEqual(meta.pages, 8)
        XCTAssertEqual(meta.tokens(inPage: 7), 1)
        let s = select(k2: 6)
        // a = Σ|q|, I1 and σ.
        let q0 = V.query(0, 48), q1 = V.query(1, 48)
        let a = (0..<8).map { abs(q0[$0]) + abs(q1[$0]) }
        let expectedA: [Float] = [1.033078, 1.234577, 1.365280, 1.422749, 1.409061, 1.330550, 1.197280, 1.022279]
        for i in 0..<8 { XCTAssertEqual(a[i], expectedA[i], accuracy: 1e-5) }
        XCTAssertEqual(s.dims, [3, 4, 2, 5])
        XCTAssertEqual(s.positive, [true, false, false, false])
        let s0: [Float] = [0.073524, -1.485897, 1.084959, -0.842906, -0.017289, -0.480936, -0.327456, -0.141701]
        let s1: [Float] = [0.721815, 2.644635, -1.534995, 2.041202, 0.440171, 1.591795, 0.947718, 0.485772]
        for p in 0..<8 {
            XCTAssertEqual(s.pageScores[0][p], s0[p], accuracy: 1e-5, "ŝ[0][\(p)]")
            XCTAssertEqual(s.pageScores[1][p], s1[p], accuracy: 1e-5, "ŝ[1][\(p)]")
        }
        XCTAssertEqual(s.temperatures[0], 2.041060, accuracy: 1e-5)
        XCTAssertEqual(s.temperatures[1], 2.144968, accuracy: 1e-5)
        let omega: [Float] = [0.042969, 0.055074, 0.047707, 0.048824, 0.039695, 0.045783, 0.040417, 0.038596]
        for p in 0..<8 { XCTAssertEqual(s.pageProbabilities[p], omega[p], accuracy: 1e-5, "ω[\(p)]") }
        // Only the pages k2 can need are ranked (⌈6/3⌉ + 1); with k2 = N the whole ranking.
        XCTAssertEqual(s.pageOrder, [1, 3, 2])
        XCTAssertEqual(select(k2: 22).pageOrder, [1, 3, 2, 5, 0, 6, 4, 7])
        XCTAssertEqual(s.slots, [3, 4, 5, 9, 10, 11])
        XCTAssertEqual(s.slots.map { positions[Int($0)] }, [20, 21, 22, 26, 27, 28])
        assertOutputs(s.slots,
                      [0.701299, 0.688520, 0.154683, -0.496215, -0.771587, -0.463037, 0.195930, 0.706621],
                      [0.373933, 0.742384, 0.549013, -0.059840, -0.623407, -0.715192, -0.265734, 0.384826])
    }

    func testConformanceK2Is9() {
        let s = select(k2: 9)
        XCTAssertEqual(s.slots, [3, 4, 5, 9, 10, 11, 6, 7, 8])
        XCTAssertEqual(Set(s.slots.map { positions[Int($0)] }), Set(20...28))
        assertOutputs(s.slots,
                      [0.672260, 0.882622, 0.425034, -0.354212, -0.865397, -0.721667, -0.031794, 0.682140],
                      [0.389841, 0.751694, 0.544680, -0.074537, -0.637346, -0.717824, -0.255067, 0.400719])
    }

    func testConformancePartialPageK2Is7() {
        // §16.2: the partially taken page gives its lowest slot.
        let s = select(k2: 7)
        XCTAssertEqual(s.slots, [3, 4, 5, 9, 10, 11, 6])
        XCTAssertEqual(positions[6], 23)
        assertOutputs(s.slots,
                      [0.629651, 0.830243, 0.402524, -0.329817, -0.812560, -0.680373, -0.033294, 0.638981],
                      [0.376021, 0.745457, 0.550745, -0.060759, -0.626282, -0.717848, -0.266160, 0.386952])
    }

    func testDiscriminatingChecks() {
        let meta = metadata(), s = select(k2: 9)
        // Raw ŝ summed over heads (no temperature, no softmax) ranks 3, 1, 5 — not our 1, 3, 2.
        let raw = (0..<8).map { s.pageScores[0][$0] + s.pageScores[1][$0] }
        let rawOrder = raw.indices.sorted { raw[$0] > raw[$1] }
        XCTAssertEqual(Array(rawOrder.prefix(3)), [3, 1, 5])
        // Each head's own signs instead of the group sign ranks 5, 6, 3.
        var omega = [Double](repeating: 0, count: 8)
        for h in 0..<2 {
            let q = V.query(h, 48)
            let scores = (0..<8).map { p in
                s.dims.reduce(0.0) { acc, i in acc + Double(q[i]) * Double(q[i] > 0 ? meta.maximum(page: p, dim: i) : meta.minimum(page: p, dim: i)) }
            }
            let tau = Double(s.temperatures[h])
            let e = scores.map { exp($0 / tau) }
            let z = (0..<8).reduce(0.0) { $0 + Double(meta.tokens(inPage: $1)) * e[$1] }
            for p in 0..<8 { omega[p] += e[p] / z / 2 }
        }
        let perHeadOrder = omega.indices.sorted { omega[$0] > omega[$1] }
        XCTAssertEqual(Array(perHeadOrder.prefix(3)), [5, 6, 3])
        XCTAssertEqual(Array(s.pageOrder.prefix(3)), [1, 3, 2])
    }

    func testMetadataIsIncrementalMinMax() {
        var rng = Xoshiro256StarStar(seed: 7)
        let d = 16, n = 53
        for P in [1, 3, 8] {
            let keys = (0..<n).map { _ in (0..<d).map { _ in Float.random(in: -3...3, using: &rng) } }
            let meta = PageMetadata(headDim: d, pageSize: P)
            meta.reserve(tokens: 5)   // forces re-layouts while growing
            for k in keys { k.withUnsafeBufferPointer { meta.append(key: $0.baseAddress!) } }
            XCTAssertEqual(meta.pages, (n + P - 1) / P)
            for p in 0..<meta.pages {
                let rows = keys[(p * P)..<min(n, (p + 1) * P)]
                for i in 0..<d {
                    XCTAssertEqual(meta.minimum(page: p, dim: i), rows.map { $0[i] }.min()!)
                    XCTAssertEqual(meta.maximum(page: p, dim: i), rows.map { $0[i] }.max()!)
                }
            }
        }
    }

    /// f16 metadata over f16 keys is exact: same bounds and same selection as F32 metadata; pages of one slot
    /// store a single transposed copy (d rows).
    func testHalfMetadataIsExactForHalfKeys() {
        var rng = Xoshiro256StarStar(seed: 3)
        let d = 32, n = 77, G = 3
        for P in [1, 2, 3, 5] {
            let keys = (0..<n).map { _ in (0..<d).map { _ in Float(Float16(Float.random(in: -4...4, using: &rng))) } }
            let a = PageMetadata(headDim: d, pageSize: P, precision: .f32), b = PageMetadata(headDim: d, pageSize: P, precision: .f16)
            for k in keys { k.withUnsafeBufferPointer { a.append(key: $0.baseAddress!); b.append(key: $0.baseAddress!) } }
            XCTAssertEqual(b.allocatedBytes * 2, a.allocatedBytes)
            XCTAssertEqual(b.rows, P == 1 ? d : 2 * d)
            for p in 0..<a.pages {
                for i in 0..<d {
                    XCTAssertEqual(a.minimum(page: p, dim: i), b.minimum(page: p, dim: i))
                    XCTAssertEqual(a.maximum(page: p, dim: i), b.maximum(page: p, dim: i))
                }
            }
            let q = (0..<(G * d)).map { _ in Float.random(in: -1...1, using: &rng) }
            let sa = q.withUnsafeBufferPointer { HSA.select(queries: $0.baseAddress!, groupSize: G, metadata: a, k1: 12, k2: 20) }
            let sb = q.withUnsafeBufferPointer { HSA.select(queries: $0.baseAddress!, groupSize: G, metadata: b, k1: 12, k2: 20) }
            XCTAssertEqual(sa.slots, sb.slots, "P=\(P)")
        }
    }

    /// The engine's HSA (steps split per head, the page softmax in C) agrees bit for bit with the plain
    /// sequence of operations in `HSAReference`: logits, temperatures, ω and the selected slots.
    func testSelectionMatchesPlainReferenceBitForBit() {
        var rng = Xoshiro256StarStar(seed: 23)
        for trial in 0..<24 {
            let G = [1, 2, 3, 4][trial % 4], d = [16, 64, 128, 256][(trial / 4) % 4], P = [1, 2, 3, 4, 5][trial % 5]
            let precision: PageMetadata.Precision = [.f32, .f16, .q8][trial % 3]
            let n = Int.random(in: 1...600, using: &rng)
            let meta = PageMetadata(headDim: d, pageSize: P, precision: precision)
            let fromHalves = PageMetadata(headDim: d, pageSize: P, precision: precision)   // the decode path's append
            var previous: [Float] = []
            for t in 0..<n {
                // Every seventh key repeats the one before, so that pages tie.
                let key = t % 7 == 6 ? previous : (0..<d).map { _ in Float(Float16(Float.random(in: -2...2, using: &rng))) }
                key.withUnsafeBufferPointer { meta.append(key: $0.baseAddress!) }
                rk_limit_simd(trial % 2 == 0 ? 0 : -1)   // both paths of the f16 bounds kernel
                key.map { Float16($0).bitPattern }.withUnsafeBufferPointer { fromHalves.append(halfKey: $0.baseAddress!) }
                rk_limit_simd(-1)
                previous = key
            }
            for p in 0..<meta.pages {
                for i in 0..<d {
                    XCTAssertEqual(meta.minimum(page: p, dim: i), fromHalves.minimum(page: p, dim: i))
                    XCTAssertEqual(meta.maximum(page: p, dim: i), fromHalves.maximum(page: p, dim: i))
                }
            }
            let q = (0..<(G * d)).map { _ in Float.random(in: -1...1, using: &rng) }
            let k1 = Int.random(in: 1...d, using: &rng), k2 = Int.random(in: 1...(n + 5), using: &rng)
            let engine = q.withUnsafeBufferPointer { HSA.select(queries: $0.baseAddress!, groupSize: G, metadata: meta, k1: k1, k2: k2) }
            let reference = HSAReference.select(queries: q, groupSize: G, metadata: meta, k1: k1, k2: k2)
            let context = "trial \(trial): G \(G) d \(d) P \(P) n \(n) k1 \(k1) k2 \(k2)"
            XCTAssertEqual(engine.dims, reference.dims, context)
            XCTAssertEqual(engine.pageScores.flatMap { $0 }.map(\.bitPattern), reference.scores.map(\.bitPattern), context)
            XCTAssertEqual(engine.temperatures.map(\.bitPattern), reference.temperatures.map(\.bitPattern), context)
            XCTAssertEqual(engine.pageProbabilities.map(\.bitPattern), reference.omega.map(\.bitPattern), context)
            XCTAssertEqual(engine.slots, reference.slots, context)
        }
    }

    /// With k1 = d and page size 1, HSA selects exactly the top-k2 tokens by group-mean softmax (τ = √d).
    func testFullDimensionsPageOneIsExactGroupTopK() {
        var rng = Xoshiro256StarStar(seed: 11)
        for trial in 0..<10 {
            let G = [1, 3, 4][trial % 3], d = [16, 64, 256][trial % 2 + trial / 8], n = Int.random(in: 20...300, using: &rng)
            let k2 = Int.random(in: 1...n, using: &rng)
            let keys = (0..<n).map { _ in (0..<d).map { _ in Float.random(in: -1...1, using: &rng) } }
            let q = (0..<(G * d)).map { _ in Float.random(in: -1...1, using: &rng) }
            let meta = PageMetadata(headDim: d, pageSize: 1)
            for k in keys { k.withUnsafeBufferPointer { meta.append(key: $0.baseAddress!) } }
            let selection = q.withUnsafeBufferPointer { HSA.select(queries: $0.baseAddress!, groupSize: G, metadata: meta, k1: d, k2: k2) }
            var omega = [Double](repeating: 0, count: n)
            for h in 0..<G {
                let z = keys.map { k in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(k[$1]) } / Double(d).squareRoot() }
                let m = z.max()!, e = z.map { exp($0 - m) }, total = e.reduce(0, +)
                for j in 0..<n { omega[j] += e[j] / total / Double(G) }
            }
            let expected = omega.indices.sorted { omega[$0] != omega[$1] ? omega[$0] > omega[$1] : $0 < $1 }.prefix(k2)
            XCTAssertEqual(selection.slots.map(Int.init), Array(expected), "trial \(trial)")
        }
    }
}
