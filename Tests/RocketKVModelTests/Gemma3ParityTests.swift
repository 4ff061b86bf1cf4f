import Foundation
import RocketKV
import XCTest

/// Gemma 3 270M against llama.cpp (fixtures from scripts/make_fixtures.py on the same file): every position of
/// each prompt, one of them longer than the 512-token sliding window, with the full cache (sliding layers keep
/// their window, global layers everything), and the greedy continuation decoded one token at a time.
///
/// Bit for bit, as ForwardParityTests: the fixtures keep 5 decimals, so the bound is 1e-4 on every compared logit
/// and the argmax must agree everywhere. What it took besides the architecture (the tiny Gemma 3 of
/// TinyModelParityTests): the file's Q4_K matrices in llama.cpp's repacked order, its Q6_K matrices in
/// ggml_vec_dot_q6_K_q8_K's lanes for one token and in its tiled K-quant matmul's order for batches of 8 or more,
/// and the sliding window read with llama.cpp's slot lanes (`Attention.causal`).
final class Gemma3ParityTests: XCTestCase {
    let maxAbsoluteBound = 1e-4

    func testLogitsMatchLlamaCppAtEveryPosition() throws {
        let engine = Engine(model: try loadModel(file: TestModel.gemmaFile))
        let model = engine.model, vocabulary = model.config.vocabularySize
        let names = TestModel.fixtureNames(in: "gemma3", prefix: "logits_")
        XCTAssertGreaterThanOrEqual(names.count, 3)
        XCTAssert(try names.contains { try TestModel.fixture($0, as: LogitsFixture.self).tokens.count > 512 }, "no prompt exercises the window")
        for name in names {
            let fixture = try TestModel.fixture(name, as: LogitsFixture.self)
            let logits = try engine.session(policy: fullCache(model, promptLength: fixture.tokens.count)).prefill(fixture.tokens, logits: .all)
            let (maxDiff, misses) = compare(logits, vocabulary: vocabulary, with: fixture.positions, probeIDs: fixture.probe_ids)
            print(String(format: "gemma3 parity %@: %d positions, max |Δlogit| %.6f", name, fixture.positions.count, maxDiff))
            XCTAssertEqual(misses, [], "\(name): argmax differs at these positions")
            XCTAssertLessThanOrEqual(maxDiff, maxAbsoluteBound, name)
        }
    }

    /// Decoding (one token per step: Q6_K in ggml_vec_dot's lanes, the window's single-token P·V lanes) gives
    /// llama.cpp's greedy continuation, past the window on the long prompt.
    func testGreedyGenerationMatchesLlamaCpp() throws {
        let engine = Engine(model: try loadModel(file: TestModel.gemmaFile))
        for name in TestModel.fixtureNames(in: "gemma3", prefix: "logits_") {
            let fixture = try TestModel.fixture(name, as: LogitsFixture.self)
            let session = engine.session(policy: try fullCache(engine.model, promptLength: fixture.tokens.count))
            XCTAssertEqual(try greedyContinuation(session, prompt: fixture.tokens, count: fixture.greedy.count), fixture.greedy,
                           "\(name): greedy continuation differs from llama.cpp")
        }
    }

    private func fullCache(_ model: LanguageModel, promptLength: Int) throws -> KVPolicy {
        try KVMethods.make("full", context: KVMethodContext(layers: model.config.layerAttention, budget: nil,
                                                            promptLength: promptLength, maxNewTokens: 64))
    }
}
