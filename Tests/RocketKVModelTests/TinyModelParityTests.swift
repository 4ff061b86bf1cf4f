import Foundation
import RocketKV
import XCTest

/// The architectures with no reachable real weights (Llama 3 with rope_freqs, Mistral, Qwen 2, Qwen 3, and a
/// tiny Gemma 3 whose 8-token window the prompts cross), on tiny random-weight GGUFs that
/// `scripts/make_tiny_models.py --write-models` writes deterministically into `$ROCKETKV_HOME/tiny` (CI does it
/// before the tests), against llama.cpp's logits on the same files (`Fixtures/tiny/NAME.json`, which records the
/// SHA-256 of the file it was made from).
final class TinyModelParityTests: XCTestCase {
    struct Fixture: Decodable {
        struct Prompt: Decodable {
            let name: String
            let tokens: [Int]
            let positions: [LogitsFixture.Position]
            let greedy: [Int]
        }
        let name: String
        let model_sha256: String
        let probe_ids: [Int]
        let prompts: [Prompt]
    }

    static let names = ["llama3", "mistral", "qwen2", "qwen3", "gemma3"]
    static let bound = 1e-4

    func testEveryArchitectureMatchesLlamaCpp() throws {
        for name in Self.names {
            let fixture = try TestModel.fixture("tiny/\(name).json", as: Fixture.self)
            let url = ModelStore.home.appendingPathComponent("tiny/\(name).gguf")
            guard FileManager.default.fileExists(atPath: url.path) else {
                XCTFail("\(url.path) is missing: run `python3 scripts/make_tiny_models.py --write-models` (needs gguf and numpy; .ci/run does it)")
                continue
            }
            XCTAssertEqual(try SHA256.hex(ofFile: url), fixture.model_sha256, "\(name): not the file the fixture was made from")
            let engine = Engine(model: try loadModel(file: try GGUFFile(path: url.path)))
            let model = engine.model, vocabulary = model.config.vocabularySize
            for prompt in fixture.prompts {
                let cache = try KVMethods.make("full", context: KVMethodContext(layers: model.config.layerAttention, budget: nil,
                                                                             promptLength: prompt.tokens.count, maxNewTokens: 32))
                let session = engine.session(policy: cache)
                let logits = try session.prefill(prompt.tokens, logits: .all)
                let (maxDiff, misses) = compare(logits, vocabulary: vocabulary, with: prompt.positions, probeIDs: fixture.probe_ids)
                XCTAssertEqual(misses, [], "\(name)/\(prompt.name): argmax differs at these positions")
                var last = Array(logits[((prompt.tokens.count - 1) * vocabulary)...])
                var generated: [Int] = []
                for _ in 0..<prompt.greedy.count {
                    let next = last.indices.max { last[$0] < last[$1] }!
                    generated.append(next)
                    last = Array(try session.decode(next))
                }
                print(String(format: "tiny %@/%@: %d positions, max |Δlogit| %.6f", name, prompt.name, prompt.positions.count, maxDiff))
                XCTAssertLessThanOrEqual(maxDiff, Self.bound, "\(name)/\(prompt.name)")
                XCTAssertEqual(generated, prompt.greedy, "\(name)/\(prompt.name): greedy continuation differs from llama.cpp")
            }
        }
    }
}
