import CKernels
import Foundation
import RocketKV
import XCTest

/// A method defined outside the library, as a user would write one: at the end of each prompt it keeps every
/// other token (the even positions) and the last one; decode attends densely to what it keeps. One type and
/// one `KVMethod`, composed from the library's `KVStore`: nothing else is edited to add it.
final class EveryOtherToken: KVPolicy, KVStreamInspectable {
    static let method = KVMethod(name: "every-other", summary: "Keeps every other prompt token (a test method).",
                                 needsBudget: false) { EveryOtherToken(shape: $0.shape) }

    let store: KVStore
    init(shape: AttentionShape) { store = KVStore(shape: shape) }

    func prefill(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        store.appendAndAttend(layer: layer, input, output: output)
    }

    func finishPrefill() {
        for stream in store.inspectableStreams {
            let kept = (0..<stream.count).filter { Int(stream.positions[$0]) % 2 == 0 || $0 == stream.count - 1 }
            stream.retain(slots: kept)
        }
    }

    func decode(layer: Int, _ input: AttentionInput, output: UnsafeMutablePointer<Float>) {
        store.appendAndAttend(layer: layer, input, output: output)
    }

    var statistics: KVStatistics { store.statistics(readingAll: true) }
    var inspectableStreams: [KVStream] { store.inspectableStreams }
}

/// The KV seam: methods registered from outside the library, layers of different kinds routed to their
/// caches, and sliding-window attention against a brute-force reference.
final class KVSeamTests: XCTestCase {
    let shape = AttentionShape(layers: 4, queryHeads: 4, kvHeads: 2, headDim: 32)

    override class func setUp() { try? KVMethods.register(EveryOtherToken.method) }

    func testMethodDefinedInTheTestTarget() throws {
        XCTAssertNotNil(KVMethods.all.first { $0.name == "every-other" })
        XCTAssertThrowsError(try KVMethods.register(EveryOtherToken.method))   // a name is taken once
        XCTAssertThrowsError(try KVMethods.register(FullKV.method))
        let policy = try KVMethods.make("every-other", context: KVMethodContext(shape: shape, budget: nil, promptLength: 11, maxNewTokens: 3))
        let feed = RandomFeed(shape: shape, seed: 21)
        feed.step([policy], count: 11, decode: false)
        policy.finishPrefill()
        var kept = [0, 2, 4, 6, 8, 10]
        for _ in 0..<3 {
            let out = feed.step([policy], count: 1, decode: true)[0]
            let t = feed.tokens - 1
            kept.append(t)
            for layer in 0..<shape.layers {
                for h in 0..<shape.queryHeads {
                    assertClose(out[layer].head(h, d: shape.headDim), feed.attention(layer, query: t, head: h, positions: kept), tolerance: 2e-3)
                }
            }
        }
        let inspectable = try XCTUnwrap(policy as? KVStreamInspectable)
        for stream in inspectable.inspectableStreams { XCTAssertEqual(positions(stream), kept) }
    }

    /// Each token of a sliding-window layer attends to the last `window` tokens, whatever the chunking; the layer
    /// holds at most `2·window` rows (or `window + rowGroup`) besides a chunk, and drops rows in multiples of
    /// `rowGroup`, so that a slot's position modulo `rowGroup` is its slot's.
    func testSlidingWindowAgainstReference() {
        let window = 5
        for chunks in [[3, 9, 1, 1, 1, 7], [12], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [40, 1, 1, 30, 1, 1]] {
            let policy = SlidingWindowKV(shape: shape, window: window)
            let feed = RandomFeed(shape: shape, seed: UInt64(chunks.count))
            for (i, count) in chunks.enumerated() {
                let first = feed.tokens
                let out = feed.step([policy], count: count, decode: i > 0 && count == 1)[0]
                for layer in 0..<shape.layers {
                    for t in 0..<count {
                        let position = first + t, visible = Array(max(0, position - window + 1)...position)
                        for h in 0..<shape.queryHeads {
                            let got = Array(out[layer][((t * shape.queryHeads + h) * shape.headDim)..<((t * shape.queryHeads + h + 1) * shape.headDim)])
                            assertClose(got, feed.attention(layer, query: position, head: h, positions: visible), tolerance: 2e-3,
                                        "chunks \(chunks) position \(position)")
                        }
                    }
                }
                for stream in policy.inspectableStreams {
                    XCTAssertLessThan(stream.count, max(2 * window, window + Attention.rowGroup) + count)
                    XCTAssertEqual((feed.tokens - stream.count) % Attention.rowGroup, 0, "rows dropped")
                }
            }
            let s = policy.statistics
            XCTAssertEqual(s.bytesReadLastStep, shape.layers * shape.kvHeads * window * shape.rowPairBytes)
        }
    }

    /// llama.cpp's formulation of a sliding window, bit for bit: token p in slot p of a cache that keeps every row,
    /// the rows before the window masked (rk_attn_causal from slot 0 with `masked` = the window's first slot), in
    /// prefill chunks and single-token steps, with windows that start mid-way through a row group, after rows were
    /// dropped, and long enough (300, d = 64) for the decode's three-phase path.
    func testSlidingWindowIsLlamaCppsMaskedCache() {
        for (window, d, chunks) in [(40, 32, [50, 1, 1, 1, 30, 1, 1, 25, 1]), (300, 64, [310, 1, 1, 5, 1, 300, 1])] {
            let shape = AttentionShape(layers: 1, queryHeads: 4, kvHeads: 2, headDim: d)
            let policy = SlidingWindowKV(shape: shape, window: window)
            let feed = RandomFeed(shape: shape, seed: UInt64(window))
            for (i, count) in chunks.enumerated() {
                let first = feed.tokens
                let out = feed.step([policy], count: count, decode: i > 0 && count == 1)[0][0]
                let everything = (0..<shape.kvHeads).map { _ in KVStream(headDim: d) }
                for p in 0..<feed.tokens {
                    for kv in 0..<shape.kvHeads {
                        let row = (p * shape.kvHeads + kv) * d
                        feed.keys[0][row..<(row + d)].withUnsafeBufferPointer { k in
                            feed.values[0][row..<(row + d)].withUnsafeBufferPointer { v in
                                everything[kv].append(key: k.baseAddress!, value: v.baseAddress!, position: p)
                            }
                        }
                    }
                }
                for t in 0..<count {
                    let position = first + t, hidden = max(0, position + 1 - window)
                    for h in 0..<shape.queryHeads {
                        let stream = everything[h / shape.groupSize], row = (position * shape.queryHeads + h) * d
                        var expected = [Float](repeating: .nan, count: d), visible = [Int32(position + 1)]
                        feed.queries[0][row..<(row + d)].withUnsafeBufferPointer { q in
                            rk_attn_causal(q.baseAddress!, d, &visible, Int32(hidden), 1, stream.halfKeys, stream.halfValues, Int32(d),
                                           shape.scale, &expected, d, count == 1 && i > 0 ? 0 : 1)
                        }
                        let got = Array(out[((t * shape.queryHeads + h) * d)..<((t * shape.queryHeads + h + 1) * d)])
                        XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "window \(window) position \(position) head \(h)")
                    }
                }
            }
        }
    }

    /// Mixed layers: the method runs on the global layers (one instance per shape), sliding layers keep their
    /// window; outputs equal the same caches run on their own, and the statistics add up.
    func testLayersRoutedByKind() throws {
        let global = LayerAttention(queryHeads: 4, kvHeads: 2, headDim: 32)
        var sliding = global
        sliding.kind = .slidingWindow(4)
        let layers = [sliding, global, sliding, global]
        let context = KVMethodContext(layers: layers, budget: 16, promptLength: 20, maxNewTokens: 4)
        let layered = try XCTUnwrap(try KVMethods.make("streaming", context: context) as? LayeredKV)
        XCTAssertEqual(layered.caches.count, 2)
        let method = try XCTUnwrap(layered.caches.first { $0 is StreamingLLM } as? StreamingLLM)
        XCTAssertEqual(method.store.shape.layers, 2)
        // The same work done by hand: layers 1 and 3 through a streaming cache, 0 and 2 through a window.
        let alone = StreamingLLM(shape: AttentionShape(layers: 2, like: global), budget: 16)
        let window = SlidingWindowKV(shape: AttentionShape(layers: 2, like: sliding), window: 4)
        let feed = RandomFeed(shape: shape, seed: 5)
        for (count, decode) in [(20, false), (1, true), (1, true), (1, true)] {
            let outputs = feed.step([layered], count: count, decode: decode)[0]
            if !decode { layered.finishPrefill() }
            // Replay each layer's inputs into the stand-alone caches.
            for layer in 0..<4 {
                let n = count, d = shape.headDim, first = feed.tokens - n
                let q = Array(feed.queries[layer][(first * shape.queryHeads * d)...])
                let k = Array(feed.keys[layer][(first * shape.kvHeads * d)...]), v = Array(feed.values[layer][(first * shape.kvHeads * d)...])
                var out = [Float](repeating: .nan, count: n * shape.queryHeads * d)
                q.withUnsafeBufferPointer { qp in k.withUnsafeBufferPointer { kp in v.withUnsafeBufferPointer { vp in
                    let input = AttentionInput(queries: qp.baseAddress!, keys: kp.baseAddress!, values: vp.baseAddress!, tokens: n, firstPosition: first)
                    let cache: KVPolicy = layer % 2 == 0 ? window : alone
                    out.withUnsafeMutableBufferPointer {
                        if decode { cache.decode(layer: layer / 2, input, output: $0.baseAddress!) }
                        else { cache.prefill(layer: layer / 2, input, output: $0.baseAddress!) }
                    }
                } } }
                XCTAssertEqual(out, outputs[layer], "layer \(layer)")
            }
            if !decode { alone.finishPrefill(); window.finishPrefill() }
        }
        XCTAssertEqual(layered.statistics, alone.statistics + window.statistics)
    }
}
