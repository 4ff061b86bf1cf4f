import Foundation
import XCTest
import RocketKV

/// Each baseline against a brute-force reference on small random tensors.
final class BaselineTests: XCTestCase {
    let shape = AttentionShape(layers: 2, queryHeads: 4, kvHeads: 2, headDim: 32)
    var d: Int { shape.headDim }

    func testSelectionRule() {
        XCTAssertEqual(KVSelect.topIndices([1, 3, 3, 2, 3], 2), [1, 2])
        XCTAssertEqual(KVSelect.topIndices([0, .nan, 5, 5], 3), [0, 2, 3])
        XCTAssertEqual(KVSelect.topIndices([1, 2], 5), [0, 1])
        XCTAssertEqual(KVSelect.topIndices([1, 2], 0), [])
        var state: UInt64 = 7
        for _ in 0..<20 {
            let values = (0..<50).map { _ -> Float in state = state &* 6364136223846793005 &+ 1442695040888963407; return Float(state >> 60) }
            XCTAssertEqual(KVSelect.topIndices(values, 13), referenceTop(values.map(Double.init), 13))
        }
        // Best-first order against a full sort, with many ties (-0 tying with +0), negatives, infinities and
        // NaNs, every k.
        for n in [1, 2, 7, 64, 480] {
            var values = (0..<n).map { _ -> Float in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int(state >> 61) - 3)
            }
            if n > 2 { values[n / 2] = .nan; values[n / 3] = -0.0; values[n - 1] = -.infinity }
            if n > 7 { values[1] = .infinity; values[5] = -.nan }
            let key = { (i: Int) -> Float in values[i].isNaN ? -.infinity : values[i] }
            let order = values.indices.sorted { key($0) > key($1) || (key($0) == key($1) && $0 < $1) }
            for k in Set([0, 1, n / 3, n - 1, n, n + 5]) {
                XCTAssertEqual(KVSelect.rankedTop(values, k), Array(order.prefix(max(0, k))), "n \(n) k \(k)")
            }
        }
    }

    func testExactTopK() {
        let feed = RandomFeed(shape: shape, seed: 1)
        let policy = ExactTopK(shape: shape, budget: 10)
        feed.step([policy], count: 25, decode: false)
        feed.step([policy], count: 15, decode: false)
        policy.finishPrefill()
        for _ in 0..<5 {
            let out = feed.step([policy], count: 1, decode: true)[0]
            let t = feed.tokens - 1
            for layer in 0..<shape.layers {
                for h in 0..<shape.queryHeads {
                    let logits = (0...t).map { feed.logit(layer, query: t, head: h, key: $0) }
                    let expected = referenceTop(logits, 10)
                    XCTAssertEqual(policy.lastSelection[layer][h].map(Int.init), expected)
                    assertClose(out[layer].head(h, d: d), feed.attention(layer, query: t, head: h, positions: expected), tolerance: 2e-3)
                }
            }
            let stats = policy.statistics
            XCTAssertEqual(stats.storedTokens, shape.layers * shape.kvHeads * feed.tokens)
            // Reported: what the code reads — every key (f16) of each group, and the values of the union of its
            // heads' selections; the oracle's ideal 2d·t per group beside it.
            var touched = 0
            for layer in 0..<shape.layers {
                for g in 0..<shape.kvHeads {
                    let union = Set(policy.lastSelection[layer][(g * shape.groupSize)..<((g + 1) * shape.groupSize)].joined())
                    touched += feed.tokens * d * 2 + union.count * d * 2
                }
            }
            XCTAssertEqual(stats.bytesReadLastStep, touched)
            XCTAssertEqual(stats.idealBytesReadLastStep, shape.layers * shape.kvHeads * 10 * 2 * d * 2)
        }
    }

    func testStreamingLLM() {
        let feed = RandomFeed(shape: shape, seed: 2)
        let policy = StreamingLLM(shape: shape, budget: 12, sinks: 4)
        feed.step([policy], count: 30, decode: false)
        policy.finishPrefill()
        for stream in policy.inspectableStreams { XCTAssertEqual(positions(stream), [0, 1, 2, 3] + Array(22..<30)) }
        for _ in 0..<6 {
            let out = feed.step([policy], count: 1, decode: true)[0]
            let t = feed.tokens - 1, kept = [0, 1, 2, 3] + Array((t - 7)...t)
            for stream in policy.inspectableStreams { XCTAssertEqual(positions(stream), kept) }
            for layer in 0..<shape.layers {
                for h in 0..<shape.queryHeads {
                    assertClose(out[layer].head(h, d: d), feed.attention(layer, query: t, head: h, positions: kept), tolerance: 2e-3)
                }
            }
        }
        let stats = policy.statistics
        XCTAssertEqual(stats.storedTokens, shape.layers * shape.kvHeads * 12)
        // Each stream holds the budget plus one slot of room for the next step's token (evicted in place).
        XCTAssertEqual(stats.storedBytes, shape.layers * shape.kvHeads * 13 * (4 * d + 4))
        XCTAssertEqual(stats.bytesReadLastStep, shape.layers * shape.kvHeads * 12 * 4 * d)
    }

    func testH2O() {
        let feed = RandomFeed(shape: shape, seed: 3)
        let budget = 12
        let policy = H2O(shape: shape, budget: budget)
        feed.step([policy], count: 20, decode: false)
        feed.step([policy], count: 10, decode: false)
        // Reference: kept positions and group scores per layer and group.
        var kept = [[[Int]]](repeating: [[Int]](repeating: Array(0..<30), count: shape.kvHeads), count: shape.layers)
        var score = [[[Double]]](repeating: [[Double]](repeating: [Double](repeating: 0, count: 30), count: shape.kvHeads), count: shape.layers)
        for layer in 0..<shape.layers {
            for h in 0..<shape.queryHeads {
                for t in 0..<30 {
                    let p = softmax((0...t).map { feed.logit(layer, query: t, head: h, key: $0) })
                    for j in 0...t { score[layer][h / shape.groupSize][j] += p[j] }
                }
            }
        }
        for layer in 0..<shape.layers {
            for g in 0..<shape.kvHeads { assertClose(policy.scores[layer][g], score[layer][g].map(Float.init), tolerance: 1e-4) }
        }
        policy.finishPrefill()
        for layer in 0..<shape.layers {
            for g in 0..<shape.kvHeads {
                let heavy = referenceTop(Array(score[layer][g][0..<24]), 6)
                kept[layer][g] = heavy + Array(24..<30)
                score[layer][g] = kept[layer][g].map { score[layer][g][$0] }
            }
        }
        checkH2O(policy, kept: kept, scores: score)
        for _ in 0..<8 {
            let out = feed.step([policy], count: 1, decode: true)[0]
            let t = feed.tokens - 1
            for layer in 0..<shape.layers {
                for g in 0..<shape.kvHeads {
                    kept[layer][g].append(t)
                    score[layer][g].append(0)
                    let candidates = Array(score[layer][g][0..<(kept[layer][g].count - 6)])
                    let victim = candidates.indices.min { candidates[$0] < candidates[$1] || (candidates[$0] == candidates[$1] && $0 < $1) }!
                    kept[layer][g].remove(at: victim)
                    score[layer][g].remove(at: victim)
                    for h in (g * shape.groupSize)..<((g + 1) * shape.groupSize) {
                        let p = softmax(kept[layer][g].map { feed.logit(layer, query: t, head: h, key: $0) })
                        for j in p.indices { score[layer][g][j] += p[j] }
                        assertClose(out[layer].head(h, d: d), feed.attention(layer, query: t, head: h, positions: kept[layer][g]), tolerance: 2e-3)
                    }
                }
            }
            checkH2O(policy, kept: kept, scores: score)
        }
    }

    /// H2O's prompt path (the dense outputs, probabilities from the batched score kernel) gives the bits of its
    /// one-query-at-a-time reference: outputs and accumulated scores, over an empty cache, a one-token chunk (the
    /// reference path on both) and a chunk after a prefix.
    func testH2OChunkedPrefillMatchesOneByOne() {
        let shape = AttentionShape(layers: 1, queryHeads: 4, kvHeads: 2, headDim: 64)
        var rng = Xoshiro256StarStar(seed: 5)
        let fast = H2O(shape: shape, budget: 16), reference = H2O(shape: shape, budget: 16)
        var position = 0
        for chunk in [37, 1, 20] {
            let q = (0..<chunk * 4 * 64).map { _ in Float.random(in: -2...2, using: &rng) }
            let k = (0..<chunk * 2 * 64).map { _ in Float.random(in: -2...2, using: &rng) }
            let v = (0..<chunk * 2 * 64).map { _ in Float.random(in: -1...1, using: &rng) }
            var outFast = [Float](repeating: 0, count: chunk * 4 * 64), outReference = outFast
            q.withUnsafeBufferPointer { q in k.withUnsafeBufferPointer { k in v.withUnsafeBufferPointer { v in
                let input = AttentionInput(queries: q.baseAddress!, keys: k.baseAddress!, values: v.baseAddress!, tokens: chunk,
                                           firstPosition: position)
                TwoThreadTestCase.twoThreads.install {
                    fast.prefill(layer: 0, input, output: &outFast)
                    let before = reference.store.append(layer: 0, input)
                    reference.attendOneByOne(layer: 0, input, visibleBefore: before, output: &outReference)
                }
            } } }
            XCTAssertEqual(outFast.map(\.bitPattern), outReference.map(\.bitPattern), "chunk of \(chunk)")
            for g in 0..<2 { XCTAssertEqual(fast.scores[0][g].map(\.bitPattern), reference.scores[0][g].map(\.bitPattern), "chunk of \(chunk)") }
            position += chunk
        }
    }

    private func checkH2O(_ policy: H2O, kept: [[[Int]]], scores: [[[Double]]], line: UInt = #line) {
        let streams = policy.inspectableStreams
        for layer in 0..<shape.layers {
            for g in 0..<shape.kvHeads {
                XCTAssertEqual(positions(streams[layer * shape.kvHeads + g]), kept[layer][g], line: line)
                assertClose(policy.scores[layer][g], scores[layer][g].map(Float.init), tolerance: 1e-4, line: line)
            }
        }
    }

    func testSnapKV() {
        for kernel in [7, 3] {
            let feed = RandomFeed(shape: shape, seed: 4 + UInt64(kernel), keyScale: 1.5)
            let budget = 24, window = 4, perHead = budget / shape.groupSize
            let policy = SnapKV(shape: shape, budget: budget, window: window, kernel: kernel)
            policy.recordsScores = true
            feed.step([policy], count: 30, decode: false)
            feed.step([policy], count: 10, decode: false)
            policy.finishPrefill()
            let n = 40, prefix = n - window
            var kept = [[[Int]]](repeating: [], count: shape.layers)
            for layer in 0..<shape.layers {
                for h in 0..<shape.queryHeads {
                    var votes = [Double](repeating: 0, count: prefix)
                    for a in 0..<window {
                        let t = prefix + a
                        // SnapKV scores as §3 does (§9.2): f32 queries against the cached f16 keys.
                        let p = softmax((0...t).map { feed.logit(layer, query: t, head: h, key: $0, f16Query: false) })
                        for j in 0..<prefix { votes[j] += p[j] }
                    }
                    let r = kernel / 2
                    let pooled = (0..<prefix).map { j in votes[max(0, j - r)...min(prefix - 1, j + r)].max()! }
                    assertClose(policy.lastPooledScores[layer][h], pooled.map(Float.init), tolerance: 1e-5)
                    let expected = referenceTop(pooled, perHead - window) + Array(prefix..<n)
                    XCTAssertEqual(positions(policy.stream(layer: layer, head: h)), expected, "kernel \(kernel) layer \(layer) head \(h)")
                    kept[layer].append(expected)
                }
            }
            for step in 0..<3 {
                let out = feed.step([policy], count: 1, decode: true)[0]
                let t = feed.tokens - 1
                for layer in 0..<shape.layers {
                    for h in 0..<shape.queryHeads {
                        kept[layer][h].append(t)
                        XCTAssertEqual(positions(policy.stream(layer: layer, head: h)), kept[layer][h])
                        assertClose(out[layer].head(h, d: d), feed.attention(layer, query: t, head: h, positions: kept[layer][h]), tolerance: 2e-3)
                    }
                }
                let stats = policy.statistics
                XCTAssertEqual(stats.storedTokens, shape.layers * shape.queryHeads * (perHead + step + 1))
                XCTAssertEqual(stats.bytesReadLastStep, stats.storedTokens * 4 * d)
            }
        }
    }

    func testSnapKVKeepsShortPrompts() {
        let feed = RandomFeed(shape: shape, seed: 9)
        let policy = SnapKV(shape: shape, budget: 24)
        let full = FullKV(shape: shape)
        feed.step([policy, full], count: 10, decode: false)
        policy.finishPrefill()
        for h in 0..<shape.queryHeads { XCTAssertEqual(positions(policy.stream(layer: 1, head: h)), Array(0..<10)) }
        let outs = feed.step([policy, full], count: 1, decode: true)
        XCTAssertEqual(outs[0], outs[1])
    }

    func testQuest() {
        let feed = RandomFeed(shape: shape, seed: 5)
        let pageSize = 4, pages = 3
        let policy = Quest(shape: shape, pageSize: pageSize, pagesPerStep: pages)
        feed.step([policy], count: 21, decode: false)
        feed.step([policy], count: 9, decode: false)
        for _ in 0..<5 {
            let out = feed.step([policy], count: 1, decode: true)[0]
            let t = feed.tokens - 1, n = t + 1, pageCount = (n + pageSize - 1) / pageSize
            for layer in 0..<shape.layers {
                for g in 0..<shape.kvHeads {
                    let bounds = policy.bounds[layer][g]
                    XCTAssertEqual(bounds.pages, pageCount)
                    var u = [Double](repeating: 0, count: pageCount)
                    for p in 0..<pageCount {
                        let tokens = Array((p * pageSize)..<min(n, (p + 1) * pageSize))
                        for i in 0..<d {
                            let column = tokens.map { Float(Float16(feed.key(layer, $0, g)[i])) }
                            let (lo, hi) = (bounds.minimum(page: p, dim: i), bounds.maximum(page: p, dim: i))
                            XCTAssertEqual(lo, column.min()!)
                            XCTAssertEqual(hi, column.max()!)
                        }
                        for h in (g * shape.groupSize)..<((g + 1) * shape.groupSize) {
                            let q = feed.query(layer, t, h)
                            var bound = 0.0
                            for i in 0..<d {
                                let (lo, hi) = (bounds.minimum(page: p, dim: i), bounds.maximum(page: p, dim: i))
                                bound += max(Double(q[i]) * Double(hi), Double(q[i]) * Double(lo))
                            }
                            u[p] += bound
                            // A real upper bound of q·k for every token of the page, per head.
                            for j in tokens {
                                let dot = zip(q, feed.key(layer, j, g)).reduce(0.0) { $0 + Double($1.0) * Double(Float16($1.1)) }
                                XCTAssertLessThanOrEqual(dot, bound + 1e-9)
                            }
                        }
                    }
                    assertClose(policy.lastScores[layer][g], u.map(Float.init), tolerance: 1e-3)
                    let chosen = referenceTop(u, pages)
                    XCTAssertEqual(policy.lastPages[layer][g], chosen)
                    let attended = chosen.flatMap { p in (p * pageSize)..<min(n, (p + 1) * pageSize) }
                    for h in (g * shape.groupSize)..<((g + 1) * shape.groupSize) {
                        assertClose(out[layer].head(h, d: d), feed.attention(layer, query: t, head: h, positions: attended), tolerance: 2e-3)
                    }
                }
            }
            let stats = policy.statistics
            XCTAssertEqual(stats.storedTokens, shape.layers * shape.kvHeads * n)
            let attendedTokens = policy.lastPages.joined().map { $0.reduce(0) { $0 + min(n, ($1 + 1) * pageSize) - $1 * pageSize } }.reduce(0, +)
            XCTAssertEqual(stats.bytesReadLastStep, shape.layers * shape.kvHeads * pageCount * 2 * d * 2 + attendedTokens * 2 * d * 2)
        }
        XCTAssertEqual(Quest.defaultPageSize(sequenceLength: 8192, budget: 256), 64)
        XCTAssertEqual(Quest.defaultPages(budget: 256, pageSize: 64), 2)
        XCTAssertEqual(Quest.defaultPageSize(sequenceLength: 100, budget: 1000), 1)
    }

    func testSparQ() {
        for meanValue in [true, false] {
            let feed = RandomFeed(shape: shape, seed: 6)
            let rank = 8, k = 10
            let policy = SparQ(shape: shape, rank: rank, tokensPerStep: k, meanValue: meanValue)
            feed.step([policy], count: 17, decode: false)
            feed.step([policy], count: 13, decode: false)
            for _ in 0..<4 {
                let out = feed.step([policy], count: 1, decode: true)[0]
                let t = feed.tokens - 1, n = t + 1
                for layer in 0..<shape.layers {
                    for g in 0..<shape.kvHeads {
                        let heads = (g * shape.groupSize)..<((g + 1) * shape.groupSize)
                        var absSum = [Double](repeating: 0, count: d)
                        for h in heads { for (i, x) in feed.query(layer, t, h).enumerated() { absSum[i] += Double(abs(x)) } }
                        let dims = referenceTop(absSum, rank)
                        XCTAssertEqual(policy.lastDims[layer][g], dims)
                        var total = [Double](repeating: 0, count: n)
                        var approximate = [[Double]]()
                        for h in heads {
                            let q = feed.query(layer, t, h).map(Double.init)
                            let tau = (Double(d) * dims.reduce(0) { $0 + abs(q[$1]) } / q.reduce(0) { $0 + abs($1) }).squareRoot()
                            let s = softmax((0..<n).map { j in
                                let key = feed.key(layer, j, g)
                                return dims.reduce(0.0) { $0 + q[$1] * Double(Float16(key[$1])) } / tau
                            })
                            assertClose(policy.lastApproximate[layer][h], s.map(Float.init), tolerance: 1e-5)
                            approximate.append(s)
                            for j in 0..<n { total[j] += s[j] }
                        }
                        let slots = referenceTop(total, k)
                        XCTAssertEqual(policy.lastSlots[layer][g], slots)
                        var mean = [Double](repeating: 0, count: d)
                        for j in 0..<n { for (i, x) in feed.value(layer, j, g).enumerated() { mean[i] += Double(Float16(x)) / Double(n) } }
                        for (index, h) in heads.enumerated() {
                            let alpha = slots.reduce(0.0) { $0 + approximate[index][$1] }
                            XCTAssertEqual(Double(policy.lastAlpha[layer][h]), alpha, accuracy: 1e-5)
                            let y = feed.attention(layer, query: t, head: h, positions: slots)
                            let expected = meanValue ? (0..<d).map { Float(alpha * Double(y[$0]) + (1 - alpha) * mean[$0]) } : y
                            assertClose(out[layer].head(h, d: d), expected, tolerance: 2e-3)
                        }
                    }
                }
                let stats = policy.statistics
                XCTAssertEqual(stats.storedTokens, shape.layers * shape.kvHeads * n)
                XCTAssertGreaterThanOrEqual(stats.storedBytes, shape.layers * shape.kvHeads * n * (6 * d + 4))
                XCTAssertEqual(stats.bytesReadLastStep, shape.layers * shape.kvHeads * (rank * n * 2 + k * 4 * d + (meanValue ? 8 * d : 0)))
            }
        }
        XCTAssertEqual(SparQ.defaultRank(headDim: 64, budget: 256, sequenceLength: 8192), 2)
        XCTAssertEqual(SparQ.defaultRank(headDim: 64, budget: 10, sequenceLength: 8192), 1)
        XCTAssertEqual(SparQ.defaultRank(headDim: 64, budget: 1000, sequenceLength: 100), 64)
    }
}

func positions(_ stream: KVStream) -> [Int] { (0..<stream.count).map { Int(stream.positions[$0]) } }
