import Foundation
import RocketKV
import XCTest

/// Every KV method's behaviour on a fixed prompt, recorded once and compared bit for bit: the guard that a
/// restructuring of the KV layer (storage, attention, selection, threading) changes no result.
///
/// For each method: the recorded dense prefill of a 1,200-token prompt is replayed into the policy (as the
/// evaluator does), 24 greedy tokens are decoded, a second turn of 100 prompt tokens is prefilled and 8 more
/// are decoded. Each step's token and a hash of its logits' bit patterns, and the statistics after each turn,
/// must equal `Fixtures/method_golden.json`. `ROCKETKV_WRITE_GOLDEN=1` rewrites the fixture (only when a
/// change of results is intended and explained in its commit).
final class MethodGoldenTests: XCTestCase {
    struct Run: Codable, Equatable {
        var tokens: [Int] = []
        var logitHashes: [String] = []
        /// `[storedTokens, storedBytes, bytesReadLastStep]` after turn 1 and after turn 2.
        var statistics: [[Int]] = []
    }

    /// Method name and options → run.
    static let cases: [(name: String, budget: Int?, options: [String: String])] = [
        ("full", nil, [:]), ("topk", 128, [:]), ("streaming", 128, [:]), ("h2o", 128, [:]), ("snapkv", 128, [:]),
        ("quest", 128, [:]), ("sparq", 128, [:]), ("hsa", 128, [:]), ("rocket", 128, [:]),
        ("rocket", 128, ["page-round": "nearest"]), ("rocket-mt", 128, [:]),
    ]

    static func key(_ c: (name: String, budget: Int?, options: [String: String])) -> String {
        ([c.name] + c.options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: " ")
    }

    /// FNV-1a over the logits' bit patterns.
    static func hash(_ logits: UnsafeBufferPointer<Float>) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for x in logits {
            h ^= UInt64(x.bitPattern)
            h = h &* 0x0000_0100_0000_01b3
        }
        return String(h, radix: 16)
    }

    func testEveryMethodMatchesTheRecordedRun() throws {
        let engine = Engine(model: try LlamaModel(file: TestModel.file)), model = engine.model
        let fixture = try TestModel.fixture("logits_long.json", as: LogitsFixture.self)
        let prompt = Array(fixture.tokens.prefix(1200)), secondTurn = Array(fixture.tokens[1200..<1300])
        let snapshot = try engine.prefillSnapshot(prompt)
        var runs: [String: Run] = [:]
        for c in Self.cases {
            let context = KVMethodContext(shape: model.config.attentionShape, budget: c.budget, promptLength: prompt.count,
                                          maxNewTokens: 32, options: c.options)
            let policy = try KVMethods.make(c.name, context: context)
            snapshot.replay(into: policy)
            let session = snapshot.session(model: model, policy: policy)
            var run = Run()
            var logits = snapshot.lastLogits
            func step(_ logits: [Float]) throws -> [Float] {
                let next = logits.indices.max { logits[$0] < logits[$1] }!
                run.tokens.append(next)
                let out = try session.decode(next)
                run.logitHashes.append(Self.hash(out))
                return Array(out)
            }
            for _ in 0..<24 { logits = try step(logits) }
            func record() { let s = policy.statistics; run.statistics.append([s.storedTokens, s.storedBytes, s.bytesReadLastStep]) }
            record()
            logits = try session.prefill(secondTurn)
            for _ in 0..<8 { logits = try step(logits) }
            record()
            runs[Self.key(c)] = run
        }
        if ProcessInfo.processInfo.environment["ROCKETKV_WRITE_GOLDEN"] == "1" {
            let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/method_golden.json")
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try encoder.encode(runs).write(to: url)
            print("wrote \(url.path)")
            return
        }
        let expected = try TestModel.fixture("method_golden.json", as: [String: Run].self)
        XCTAssertEqual(Set(runs.keys), Set(expected.keys))
        for (key, run) in runs.sorted(by: { $0.key < $1.key }) {
            guard let want = expected[key] else { continue }
            XCTAssertEqual(run.tokens, want.tokens, "\(key): tokens")
            XCTAssertEqual(run.logitHashes, want.logitHashes, "\(key): logits")
            XCTAssertEqual(run.statistics, want.statistics, "\(key): statistics")
        }
    }
}
