import Foundation
import XCTest
import RocketKV

/// Invariants every registered KV method must satisfy, on random tensors through the public registry.
final class KVMethodInvariantTests: XCTestCase {
    let shape = AttentionShape(layers: 2, queryHeads: 4, kvHeads: 2, headDim: 32)
    let prompt = 80, newTokens = 10, budget = 16

    /// Every method with every KV cache type (mixed key and value types included): the same invariants, bytes
    /// counted in the types' rows.
    func testEveryRegisteredMethod() throws {
        for kvType in KVCacheType.allCases { try checkEveryMethod(kvType: kvType) }
    }

    private func checkEveryMethod(kvType: KVCacheType) throws {
        let shape = AttentionShape(layers: self.shape.layers, queryHeads: self.shape.queryHeads, kvHeads: self.shape.kvHeads,
                                   headDim: self.shape.headDim, kvType: kvType)
        let groups = shape.layers * shape.kvHeads, rowPair = shape.rowPairBytes
        XCTAssertEqual(rowPair, ["f16": 128, "q8_0": 68, "q4_0": 36, "q8_0/q4_0": 52, "q4_0/q8_0": 52][kvType.description])
        for method in KVMethods.all {
            let context = KVMethodContext(shape: shape, budget: method.needsBudget ? budget : nil,
                                          promptLength: prompt, maxNewTokens: newTokens)
            let policy = try KVMethods.make(method.name, context: context)
            let feed = RandomFeed(shape: shape, seed: 11)
            let name = "\(method.name) \(kvType)"
            check(name, feed.step([policy], count: 48, decode: false)[0])
            check(name, feed.step([policy], count: 32, decode: false)[0])
            policy.finishPrefill()
            checkStatistics(name, policy, rowPairBytes: rowPair)
            for step in 0..<newTokens {
                check(name, feed.step([policy], count: 1, decode: true)[0])
                let stats = checkStatistics(name, policy, rowPairBytes: rowPair)
                let generated = step + 1
                // Budget, as each method defines it.
                switch method.name {
                case "full", "topk", "quest", "sparq":
                    XCTAssertEqual(stats.storedTokens, groups * feed.tokens, name)
                case "streaming", "h2o":
                    XCTAssertLessThanOrEqual(stats.storedTokens, groups * budget, name)
                case "snapkv":
                    XCTAssertLessThanOrEqual(stats.storedTokens, shape.layers * shape.queryHeads * (budget / shape.groupSize + generated), name)
                default:
                    XCTAssertLessThanOrEqual(stats.storedTokens, groups * feed.tokens, name)
                }
                let budgetBytes = groups * rowPair * budget
                switch method.name {
                case "full": XCTAssertEqual(stats.bytesReadLastStep, groups * feed.tokens * rowPair, name)
                case "topk":
                    // Scores every key, then reads the values it selected; the oracle's ideal beside it.
                    XCTAssertGreaterThan(stats.bytesReadLastStep, groups * feed.tokens * rowPair / 2, name)
                    XCTAssertEqual(stats.idealBytesReadLastStep, budgetBytes, name)
                case "streaming": XCTAssertEqual(stats.bytesReadLastStep, budgetBytes, name)
                case "h2o": XCTAssertEqual(stats.bytesReadLastStep, budgetBytes + groups * budget * 4, name)
                case "quest", "sparq":
                    // Their f16 metadata (page bounds, key strips) does not shrink with the rows: the f16 bound for all.
                    XCTAssertLessThanOrEqual(stats.bytesReadLastStep, groups * 4 * shape.headDim * budget * 3 / 2, name)
                case "snapkv": XCTAssertEqual(stats.bytesReadLastStep, stats.storedTokens * rowPair, name)
                default: XCTAssertLessThanOrEqual(stats.bytesReadLastStep, groups * feed.tokens * rowPair * 2, name)
                }
            }
            // Positions preserved: each stream holds a strictly increasing subsequence of the true positions.
            if let inspectable = policy as? KVStreamInspectable {
                for stream in inspectable.inspectableStreams {
                    let p = positions(stream)
                    XCTAssert(zip(p, p.dropFirst()).allSatisfy { $0 < $1 }, "\(name): positions not increasing")
                    XCTAssert(p.allSatisfy { $0 >= 0 && $0 < feed.tokens }, "\(name): position out of range")
                    XCTAssertEqual(p.last, feed.tokens - 1, "\(name): the current token must be cached")
                }
            }
        }
    }

    /// A second turn (prefill after decode, then `finishPrefill` again) keeps every method consistent.
    func testSecondTurn() throws {
        for method in KVMethods.all {
            let context = KVMethodContext(shape: shape, budget: method.needsBudget ? budget : nil, promptLength: prompt, maxNewTokens: newTokens)
            let policy = try KVMethods.make(method.name, context: context)
            let feed = RandomFeed(shape: shape, seed: 13)
            for turn in 0..<2 {
                check(method.name, feed.step([policy], count: turn == 0 ? prompt : 24, decode: false)[0])
                policy.finishPrefill()
                for _ in 0..<4 { check(method.name, feed.step([policy], count: 1, decode: true)[0]) }
            }
            let stats = checkStatistics(method.name, policy, rowPairBytes: shape.rowPairBytes)
            if ["streaming", "h2o"].contains(method.name) { XCTAssertLessThanOrEqual(stats.storedTokens, shape.layers * shape.kvHeads * budget) }
            if method.name == "snapkv" {
                XCTAssertEqual(stats.storedTokens, shape.layers * shape.queryHeads * (budget / shape.groupSize + 4))
            }
            if let inspectable = policy as? KVStreamInspectable {
                for stream in inspectable.inspectableStreams {
                    let p = positions(stream)
                    XCTAssert(zip(p, p.dropFirst()).allSatisfy { $0 < $1 } && p.last == feed.tokens - 1, "\(method.name): positions")
                }
            }
        }
    }

    /// `full` and `topk` with a budget covering the whole context agree bit for bit.
    func testTopKWithLargeBudgetIsFull() throws {
        let context = KVMethodContext(shape: shape, budget: prompt + newTokens, promptLength: prompt, maxNewTokens: newTokens)
        let full = try KVMethods.make("full", context: context), topk = try KVMethods.make("topk", context: context)
        let feed = RandomFeed(shape: shape, seed: 12)
        let prefill = feed.step([full, topk], count: prompt, decode: false)
        XCTAssertEqual(prefill[0], prefill[1])
        full.finishPrefill()
        topk.finishPrefill()
        for _ in 0..<newTokens {
            let outputs = feed.step([full, topk], count: 1, decode: true)
            XCTAssertEqual(outputs[0], outputs[1])
        }
    }

    /// `rocket` and `hsa` with `k2` covering the whole cache select every slot (§4.3 step 9): they attend like
    /// `full`, bit for bit, and read what it reads.
    func testRocketWithK2CoveringTheCacheIsFull() throws {
        let context = KVMethodContext(shape: shape, budget: 2 * (prompt + newTokens), promptLength: prompt, maxNewTokens: newTokens)
        let policies = try ["full", "rocket", "hsa"].map { try KVMethods.make($0, context: context) }
        let feed = RandomFeed(shape: shape, seed: 14)
        let prefill = feed.step(policies, count: prompt, decode: false)
        XCTAssertEqual(prefill[0], prefill[1])
        XCTAssertEqual(prefill[0], prefill[2])
        policies.forEach { $0.finishPrefill() }
        for _ in 0..<newTokens {
            let outputs = feed.step(policies, count: 1, decode: true)
            XCTAssertEqual(outputs[0], outputs[1], "rocket")
            XCTAssertEqual(outputs[0], outputs[2], "hsa")
            let read = policies.map(\.statistics.bytesReadLastStep)
            XCTAssertEqual(read, [read[0], read[0], read[0]])
        }
    }

    /// Options are validated: unknown names and out-of-range values are user errors.
    func testOptions() throws {
        let context = KVMethodContext(shape: shape, budget: budget, promptLength: prompt, maxNewTokens: newTokens, options: ["sinks": "99"])
        XCTAssertThrowsError(try KVMethods.make("streaming", context: context))
        var ok = context
        ok.options = ["sinks": "2"]
        XCTAssertEqual((try KVMethods.make("streaming", context: ok) as? StreamingLLM)?.sinks, 2)
        ok.options = ["mean": "0", "rank": "4"]
        let sparq = try KVMethods.make("sparq", context: ok) as? SparQ
        XCTAssertEqual(sparq?.meanValue, false)
        XCTAssertEqual(sparq?.rank, 4)
        ok.options = ["page-size": "5"]
        XCTAssertEqual((try KVMethods.make("quest", context: ok) as? Quest)?.pageSize, 5)
        XCTAssertThrowsError(try KVMethods.make("topk", context: KVMethodContext(shape: shape, budget: nil, promptLength: 1, maxNewTokens: 1)))
    }

    private func check(_ name: String, _ outputs: [[Float]], line: UInt = #line) {
        for layer in outputs { XCTAssert(layer.allSatisfy { $0.isFinite }, "\(name): non-finite output", line: line) }
    }

    @discardableResult
    private func checkStatistics(_ name: String, _ policy: KVPolicy, rowPairBytes: Int) -> KVStatistics {
        let s = policy.statistics
        XCTAssertGreaterThan(s.storedTokens, 0, name)
        XCTAssertGreaterThanOrEqual(s.bytesReadLastStep, 0, name)
        // Stored bytes cover at least the K and V rows of the stored tokens.
        XCTAssertGreaterThanOrEqual(s.storedBytes, s.storedTokens * rowPairBytes, name)
        return s
    }
}
