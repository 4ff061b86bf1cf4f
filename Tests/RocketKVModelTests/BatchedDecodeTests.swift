import Foundation
import RocketKV
import XCTest

/// One forward pass over several sequences (a decode row each, or a prompt chunk) gives each sequence the logits
/// it gets alone, bit for bit: the matrix kernels compute every row's dot products the same way whatever the
/// number of rows (SmolLM2's Q4_1 activations are quantized row by row, and each output is one row's dot
/// product), and each segment's attention goes to its own policy exactly as in a one-sequence pass.
final class BatchedDecodeTests: XCTestCase {
    let model: LanguageModel = try! LlamaModel(file: TestModel.file)

    func policy(_ method: String, budget: Int?, promptLength: Int) throws -> KVPolicy {
        try KVConfiguration(method: method, budget: budget).makePolicy(model: model, promptLength: promptLength, maxNewTokens: 16)
    }

    func argmax(_ logits: some Collection<Float>) -> Int {
        let values = Array(logits)
        return values.indices.max { values[$0] < values[$1] }!
    }

    func testBatchedDecodeMatchesOneByOne() throws {
        let long = try TestModel.fixture("logits_long.json", as: LogitsFixture.self).tokens
        let runs: [(method: String, budget: Int?, prompt: [Int])] = [
            ("full", nil, Array(long.prefix(200))), ("rocket", 64, Array(long.suffix(400))),
            ("rocket-mt", 64, Array(long.prefix(333))), ("snapkv", 64, Array(long.suffix(150))),
        ]
        let vocabulary = model.config.vocabularySize
        // The same prompts prefilled twice: one copy decoded alone, the other in batched passes.
        let alone = try runs.map { run in
            let session = InferenceSession(model: model, policy: try policy(run.method, budget: run.budget, promptLength: run.prompt.count))
            return (session, argmax(try session.prefill(run.prompt)))
        }
        let batched = try runs.map { run in
            let session = InferenceSession(model: model, policy: try policy(run.method, budget: run.budget, promptLength: run.prompt.count))
            return (session, argmax(try session.prefill(run.prompt)))
        }
        var next = alone.map(\.1)
        XCTAssertEqual(next, batched.map(\.1))
        let state = ForwardState()
        for _ in 0..<12 {
            let expected = try zip(alone, next).map { (run, token) in Array(try run.0.decode(token)) }
            let logits = try InferenceSession.decode(next, sessions: batched.map(\.0), state: state)
            XCTAssertEqual(logits.count, runs.count * vocabulary)
            for i in runs.indices {
                XCTAssertEqual(Array(logits[(i * vocabulary)..<((i + 1) * vocabulary)]), expected[i], "sequence \(i) (\(runs[i].method))")
            }
            next = expected.map(argmax)
        }
        XCTAssertEqual(batched.map(\.0.position), alone.map(\.0.position))
    }

    /// A batched step that cannot be one (a token missing, a session twice, a token outside the vocabulary)
    /// throws before any session moves.
    func testBatchedDecodeRejectsMalformedSteps() throws {
        let prompt = Array(try TestModel.fixture("logits_long.json", as: LogitsFixture.self).tokens.prefix(20))
        let sessions = try (0..<2).map { _ in
            let session = InferenceSession(model: model, policy: try policy("full", budget: nil, promptLength: prompt.count))
            _ = try session.prefill(prompt)
            return session
        }
        let state = ForwardState()
        XCTAssertThrowsError(try InferenceSession.decode([1], sessions: sessions, state: state))
        XCTAssertThrowsError(try InferenceSession.decode([1, 2], sessions: [sessions[0], sessions[0]], state: state))
        XCTAssertThrowsError(try InferenceSession.decode([1, model.config.vocabularySize], sessions: sessions, state: state))
        XCTAssertThrowsError(try InferenceSession.decode([], sessions: [], state: state))
        XCTAssertEqual(sessions.map(\.position), [prompt.count, prompt.count])
    }

    /// A prompt chunk in the same pass as decode rows: the chunk's last logits and the decode rows' match.
    func testPrefillChunkBesideDecodeRows() throws {
        let long = try TestModel.fixture("logits_long.json", as: LogitsFixture.self).tokens
        let first = Array(long.prefix(100)), second = Array(long.suffix(64))
        let aloneA = InferenceSession(model: model, policy: try policy("full", budget: nil, promptLength: 100))
        let token = argmax(try aloneA.prefill(first))
        let expectedDecode = Array(try aloneA.decode(token))
        let aloneB = InferenceSession(model: model, policy: try policy("full", budget: nil, promptLength: 64))
        let expectedPrefill = try aloneB.prefill(second)

        let sessionA = InferenceSession(model: model, policy: try policy("full", budget: nil, promptLength: 100))
        _ = try sessionA.prefill(first)
        let policyB = try policy("full", budget: nil, promptLength: 64)
        let state = ForwardState()   // holds the logits buffer
        let logits = model.forward(ForwardBatch([
            .init(tokens: [token], position: 100, policy: sessionA.policy, decode: true, logits: .last),
            .init(tokens: second, position: 0, policy: policyB, decode: false, logits: .last),
        ]), state: state)
        let vocabulary = model.config.vocabularySize
        XCTAssertEqual(Array(logits[0..<vocabulary]), expectedDecode)
        XCTAssertEqual(Array(logits[vocabulary...]), expectedPrefill)
    }
}
