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
        let shape = AttentionShape(layers: 1, queryHeads: 9, kvHeads: 3, headDim: 64), d = 64, G = 3
        let policy = try KVMethods.make("hsa", context: KVMethodContext(shape: shape, budget: 40, promptLength: 300,
                                                                         maxNewTokens: 8, options: [:]))
        let plan = (policy as! HSAPolicy).plan
        let streams = (0..<3).map { _ in KVStream(headDim: d) }
        let metadata = (0..<3).map { _ in PageMetadata(headDim: d, pageSize: plan.pageSize, precision: .f16) }
        func random(_ n: Int) -> [Float] { (0..<n).map { _ in Float.random(in: -1...1, using: &rng) } }
        func step(tokens: Int, at first: Int) -> [Float] {
            let q = random(tokens * 9 * d), k = random(tokens * 3 * d), v = random(tokens * 3 * d)
            var out = [Float](repeating: 0, count: tokens * 9 * d)
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
            var expected = [Float](repeating: 0, count: 9 * d), bytes = 0
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
            XCTAssertEqual(out.map(\.bitPattern), expected.map(\.bitPattern), "decode at \(first)")
            XCTAssertEqual(policy.statistics.bytesReadLastStep, bytes)
            return out
        }
        _ = step(tokens: 300, at: 0)
        policy.finishPrefill()
        for t in 0..<6 { XCTAssertFalse(step(tokens: 1, at: 300 + t).isEmpty) }
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
