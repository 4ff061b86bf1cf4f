import Foundation
import RocketKV
import XCTest

/// The three RocketKV policies on a tiny random model shape (no model file).
final class RocketPolicyUnitTests: TwoThreadTestCase {
    let shape = AttentionShape(layers: 2, queryHeads: 4, kvHeads: 2, headDim: 32)
    var rng = Xoshiro256StarStar(seed: 5)

    struct Chunk { var q: [Float]; var k: [Float]; var v: [Float]; var tokens: Int; var first: Int }

    func chunk(_ tokens: Int, at first: Int) -> Chunk {
        func r(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &rng) } }
        return Chunk(q: r(tokens * shape.queryHeads * shape.headDim), k: r(tokens * shape.kvHeads * shape.headDim),
                     v: r(tokens * shape.kvHeads * shape.headDim), tokens: tokens, first: first)
    }

    /// Runs a chunk through every layer (the same q/k/v per layer) and returns layer 1's output.
    @discardableResult
    func run(_ policy: KVPolicy, _ c: Chunk, decode: Bool) -> [Float] {
        var out = [Float](repeating: 0, count: c.tokens * shape.queryHeads * shape.headDim)
        c.q.withUnsafeBufferPointer { q in
            c.k.withUnsafeBufferPointer { k in
                c.v.withUnsafeBufferPointer { v in
                    out.withUnsafeMutableBufferPointer { o in
                        let input = AttentionInput(queries: q.baseAddress!, keys: k.baseAddress!, values: v.baseAddress!,
                                                   tokens: c.tokens, firstPosition: c.first)
                        for l in 0..<shape.layers {
                            if decode { policy.decode(layer: l, input, output: o.baseAddress!) }
                            else { policy.prefill(layer: l, input, output: o.baseAddress!) }
                        }
                    }
                }
            }
        }
        return out
    }

    func make(_ name: String, budget: Int, prompt: Int = 100, newTokens: Int = 8, options: [String: String] = [:]) throws -> KVPolicy {
        try KVMethods.make(name, context: KVMethodContext(shape: shape, budget: budget, promptLength: prompt,
                                                           maxNewTokens: newTokens, options: options))
    }

    func testRocketEvictsToPromptBudgetAndAppends() throws {
        let policy = try make("rocket", budget: 16)
        let plan = (policy as! RocketPolicy).plan
        XCTAssertEqual(plan.promptBudget, 45)
        XCTAssertEqual(plan.pageSize, 2)
        XCTAssertEqual(plan.k1, 19)
        run(policy, chunk(60, at: 0), decode: false)
        run(policy, chunk(40, at: 60), decode: false)
        XCTAssertEqual(policy.statistics.storedTokens, 2 * 2 * 100)
        policy.finishPrefill()
        let groups = shape.layers * shape.kvHeads
        XCTAssertEqual(policy.statistics.storedTokens, groups * 45)
        for step in 1...3 {
            let out = run(policy, chunk(1, at: 99 + step), decode: true)
            XCTAssertFalse(out.contains { !$0.isFinite })
            let s = policy.statistics
            XCTAssertEqual(s.storedTokens, groups * (45 + step))
            let n = 45 + step, pages = (n + plan.pageSize - 1) / plan.pageSize
            XCTAssertEqual(s.bytesReadLastStep, groups * (plan.k1 * pages * 2 + plan.k2 * 2 * 32 * 2))
        }
        // Memory really shrank: KV + metadata of ~(45 + 9) slots per group.
        // Streams reserve B_p + N_new + 1 = 54 slots (f16 K and V + an Int32 position each) and metadata
        // ⌈54/2⌉ = 27 pages of 2d f16 values; the query window of the prompt is released.
        XCTAssertEqual(policy.statistics.storedBytes, groups * (54 * (2 * 32 * 2 + 4) + 27 * 2 * 32 * 2))
        // A second turn re-compresses history + new prompt back to B_p.
        run(policy, chunk(30, at: 103), decode: false)
        XCTAssertEqual(policy.statistics.storedTokens, groups * (48 + 30))
        policy.finishPrefill()
        XCTAssertEqual(policy.statistics.storedTokens, groups * 45)
        XCTAssertFalse(run(policy, chunk(1, at: 133), decode: true).contains { !$0.isFinite })
    }

    /// With a budget ≥ the sequence, nothing is evicted and HSA attends every token (k2 ≥ N): the output
    /// equals dense attention up to summation order.
    func testLargeBudgetMatchesFullAttention() throws {
        for name in ["rocket", "rocket-mt", "hsa"] {
            let policy = try make(name, budget: 1024), full = FullKV(shape: shape)
            for c in [chunk(60, at: 0), chunk(40, at: 60)] {
                let a = run(policy, c, decode: false), b = run(full, c, decode: false)
                XCTAssertEqual(a, b, name)
            }
            policy.finishPrefill(); full.finishPrefill()
            XCTAssertEqual(policy.statistics.storedTokens, 400, name)
            for step in 0..<3 {
                let c = chunk(1, at: 100 + step)
                let a = run(policy, c, decode: true), b = run(full, c, decode: true)
                for i in a.indices { XCTAssertEqual(a[i], b[i], accuracy: 1e-4, "\(name) step \(step)") }
            }
        }
    }

    /// In the first turn RocketKV-MT selects what RocketKV keeps, so its decode outputs are identical; it keeps
    /// the full cache and re-selects from all of it in the next turn.
    func testRocketMTMatchesRocketInFirstTurnAndKeepsEverything() throws {
        let rocket = try make("rocket", budget: 16), mt = try make("rocket-mt", budget: 16, options: ["window": "32"])
        for c in [chunk(60, at: 0), chunk(40, at: 60)] { run(rocket, c, decode: false); run(mt, c, decode: false) }
        rocket.finishPrefill(); mt.finishPrefill()
        XCTAssertEqual(mt.statistics.storedTokens, 400)
        XCTAssertEqual((mt as! RocketMTPolicy).filteredSlots(layer: 0, group: 0).count, 45)
        for step in 0..<3 {
            let c = chunk(1, at: 100 + step)
            XCTAssertEqual(run(rocket, c, decode: true), run(mt, c, decode: true))
        }
        let r = rocket.statistics, m = mt.statistics
        XCTAssertEqual(m.bytesReadLastStep, r.bytesReadLastStep + 2 * 2 * 8 * 4)   // + the attended slots' indices
        XCTAssertGreaterThan(m.storedBytes, r.storedBytes)
        // Turn 2: F grows by the prompt, R is re-selected from all 133 tokens.
        run(mt, chunk(30, at: 103), decode: false)
        mt.finishPrefill()
        XCTAssertEqual(mt.statistics.storedTokens, 4 * 133)
        let slots = (mt as! RocketMTPolicy).filteredSlots(layer: 1, group: 1)
        XCTAssertEqual(slots.count, 45)
        XCTAssertEqual(Array(slots.suffix(30)), (103..<133).map(Int32.init))   // window = the new turn's prompt
        XCTAssertEqual(slots, slots.sorted())
        XCTAssertFalse(run(mt, chunk(1, at: 133), decode: true).contains { !$0.isFinite })
        XCTAssertEqual((mt as! RocketMTPolicy).filteredSlots(layer: 1, group: 1).last, 133)
    }

    /// The decode step runs HSA as tasks spread over the pool's threads (per group and per head); its output and
    /// traffic equal those of `HSA.select` and `HSA.attend` run group after group, bit for bit. The model's
    /// shape: 3 KV groups of 3 heads on 2 threads.
    func testParallelDecodeStepMatchesSequentialGroups() throws {
        // SmolLM2's head dimension, and Gemma 3's (d = 256, four query heads per KV head).
        for (d, G) in [(64, 3), (256, 4)] { try checkParallelDecodeStep(headDim: d, groupSize: G) }
    }

    func checkParallelDecodeStep(headDim d: Int, groupSize G: Int) throws {
        let shape = AttentionShape(layers: 1, queryHeads: 3 * G, kvHeads: 3, headDim: d)
        let policy = try KVMethods.make("hsa", context: KVMethodContext(shape: shape, budget: 40, promptLength: 300,
                                                                         maxNewTokens: 8, options: [:]))
        let plan = (policy as! HSAPolicy).plan
        let streams = (0..<3).map { _ in KVStream(headDim: d) }
        let metadata = (0..<3).map { _ in PageMetadata(headDim: d, pageSize: plan.pageSize, precision: .f16) }
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &rng) } }
        func step(tokens: Int, at first: Int) -> [Float] {
            let q = random(tokens * 3 * G * d), k = random(tokens * 3 * d), v = random(tokens * 3 * d)
            var out = [Float](repeating: 0, count: tokens * 3 * G * d)
            q.withUnsafeBufferPointer { qp in
                k.withUnsafeBufferPointer { kp in
                    v.withUnsafeBufferPointer { vp in
                        out.withUnsafeMutableBufferPointer { o in
                            let input = AttentionInput(queries: qp.baseAddress!, keys: kp.baseAddress!, values: vp.baseAddress!,
                                                       tokens: tokens, firstPosition: first)
                            if tokens > 1 { policy.prefill(layer: 0, input, output: o.baseAddress!) }
                            else { policy.decode(layer: 0, input, output: o.baseAddress!) }
                        }
                        for t in 0..<tokens {
                            for g in 0..<3 {
                                let row = (t * 3 + g) * d
                                streams[g].append(key: kp.baseAddress! + row, value: vp.baseAddress! + row, position: first + t)
                                metadata[g].append(slot: streams[g].count - 1, of: streams[g])
                            }
                        }
                    }
                }
            }
            guard tokens == 1 else { return [] }
            var expected = [Float](repeating: 0, count: 3 * G * d), bytes = 0
            q.withUnsafeBufferPointer { qp in
                expected.withUnsafeMutableBufferPointer { o in
                    for g in 0..<3 {
                        let selection = HSA.select(queries: qp.baseAddress! + g * G * d, groupSize: G, metadata: metadata[g], k1: plan.k1, k2: plan.k2)
                        HSA.attend(queries: qp.baseAddress! + g * G * d, groupSize: G, stream: streams[g], slots: selection.slots,
                                   scale: shape.scale, output: o.baseAddress! + g * G * d)
                        bytes += HSA.bytesRead(k1: selection.dims.count, pages: metadata[g].pages, attended: selection.slots.count, headDim: d)
                    }
                }
            }
            XCTAssertEqual(out.map(\.bitPattern), expected.map(\.bitPattern), "d \(d) G \(G): decode at \(first)")
            XCTAssertEqual(policy.statistics.bytesReadLastStep, bytes)
            return out
        }
        _ = step(tokens: 300, at: 0)
        policy.finishPrefill()
        for t in 0..<5 { XCTAssertFalse(step(tokens: 1, at: 300 + t).isEmpty) }
        // `bench --breakdown` sees the step's selection and attention as thread-time.
        StepProfile.reset()
        StepProfile.enabled = true
        XCTAssertFalse(step(tokens: 1, at: 305).isEmpty)
        StepProfile.enabled = false
        let totals = StepProfile.totals
        StepProfile.reset()
        XCTAssertGreaterThan(totals.threadNanoseconds(.hsaSelection), 0)
        XCTAssertGreaterThan(totals.threadNanoseconds(.hsaAttention), 0)
    }

    /// `votes=shared`: every layer keeps, per KV group, the slots chosen by the sum over layers of the window
    /// votes each layer gives a token position (a brute-force sum here, from the stored keys and the window
    /// queries), so all layers keep one set in the first turn; in the next turn the layers hold different
    /// positions and the sum is taken by position. `votes=layer` (the paper) keeps per-layer sets.
    func testSharedVotesSumEveryLayersVotesByPosition() throws {
        let window = 8
        func feed(_ policy: KVPolicy, _ chunks: [Chunk]) {
            for (l, c) in chunks.enumerated() {
                var out = [Float](repeating: 0, count: c.tokens * shape.queryHeads * shape.headDim)
                c.q.withUnsafeBufferPointer { q in c.k.withUnsafeBufferPointer { k in c.v.withUnsafeBufferPointer { v in
                    policy.prefill(layer: l, AttentionInput(queries: q.baseAddress!, keys: k.baseAddress!, values: v.baseAddress!,
                                                            tokens: c.tokens, firstPosition: c.first), output: &out)
                } } }
            }
        }
        /// Per (layer, group), the positions the shared rule keeps, from the streams before `finishPrefill`.
        func expectedShared(_ streams: [KVStream], _ chunks: [Chunk], promptBudget: Int, kernel: Int) -> [[Int32]] {
            let d = shape.headDim, G = shape.groupSize
            var votes: [[Float]] = [], total: [Int32: Float] = [:]
            for (unit, stream) in streams.enumerated() {
                let l = unit / shape.kvHeads, g = unit % shape.kvHeads, c = chunks[l]
                let keys = (0..<stream.count).flatMap { j in
                    [Float](unsafeUninitializedCapacity: d) { b, n in stream.key(j, into: b.baseAddress!); n = d }
                }
                let rows = (c.tokens - window)..<c.tokens
                var q: [Float] = []
                for t in rows {
                    let first: Int = (t * shape.queryHeads + g * G) * d
                    q += c.q[first..<(first + G * d)]
                }
                let v = q.withUnsafeBufferPointer { qb in keys.withUnsafeBufferPointer { kb in
                    SnapKVScoring.votes(windowQueries: qb.baseAddress!, windowRows: window, groupSize: G, keys: .f32(kb.baseAddress!),
                                        count: stream.count, headDim: d, scale: shape.scale)
                } }
                votes.append(v)
                for (j, x) in v.enumerated() { total[stream.positions[j] + Int32(g << 20), default: 0] += x }
            }
            return streams.enumerated().map { unit, stream in
                let g = unit % shape.kvHeads
                let summed = votes[unit].indices.map { total[stream.positions[$0] + Int32(g << 20)]! }
                return SnapKVScoring.select(votes: summed, count: stream.count, promptBudget: promptBudget, kernel: kernel).slots
                    .map { stream.positions[$0] }
            }
        }
        func kept(_ policy: KVPolicy) -> [[Int32]] {
            if let mt = policy as? RocketMTPolicy {
                return (0..<shape.layers * shape.kvHeads).map { unit in
                    let stream = mt.inspectableStreams[unit]
                    return mt.filteredSlots(layer: unit / shape.kvHeads, group: unit % shape.kvHeads).map { stream.positions[Int($0)] }
                }
            }
            return (policy as! KVStreamInspectable).inspectableStreams.map { s in (0..<s.count).map { s.positions[$0] } }
        }
        let turn1 = (0..<shape.layers).map { _ in chunk(100, at: 0) }, turn2 = (0..<shape.layers).map { _ in chunk(30, at: 100) }
        for name in ["rocket", "rocket-mt"] {
            let shared = try make(name, budget: 16, options: ["window": "\(window)", "votes": "shared"])
            let perLayer = try make(name, budget: 16, options: ["window": "\(window)"])
            let plan = (shared as? RocketPolicy)?.plan ?? (shared as! RocketMTPolicy).plan
            XCTAssertEqual(plan.votes, .shared)
            XCTAssertTrue(shared.planDescription!.hasSuffix("votes=shared"), shared.planDescription!)
            for turn in [turn1, turn2] {
                feed(shared, turn); feed(perLayer, turn)
                let expected = expectedShared((shared as! KVStreamInspectable).inspectableStreams, turn,
                                              promptBudget: plan.promptBudget, kernel: plan.kernel)
                shared.finishPrefill(); perLayer.finishPrefill()
                XCTAssertEqual(kept(shared), expected, name)
                XCTAssertEqual(kept(shared).map(\.count), Array(repeating: plan.promptBudget, count: 4), name)
                XCTAssertNotEqual(kept(perLayer)[0], kept(perLayer)[shape.kvHeads], "\(name): layers vote differently")
            }
            XCTAssertEqual(kept(shared)[0].count, plan.promptBudget)
        }
        // The default, votes=auto: shared on a hybrid model's global layers, each layer its own otherwise.
        let global = LayerAttention(queryHeads: 4, kvHeads: 2, headDim: 32), sliding = LayerAttention(kind: .slidingWindow(16), queryHeads: 4, kvHeads: 2, headDim: 32)
        for name in ["rocket", "rocket-mt"] {
            func votes(_ layers: [LayerAttention]) throws -> StageOneVotes? {
                let policy = try KVMethods.make(name, context: KVMethodContext(layers: layers, budget: 16, promptLength: 100, maxNewTokens: 8))
                let method = (policy as? LayeredKV)?.caches.first { !($0 is SlidingWindowKV) } ?? policy
                return (method as? RocketPolicy)?.plan.votes ?? (method as? RocketMTPolicy)?.plan.votes
            }
            XCTAssertEqual(try votes([global, global]), .layer, name)
            XCTAssertEqual(try votes([sliding, global, sliding, global]), .shared, name)
        }
    }

    func testHSAKeepsEverything() throws {
        let policy = try make("hsa", budget: 16)
        let plan = (policy as! HSAPolicy).plan
        XCTAssertEqual(plan.pageSize, 3)   // c = 108/16 = 6.75, ⌈√6.75⌉ = 3
        XCTAssertEqual(plan.k1, 14)        // floor(32·3/6.75)
        run(policy, chunk(100, at: 0), decode: false)
        policy.finishPrefill()
        run(policy, chunk(1, at: 100), decode: true)
        let s = policy.statistics
        XCTAssertEqual(s.storedTokens, 4 * 101)
        XCTAssertEqual(s.bytesReadLastStep, 4 * (14 * 34 * 2 + 8 * 2 * 32 * 2))
    }
}
