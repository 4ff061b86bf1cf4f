import Foundation
import RocketKV
import XCTest

/// Engines share nothing but the (read-only) model: two sequences computed at the same time on two threads,
/// each on its own engine's pool, give the logits each gives alone, bit for bit.
final class EngineModelTests: XCTestCase {
    func testTwoEnginesComputeSideBySide() throws {
        let model = try LlamaModel(file: TestModel.file)
        let engines = [Engine(model: model, threads: 2), Engine(model: model, threads: 2)]
        let long = try TestModel.fixture("logits_long.json", as: LogitsFixture.self).tokens
        // `full` on one engine, `rocket` (HSA's task graph at decode) on the other.
        let runs: [(method: String, budget: Int?, prompt: [Int])] = [("full", nil, Array(long.prefix(300))),
                                                                     ("rocket", 128, Array(long.suffix(500)))]
        @Sendable func logits(_ run: Int) -> [[Float]] {
            let (method, budget, prompt) = runs[run]
            do {
                let policy = try KVMethods.make(method, context: KVMethodContext(
                    shape: model.config.attentionShape, budget: budget, promptLength: prompt.count, maxNewTokens: 16))
                let session = engines[run].session(policy: policy)
                session.chunkSize = 128
                var all = [try session.prefill(prompt)]
                for _ in 0..<16 {
                    let last = all[all.count - 1]
                    all.append(Array(try session.decode(last.indices.max { last[$0] < last[$1] }!)))
                }
                return all
            } catch {
                XCTFail("\(method): \(error)")
                return []
            }
        }
        let alone = runs.indices.map(logits)
        final class Result: @unchecked Sendable { var logits: [[Float]] = [] }
        for round in 0..<2 {
            let results = runs.map { _ in Result() }
            let finished = DispatchGroup()
            for run in runs.indices {
                finished.enter()
                Thread { results[run].logits = logits(run); finished.leave() }.start()
            }
            finished.wait()
            for run in runs.indices {
                XCTAssert(results[run].logits == alone[run], "round \(round): \(runs[run].method) differs when run beside the other engine")
            }
        }
    }
}
