import Foundation
import RocketKV
import XCTest

/// The baselines on the real model (SmolLM2-135M: 30 layers, 9 query heads, 3 KV heads, d = 64).
final class BaselineModelTests: XCTestCase {
    static let baselines = ["topk", "streaming", "h2o", "snapkv", "quest", "sparq"]

    /// Greedy generation; returns the tokens and the logits of every step.
    private func generate(_ model: LlamaModel, _ policy: KVPolicy, prompt: [Int], steps: Int, chunk: Int) throws -> ([Int], [[Float]]) {
        let session = InferenceSession(model: model, policy: policy)
        session.chunkSize = chunk
        var logits = try session.prefill(prompt)
        var tokens: [Int] = [], all: [[Float]] = []
        for _ in 0..<steps {
            all.append(logits)
            let next = logits.indices.max { logits[$0] < logits[$1] }!
            tokens.append(next)
            logits = Array(try session.decode(next))
        }
        return (tokens, all)
    }

    /// With a budget covering the whole sequence every baseline reproduces `full` bit for bit
    /// (SparQ with the mean-value interpolation off, since α is only 1 up to rounding).
    func testCoveringBudgetReproducesFull() throws {
        let model = try LlamaModel(file: TestModel.file)
        let fixture = try TestModel.fixture("logits_chat.json", as: LogitsFixture.self)
        let steps = 12, n = fixture.tokens.count + steps
        let shape = model.config.attentionShape
        let (fullTokens, fullLogits) = try generate(model, FullKV(shape: shape), prompt: fixture.tokens, steps: steps, chunk: 16)
        XCTAssertEqual(fullTokens, Array(fixture.greedy.prefix(steps)))
        for name in Self.baselines {
            // SnapKV keeps everything when the prompt fits t/G per head; Quest and SparQ attend about t/2 tokens.
            let budget = name == "snapkv" ? n * shape.groupSize : ["quest", "sparq"].contains(name) ? 2 * n : n
            let options = name == "sparq" ? ["mean": "0"] : [:]
            let context = KVMethodContext(shape: shape, budget: budget, promptLength: fixture.tokens.count, maxNewTokens: steps, options: options)
            let (tokens, logits) = try generate(model, try KVMethods.make(name, context: context), prompt: fixture.tokens, steps: steps, chunk: 16)
            XCTAssertEqual(tokens, fullTokens, name)
            XCTAssert(logits == fullLogits, "\(name): logits differ from full")
        }
    }

    /// A real compression setting: 320 prompt tokens, budget 128. Every method runs, stays finite, holds and
    /// reads what it should; agreement with `full`'s greedy tokens is printed (not asserted).
    func testSmallBudget() throws {
        let model = try LlamaModel(file: TestModel.file)
        let fixture = try TestModel.fixture("logits_long.json", as: LogitsFixture.self)
        let prompt = Array(fixture.tokens.prefix(320)), steps = 16, budget = 128
        let shape = model.config.attentionShape
        let fullPolicy = FullKV(shape: shape)
        let (fullTokens, _) = try generate(model, fullPolicy, prompt: prompt, steps: steps, chunk: 128)
        let full = fullPolicy.statistics
        let groups = shape.layers * shape.kvHeads, rowBytes = 4 * shape.headDim
        for name in Self.baselines {
            let context = KVMethodContext(shape: shape, budget: budget, promptLength: prompt.count, maxNewTokens: steps)
            let policy = try KVMethods.make(name, context: context)
            let (tokens, logits) = try generate(model, policy, prompt: prompt, steps: steps, chunk: 128)
            XCTAssert(logits.allSatisfy { $0.allSatisfy(\.isFinite) }, name)
            let s = policy.statistics
            let agree = zip(tokens, fullTokens).prefix { $0 == $1 }.count
            print(String(format: "%@: first %d/%d greedy tokens equal full; stored %.2f MiB (full %.2f), read %.1f KiB/step (full %.1f)",
                         name, agree, steps, Double(s.storedBytes) / 1048576, Double(full.storedBytes) / 1048576,
                         Double(s.bytesReadLastStep) / 1024, Double(full.bytesReadLastStep) / 1024))
            // SnapKV reads G·(t/G + generated) per group, the others about t; topk scores every key (half of full's
            // read) and reads the selected values, its ideal about t beside it.
            if name == "topk" {
                XCTAssertGreaterThan(s.bytesReadLastStep, full.bytesReadLastStep / 2, name)
                XCTAssertLessThanOrEqual(s.bytesReadLastStep, full.bytesReadLastStep, name)
                XCTAssertLessThan(s.idealBytesReadLastStep ?? .max, full.bytesReadLastStep / 2, name)
            } else {
                XCTAssertLessThan(s.bytesReadLastStep, name == "snapkv" ? full.bytesReadLastStep * 2 / 3 : full.bytesReadLastStep / 2, name)
            }
            switch name {
            case "streaming", "h2o": XCTAssertEqual(s.storedTokens, groups * budget, name)
            case "snapkv": XCTAssertEqual(s.storedTokens, shape.layers * shape.queryHeads * (budget / shape.groupSize + steps), name)
            default: XCTAssertEqual(s.storedTokens, full.storedTokens, name)
            }
            if ["streaming", "h2o", "snapkv"].contains(name) { XCTAssertLessThan(s.storedBytes, full.storedBytes / 2, name) }
            if name == "sparq" { XCTAssertGreaterThanOrEqual(s.storedBytes, full.storedTokens * rowBytes * 3 / 2, name) }
        }
    }
}
