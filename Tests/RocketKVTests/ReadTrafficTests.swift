import Foundation
import RocketKV
import XCTest

/// `KVStatistics.bytesReadLastStep` is a claim: where a method computes it by formula, count what its code
/// touched in the same decode step, from the rows and page bounds it selected, and compare. The selection is
/// shown to be the one the step used by reproducing the step's output from it.
final class ReadTrafficTests: TwoThreadTestCase {
    let shape = AttentionShape(layers: 2, queryHeads: 4, kvHeads: 2, headDim: 32)

    /// HSA-based methods (`hsa` on the whole cache, `rocket` after its stage-1 eviction): per group, the
    /// page bounds of the `k1` chosen dimensions over every page, plus the K and V rows of the attended slots.
    func testHSAMethodsReadWhatTheySelect() throws {
        for name in ["hsa", "rocket"] {
            let policy = try KVMethods.make(name, context: KVMethodContext(shape: shape, budget: 24, promptLength: 120, maxNewTokens: 8))
            let plan = try XCTUnwrap((policy as? HSAPolicy)?.plan ?? (policy as? RocketPolicy)?.plan, name)
            let feed = RandomFeed(shape: shape, seed: 3)
            feed.step([policy], count: 70, decode: false)
            feed.step([policy], count: 50, decode: false)
            policy.finishPrefill()
            for _ in 0..<3 {
                let output = feed.step([policy], count: 1, decode: true)[0]
                let streams = try XCTUnwrap(policy as? KVStreamInspectable).inspectableStreams
                let d = shape.headDim, G = shape.groupSize, t = feed.tokens - 1
                var touched = 0
                for layer in 0..<shape.layers {
                    let queries = (0..<shape.queryHeads).flatMap { feed.query(layer, t, $0) }
                    for g in 0..<shape.kvHeads {
                        let stream = streams[layer * shape.kvHeads + g]
                        // The page bounds the step ranks pages by: f16 min/max over the group's slots, current token included.
                        let metadata = PageMetadata(headDim: d, pageSize: plan.pageSize, precision: .f16)
                        metadata.reserve(tokens: stream.count)
                        for slot in 0..<stream.count { metadata.append(slot: slot, of: stream) }
                        let groupQueries = Array(queries[(g * G * d)..<((g + 1) * G * d)])
                        let selection = groupQueries.withUnsafeBufferPointer {
                            HSA.select(queries: $0.baseAddress!, groupSize: G, metadata: metadata, k1: plan.k1, k2: plan.k2)
                        }
                        var expected = [Float](repeating: 0, count: G * d)
                        groupQueries.withUnsafeBufferPointer { q in
                            expected.withUnsafeMutableBufferPointer {
                                HSA.attend(queries: q.baseAddress!, groupSize: G, stream: stream, slots: selection.slots, scale: shape.scale, output: $0.baseAddress!)
                            }
                        }
                        XCTAssertEqual(Array(output[layer][(g * G * d)..<((g + 1) * G * d)]), expected, "\(name) layer \(layer) group \(g)")
                        // k1 dims × every page × an f16 bound (one of min/max per dim, by the group's sign), and the
                        // f16 K and V rows of each attended slot.
                        touched += selection.dims.count * metadata.pages * 2 + Set(selection.slots).count * 2 * d * 2
                    }
                }
                XCTAssertEqual(policy.statistics.bytesReadLastStep, touched, name)
            }
        }
    }

    /// Prefills `policy` with `prompt` random tokens, then decodes 3 steps; after each, `touchedByGroup(output, layer,
    /// group, tokens)` checks the step's output for one group and returns the bytes it read there, and the sum must be
    /// what the policy reports.
    func assertReadsMatch(_ policy: KVPolicy, prompt: Int, seed: UInt64,
                          touchedByGroup: (_ output: [Float], _ layer: Int, _ group: Int, _ feed: RandomFeed) -> Int) {
        let feed = RandomFeed(shape: shape, seed: seed)
        feed.step([policy], count: prompt, decode: false)
        policy.finishPrefill()
        for _ in 0..<3 {
            let output = feed.step([policy], count: 1, decode: true)[0]
            var touched = 0
            for layer in 0..<shape.layers {
                for g in 0..<shape.kvHeads { touched += touchedByGroup(output[layer], layer, g, feed) }
            }
            XCTAssertEqual(policy.statistics.bytesReadLastStep, touched)
        }
    }

    /// Quest: the min and max bounds of every page on all dimensions, plus the rows of the chosen pages.
    func testQuestReadsItsBoundsAndChosenPages() throws {
        let policy = Quest(shape: shape, pageSize: 4, pagesPerStep: 3), d = shape.headDim
        assertReadsMatch(policy, prompt: 61, seed: 4) { output, layer, g, feed in
            let n = feed.tokens, t = n - 1
            let slots = policy.lastPages[layer][g].flatMap { p in (p * 4)..<min(n, (p + 1) * 4) }
            for h in (g * shape.groupSize)..<((g + 1) * shape.groupSize) {
                assertClose(output.head(h, d: d), feed.attention(layer, query: t, head: h, positions: slots), tolerance: 2e-3)
            }
            return (n + 3) / 4 * 2 * d * 2 + Set(slots).count * 2 * d * 2
        }
    }

    /// SparQ: the f16 strips of the `r` chosen dimensions over every cached key, the rows of the `k` chosen
    /// slots, and the group's value sum (f64) for the mean-value correction.
    func testSparQReadsItsStripsChosenRowsAndValueSum() throws {
        let policy = SparQ(shape: shape, rank: 5, tokensPerStep: 9), d = shape.headDim
        assertReadsMatch(policy, prompt: 40, seed: 5) { output, layer, g, feed in
            let n = feed.tokens, t = n - 1
            let dims = policy.lastDims[layer][g], slots = policy.lastSlots[layer][g]
            XCTAssertEqual(dims.count, 5)
            XCTAssertEqual(slots.count, 9)
            // The step's output from this selection: α·attention over the slots + (1 − α)·mean value.
            let mean = (0..<d).map { i in (0..<n).reduce(Float(0)) { $0 + feed.value(layer, $1, g)[i] } / Float(n) }
            for h in (g * shape.groupSize)..<((g + 1) * shape.groupSize) {
                let alpha = policy.lastAlpha[layer][h]
                let y = feed.attention(layer, query: t, head: h, positions: slots)
                assertClose(output.head(h, d: d), (0..<d).map { alpha * y[$0] + (1 - alpha) * mean[$0] }, tolerance: 2e-3)
            }
            return dims.count * n * 2 + Set(slots).count * 2 * d * 2 + d * 8
        }
    }
}
