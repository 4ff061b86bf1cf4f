import CKernels
import Foundation
import RocketKV
import XCTest

/// KV rows stored as ggml Q8_0 / Q4_0 blocks: the layout, the attention kernels against their plain reference
/// at every SIMD level, and HSA/Quest page bounds over the stored (dequantized) keys.
final class KVQuantizationTests: XCTestCase {
    func randomFloats(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in Float.random(in: -scale...scale) } }

    /// The quantized cache types: keys and values alike, and the mixed pairs (`q8_0/q4_0`, `q4_0/q8_0`).
    static let quantized = KVCacheType.allCases.filter(\.isQuantized)

    static func ggml(_ type: KVRowType) -> GGMLType { type == .q8_0 ? .q8_0 : .q4_0 }
    static func kernel(_ type: KVRowType) -> Int32 { type == .q8_0 ? RK_KV_Q8_0 : RK_KV_Q4_0 }

    /// A stream of `count` random rows of `type` and the rows as stored, dequantized by the GGUF reference
    /// (`dequantize`), which reads ggml's block layout independently of the C kernels.
    func stream(_ type: KVCacheType, headDim d: Int, count: Int) -> (KVStream, keys: [[Float]], values: [[Float]]) {
        let stream = KVStream(headDim: d, kvType: type)
        for t in 0..<count { stream.append(key: randomFloats(d, scale: 3), value: randomFloats(d, scale: 2), position: t) }
        return (stream, (0..<count).map { dequantize(Self.ggml(type.key), from: stream.keyRow($0), count: d) },
                (0..<count).map { dequantize(Self.ggml(type.value), from: stream.valueRow($0), count: d) })
    }

    /// Rows are ggml blocks (34 or 18 bytes per 32 values), keys and values each in its own type, read back exactly
    /// as the GGUF reference reads them, within one quantization step of the input.
    func testRowsAreGGMLBlocks() {
        let d = 64
        XCTAssertEqual(KVRowType.q8_0.rowBytes(headDim: d), 68)
        XCTAssertEqual(KVRowType.q4_0.rowBytes(headDim: d), 36)
        XCTAssertEqual(KVRowType.f16.rowBytes(headDim: d), 128)
        for type in Self.quantized {
            let ggml = Self.ggml(type.key)
            let stream = KVStream(headDim: d, kvType: type)
            let keys = (0..<10).map { _ in randomFloats(d, scale: 3) }
            for (t, k) in keys.enumerated() { stream.append(key: k, value: k, position: t) }
            XCTAssertEqual(stream.allocatedBytes, stream.capacity * (type.key.rowBytes(headDim: d) + type.value.rowBytes(headDim: d) + 4))
            var stored = [Float](repeating: 0, count: d)
            for (t, k) in keys.enumerated() {
                for (half, isKey) in [(type.key, true), (type.value, false)] {
                    if isKey { stream.key(t, into: &stored) } else { stream.value(t, into: &stored) }
                    let reference = dequantize(Self.ggml(half), from: isKey ? stream.keyRow(t) : stream.valueRow(t), count: d)
                    XCTAssertEqual(stored.map(\.bitPattern), reference.map(\.bitPattern), "\(type) row \(t)")
                    for b in 0..<(d / 32) {
                        let amax = k[(b * 32)..<(b * 32 + 32)].map(abs).max()!
                        let step = half == .q8_0 ? amax / 127 : amax / 8
                        for i in (b * 32)..<(b * 32 + 32) { XCTAssertEqual(stored[i], k[i], accuracy: step * 1.01, "\(type) \(half) row \(t) [\(i)]") }
                    }
                }
            }
            // Eviction and copies move whole rows.
            let seventhValue = dequantize(Self.ggml(type.value), from: stream.valueRow(7), count: d)
            stream.retain(slots: [7, 2])
            stream.key(0, into: &stored)
            XCTAssertEqual(stored, dequantize(ggml, from: stream.keyRow(0), count: d))
            stream.value(0, into: &stored)
            XCTAssertEqual(stored, seventhValue)
            XCTAssertEqual(stream.positions[1], 2)
        }
    }

    /// Attention over quantized rows: the kernels at every SIMD level give the same bits, and agree with the
    /// plain reference (Q8_0 query, Double arithmetic) to float rounding. Head dims 32, 64 (SmolLM2), 256 (Gemma 3).
    func testAttentionMatchesReferenceAtEveryLevel() {
        for type in Self.quantized {
            for d in [32, 64, 256] {
                for n in [1, 37, 600] {
                    let (stream, keys, values) = stream(type, headDim: d, count: n)
                    let q = randomFloats(d, scale: 3), scale = 1 / Float(d).squareRoot()
                    let expected = Attention.quantizedReference(query: q, keys: keys, values: values, scale: scale)
                    var results: [[Float]] = []
                    forEachPath { path in
                        var out = [Float](repeating: .nan, count: d)
                        Attention.dense(query: q, stream: stream, count: n, scale: scale, output: &out)
                        for i in 0..<d { XCTAssertEqual(out[i], expected[i], accuracy: 1e-4, "\(path) \(type) d \(d) n \(n) [\(i)]") }
                        results.append(out)
                    }
                    for r in results.dropFirst() { XCTAssertEqual(r.map(\.bitPattern), results[0].map(\.bitPattern), "\(type) d \(d) n \(n)") }
                }
            }
        }
    }

    /// Several query heads at once (a GQA group, a prompt's rows), each over its own number of rows, as decode and
    /// prefill call the kernels: every SIMD level gives the same bits (the AVX-512 and AVX2 scores take keys eight at
    /// a time and up to four queries at once, the AVX2 P·V up to three; the counts cover partial groups of each, and
    /// more than four queries take the AVX2 matmul tiles), close to the plain reference.
    func testGroupedQueriesGiveTheSameBitsAtEveryLevel() {
        for type in Self.quantized {
            for (d, nq) in [(64, 3), (64, 5), (256, 4), (128, 9), (32, 2), (64, 1)] {
                let n = 300 + nq
                let (stream, keys, values) = stream(type, headDim: d, count: n)
                let queries = (0..<nq).map { _ in randomFloats(d, scale: 3) }, scale = 1 / Float(d).squareRoot()
                let counts = (0..<nq).map { Int32(n - 13 * $0) }
                var results: [[Float]] = []
                forEachPath { path in
                    var out = [Float](repeating: .nan, count: nq * d)
                    rk_kv_attend(Self.kernel(type.key), Self.kernel(type.value), queries.flatMap { $0 }, d, counts, Int32(nq), stream.keyRow(0), stream.valueRow(0), Int32(d),
                                 scale, &out, d, nil, 0)
                    for i in 0..<nq {
                        let c = Int(counts[i])
                        let expected = Attention.quantizedReference(query: queries[i], keys: Array(keys[..<c]), values: Array(values[..<c]), scale: scale)
                        for e in 0..<d { XCTAssertEqual(out[i * d + e], expected[e], accuracy: 1e-4, "\(path) \(type) d \(d) query \(i) [\(e)]") }
                    }
                    results.append(out)
                }
                for r in results.dropFirst() { XCTAssertEqual(r.map(\.bitPattern), results[0].map(\.bitPattern), "\(type) d \(d) nq \(nq)") }
            }
        }
    }

    /// `subset` over listed slots (the gathered path) gives the bits of `subset` over the first slots, and its
    /// probabilities are the reference's (values as unit vectors turn the output into the probabilities).
    func testSubsetProbabilities() {
        let d = 64, n = 50
        for type in Self.quantized {
            let (stream, keys, _) = stream(type, headDim: d, count: n)
            let q = randomFloats(d, scale: 3)
            var probabilities = [Float](repeating: 0, count: n), listedProbabilities = probabilities
            var out = [Float](repeating: 0, count: d), listed = out
            Attention.subset(query: q, stream: stream, slots: nil, count: n, scale: 0.125, output: &out, probabilities: &probabilities)
            let all = (0..<Int32(n)).map { $0 }
            Attention.subset(query: q, stream: stream, slots: all, count: n, scale: 0.125, output: &listed, probabilities: &listedProbabilities)
            XCTAssertEqual(listed.map(\.bitPattern), out.map(\.bitPattern), "\(type)")
            XCTAssertEqual(listedProbabilities.map(\.bitPattern), probabilities.map(\.bitPattern), "\(type)")
            let units = (0..<n).map { j in (0..<d).map { $0 == j ? Float(1) : 0 } }
            let expected = Attention.quantizedReference(query: q, keys: keys, values: units, scale: 0.125)
            for j in 0..<n { XCTAssertEqual(probabilities[j], expected[j], accuracy: 1e-6, "\(type) slot \(j)") }
        }
    }

    /// HSA's and Quest's page bounds over a quantized stream hold for every stored (dequantized) key, and are
    /// the tightest f16 bounds: nothing between a page's true minimum and its f16 minimum (likewise maximum).
    func testPageBoundsHoldForStoredKeys() {
        let d = 64, n = 301
        for type in Self.quantized {
            let (stream, keys, _) = stream(type, headDim: d, count: n)
            for pageSize in [4, 16] {
                let metadata = PageMetadata(headDim: d, pageSize: pageSize, precision: .f16)
                metadata.extend(covering: stream)
                XCTAssertEqual(metadata.tokens, n)
                for p in 0..<metadata.pages {
                    let slots = (p * pageSize)..<min(n, (p + 1) * pageSize)
                    for i in 0..<d {
                        let low = slots.map { keys[$0][i] }.min()!, high = slots.map { keys[$0][i] }.max()!
                        let minimum = metadata.minimum(page: p, dim: i), maximum = metadata.maximum(page: p, dim: i)
                        XCTAssertLessThanOrEqual(minimum, low, "\(type) page \(p) dim \(i)")
                        XCTAssertGreaterThanOrEqual(maximum, high, "\(type) page \(p) dim \(i)")
                        XCTAssertGreaterThan(Float(Float16(minimum).nextUp), low, "\(type) page \(p) dim \(i): not the tightest")
                        XCTAssertLessThan(Float(Float16(maximum).nextDown), high, "\(type) page \(p) dim \(i): not the tightest")
                    }
                }
            }
        }
    }

    /// HSA's int8 bounds (`.q8`, beside a quantized cache) hold for every stored key, and are tight: each is
    /// within two steps of its row's scale of the page's true minimum or maximum, both when `extend` sizes the
    /// scales from a whole prompt and when keys that outgrow them arrive one by one (the scale doubles). Keys
    /// that are not finite get bounds without trapping.
    func testInt8PageBoundsHoldAndStayTight() {
        let d = 64, n = 301
        var rng = Xoshiro256StarStar(seed: 71)
        for type in Self.quantized {
            let (stream, keys, _) = stream(type, headDim: d, count: n)
            for pageSize in [1, 3, 16] {
                let extended = PageMetadata(headDim: d, pageSize: pageSize, precision: .q8)
                extended.extend(covering: stream)
                // One key at a time, magnitudes growing by up to 100×, so that rows' scales double again and again.
                let growing = PageMetadata(headDim: d, pageSize: pageSize, precision: .q8)
                let grown = keys.indices.map { t in keys[t].map { $0 * Float(1 + t / 3) * Float.random(in: 0.5...1, using: &rng) } }
                for key in grown { key.withUnsafeBufferPointer { growing.append(key: $0.baseAddress!) } }
                XCTAssertEqual(extended.allocatedBytes, extended.rows * extended.pageCapacity + extended.rows * 4)
                for (metadata, stored) in [(extended, keys), (growing, grown)] {
                    for p in 0..<metadata.pages {
                        let slots = (p * pageSize)..<min(n, (p + 1) * pageSize)
                        for i in 0..<d {
                            let low = slots.map { stored[$0][i] }.min()!, high = slots.map { stored[$0][i] }.max()!
                            let minimum = metadata.minimum(page: p, dim: i), maximum = metadata.maximum(page: p, dim: i)
                            let context = "\(type) P \(pageSize) page \(p) dim \(i)"
                            if pageSize == 1 {   // a transposed copy: the nearest value, within a step
                                XCTAssertLessThanOrEqual(abs(minimum - low), metadata.byteStrip(dim: i, max: false).scale, context)
                                continue
                            }
                            XCTAssertLessThanOrEqual(minimum, low, context)
                            XCTAssertGreaterThanOrEqual(maximum, high, context)
                            XCTAssertLessThan(low - minimum, 2 * metadata.byteStrip(dim: i, max: false).scale, context)
                            XCTAssertLessThan(maximum - high, 2 * metadata.byteStrip(dim: i, max: true).scale, context)
                        }
                    }
                }
            }
        }
        let odd = PageMetadata(headDim: 4, pageSize: 2, precision: .q8)
        for key: [Float] in [[1, .nan, .infinity, -.infinity], [0, 0, 0, 0], [-.greatestFiniteMagnitude, 1e-30, 2, 3]] {
            key.withUnsafeBufferPointer { odd.append(key: $0.baseAddress!) }
        }
        XCTAssertEqual(odd.tokens, 3)
        XCTAssertGreaterThanOrEqual(odd.maximum(page: 0, dim: 2), Float.greatestFiniteMagnitude / 2)
        XCTAssertLessThanOrEqual(odd.minimum(page: 1, dim: 0), -Float.greatestFiniteMagnitude / 2)
    }

    /// The quantized types need head dims in whole blocks of 32; a bad name or dim is a user error.
    func testTypesNeedWholeBlocks() throws {
        XCTAssertNoThrow(try KVRowType.q8_0.check(headDim: 64))
        XCTAssertNoThrow(try KVRowType.f16.check(headDim: 48))
        XCTAssertThrowsError(try KVRowType.q4_0.check(headDim: 48)) { XCTAssert("\($0)".contains("multiple of 32")) }
        XCTAssertThrowsError(try KVRowType(parsing: "q5_0")) { XCTAssert("\($0)".contains("--kv-type")) }
        XCTAssertEqual(try KVRowType(parsing: "q8_0"), .q8_0)
        // Keys and values apart, as llama.cpp's -ctk/-ctv; f16 does not mix with a quantized half.
        XCTAssertEqual(try KVCacheType(parsing: "q8_0/q4_0"), KVCacheType(key: .q8_0, value: .q4_0))
        XCTAssertEqual(try KVCacheType(parsing: "q4_0"), .q4_0)
        XCTAssertEqual(try KVCacheType(parsing: "q8_0/q8_0").description, "q8_0")
        XCTAssertThrowsError(try KVCacheType(parsing: "f16/q4_0")) { XCTAssert("\($0)".contains("does not mix")) }
        for bad in ["q8_0/", "/q4_0", "q8_0/q4_0/q4_0", ""] {
            XCTAssertThrowsError(try KVCacheType(parsing: bad), bad) { XCTAssert("\($0)".contains("--kv-type"), bad) }
        }
        XCTAssertThrowsError(try KVCacheType(key: .q8_0, value: .q4_0).check(headDim: 48)) { XCTAssert("\($0)".contains("multiple of 32")) }
        // Stored as one string in eval configurations, the earlier single-type ones included.
        let decoded = try JSONDecoder().decode([KVCacheType].self, from: Data(#"["q8_0", "q8_0/q4_0", "f16"]"#.utf8))
        XCTAssertEqual(decoded, [.q8_0, KVCacheType(key: .q8_0, value: .q4_0), .f16])
        XCTAssertEqual(String(decoding: try JSONEncoder().encode(decoded), as: UTF8.self), #"["q8_0","q8_0\/q4_0","f16"]"#)
        XCTAssertThrowsError(try JSONDecoder().decode([KVCacheType].self, from: Data(#"["f16/q8_0"]"#.utf8)))
        let layers = AttentionShape(layers: 2, queryHeads: 4, kvHeads: 2, headDim: 16).layerAttention
        let context = KVMethodContext(layers: layers, budget: 64, promptLength: 100, maxNewTokens: 8, kvType: .q8_0)
        XCTAssertThrowsError(try KVMethods.make("rocket", context: context)) { XCTAssert($0 is KVMethodError) }
    }
}
